package hap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/symbolize"
)

// NoWarmup as ScoreOptions.Warmup opens the window as soon as Score is
// called (a zero Warmup is the default warm-up): with hap.ScoreTrace's
// WindowStart, a workload started then is measured from its start.
const NoWarmup time.Duration = -1

// ScoreOptions configure Score.
type ScoreOptions struct {
	Label string
	// Warmup is waited before the window (start-up is not steady state);
	// Window is the measured time. Defaults: 5s and 10s; NoWarmup opens
	// the window at once.
	Warmup, Window time.Duration
	// Samples is how many convergence points the window is cut into
	// (default 10).
	Samples int
	// Coverage configures the tracer (backend, interrupt context, progress).
	Coverage coverage.Options
	// Catalogue is the set of functions to probe; nil loads the running
	// kernel's.
	Catalogue *coverage.Catalogue
	// Symbolize says where the kernel's debug info is. Its Kernel,
	// CacheDir and Rebuild apply to modules too.
	Symbolize symbolize.Options
	// ModuleDebug is where the debug info of kernel modules is: a .ko
	// tree such as an unpacked debug package (symbolize.ModuleOptions.Path).
	// Empty: the distribution's places, then debuginfod. A module's index
	// is opened when a profile first has functions of it, and kept for the
	// Scorer's life while the module stays loaded where it was (same
	// build-id and section addresses in /sys/module).
	ModuleDebug string
	// AllowEstimate scores with size-based line estimates when no DWARF is
	// found (symbolize.ErrNoDebugInfo), for vmlinux or for a module,
	// instead of failing. The profile's Mode, and the module's row in
	// Profile.Modules, then say so. Any other symbolize error still fails:
	// debug info of another build (symbolize.ErrBuildIDMismatch) would
	// give wrong lines, and an estimate would hide that.
	AllowEstimate bool
	Density       float64 // defects per 1,000 lines; 0 means DefaultDensity
	// Workload, when set, is recorded in the profile.
	Workload *Workload
}

// Score measures the kernel functions that the processes of the cgroup v2
// directory cgroup (and its descendants) execute during the window, turns
// them into source lines and scores them. It is NewScorer, Scorer.Score and
// Scorer.Close in one call. The cgroup is checked before anything is
// attached.
func Score(ctx context.Context, cgroup string, opt ScoreOptions) (*Profile, error) {
	if _, err := coverage.CgroupDir(cgroup); err != nil {
		return nil, fmt.Errorf("score: %w", err)
	}
	s, err := NewScorer(ctx, opt)
	if err != nil {
		return nil, err
	}
	p, err := s.Score(ctx, cgroup)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return p, err
}

// Scorer is an attached tracer and an open line index: it scores cgroups
// one after another (or concurrently) without attaching again. The line
// indexes of kernel modules are opened as profiles need them and kept.
type Scorer struct {
	t    *coverage.Tracer
	ix   *symbolize.Index
	kern symbolize.Kernel
	opt  ScoreOptions
	mods *moduleSet
}

// NewScorer checks opt, finds a backend that works on this kernel (the
// step that fails on kernels that cannot be traced, with the reason), opens
// the line index of the kernel, and only then attaches the tracer: debug
// info that cannot be used fails before the attach, which can take
// seconds. Module debug info is looked for later, by Score, for the
// modules a profile has functions of.
func NewScorer(ctx context.Context, opt ScoreOptions) (*Scorer, error) {
	switch opt.Warmup {
	case NoWarmup:
		opt.Warmup = 0
	case 0:
		opt.Warmup = 5 * time.Second
	}
	opt.Window = cmp.Or(opt.Window, 10*time.Second)
	opt.Samples = cmp.Or(opt.Samples, 10)
	if opt.Samples < 1 || opt.Warmup < 0 || opt.Window <= 0 {
		return nil, fmt.Errorf("score: %d samples over a window of %v after %v warm-up: want at least 1 sample, a positive window and no negative warm-up", opt.Samples, opt.Window, opt.Warmup)
	}
	cat := opt.Catalogue
	if cat == nil {
		var err error
		if cat, err = coverage.LoadCatalogue(); err != nil {
			return nil, err
		}
	}
	b, err := coverage.ChooseBackend(cat, opt.Coverage.Backend)
	if err != nil {
		return nil, err
	}
	ix, kern, err := openIndex(ctx, opt)
	if err != nil {
		return nil, err
	}
	copt := opt.Coverage
	copt.Backend = b
	t, err := coverage.Open(ctx, cat, copt)
	if err != nil {
		return nil, err
	}
	return &Scorer{t: t, ix: ix, kern: kern, opt: opt, mods: newModuleSet(kern, opt)}, nil
}

// Score measures cgroup: warm-up, then the window (see ScoreOptions).
func (s *Scorer) Score(ctx context.Context, cgroup string) (*Profile, error) {
	return measure(ctx, s.t, cgroup, s.ix, s.kern, s.opt, func(m string) (*symbolize.Index, error) { return s.mods.index(ctx, m) })
}

// Tracer is the scorer's attached tracer, for measurements Score does not
// make (a scope followed program by program); Close detaches it.
func (s *Scorer) Tracer() *coverage.Tracer { return s.t }

// Profile symbolizes and scores snap, a snapshot of the scorer's tracer
// (Tracer), as Score does its window's.
func (s *Scorer) Profile(ctx context.Context, snap *coverage.Snapshot, label string) (*Profile, error) {
	meta := Meta{
		Label: label, Release: s.kern.Release, BuildID: cmp.Or(s.kern.BuildID, s.ix.BuildID()), Backend: string(s.t.Backend()),
		Interrupt: s.opt.Coverage.Interrupts, CPUs: onlineCPUs(),
	}
	return FromSnapshot(snap, s.ix, s.kern, meta, Options{Density: s.opt.Density, Modules: func(m string) (*symbolize.Index, error) { return s.mods.index(ctx, m) }})
}

// Close detaches the tracer.
func (s *Scorer) Close() error {
	if err := s.t.Close(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return nil
}

func measure(ctx context.Context, t *coverage.Tracer, cgroup string, ix *symbolize.Index, kern symbolize.Kernel, opt ScoreOptions, mods func(string) (*symbolize.Index, error)) (*Profile, error) {
	s, err := t.AddScope(cgroup)
	if err != nil {
		return nil, fmt.Errorf("score %s: %w", cgroup, err)
	}
	defer t.RemoveScope(s)
	select {
	case <-time.After(opt.Warmup):
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if tr := ContextScoreTrace(ctx); tr != nil && tr.BeforeWindow != nil {
		tr.BeforeWindow()
	}
	if err := t.Reset(s); err != nil {
		return nil, fmt.Errorf("score %s: %w", cgroup, err)
	}
	start := time.Now()
	if tr := ContextScoreTrace(ctx); tr != nil && tr.WindowStart != nil {
		tr.WindowStart()
	}
	interval := opt.Window / time.Duration(opt.Samples)
	newPer, snap, err := t.Converge(ctx, s, interval, opt.Samples)
	if tr := ContextScoreTrace(ctx); tr != nil && tr.WindowEnd != nil {
		tr.WindowEnd()
	}
	if err != nil {
		return nil, fmt.Errorf("score %s: %w", cgroup, err)
	}
	meta := Meta{
		Label: opt.Label, Release: kern.Release, BuildID: cmp.Or(kern.BuildID, ix.BuildID()), Backend: string(t.Backend()),
		Start: start.UTC(), Warmup: opt.Warmup, Window: opt.Window,
		Interrupt: opt.Coverage.Interrupts, Workload: opt.Workload, CPUs: onlineCPUs(),
	}
	total := 0
	for i, n := range newPer {
		total += n
		meta.Convergence = append(meta.Convergence, Point{At: time.Duration(i+1) * interval, Functions: total})
	}
	return FromSnapshot(snap, ix, kern, meta, Options{Density: opt.Density, Modules: mods})
}

func openIndex(ctx context.Context, opt ScoreOptions) (*symbolize.Index, symbolize.Kernel, error) {
	kern := opt.Symbolize.Kernel
	if kern == (symbolize.Kernel{}) {
		k, err := symbolize.RunningKernel()
		if err != nil {
			return nil, kern, fmt.Errorf("identify the running kernel: %w", err)
		}
		kern = k
		opt.Symbolize.Kernel = k
	}
	ix, err := symbolize.Open(ctx, opt.Symbolize)
	if err == nil {
		return ix, kern, nil
	}
	if !estimateInstead(err, opt.AllowEstimate) {
		hint := ""
		if errors.Is(err, symbolize.ErrNoDebugInfo) {
			hint = " (install its debug info, pass a vmlinux, or allow size-based estimates)"
		}
		return nil, kern, fmt.Errorf("no line information for kernel %s: %w%s", kern.Release, err, hint)
	}
	f, ferr := os.Open("/proc/kallsyms")
	if ferr != nil {
		return nil, kern, errors.Join(err, ferr)
	}
	defer f.Close()
	syms, ferr := symbolize.ParseKallsyms(f)
	if ferr != nil {
		return nil, kern, errors.Join(err, ferr)
	}
	est, ferr := symbolize.Estimate(syms)
	if ferr != nil {
		return nil, kern, errors.Join(err, ferr)
	}
	return est, kern, nil
}

// estimateInstead says whether a failure to open the line index is one that
// size-based estimates may stand in for: only missing debug info, and only
// when allowed. Debug info that exists but does not fit (another build,
// a corrupt file) must be fixed, not papered over.
func estimateInstead(err error, allowed bool) bool {
	return allowed && errors.Is(err, symbolize.ErrNoDebugInfo)
}

// FromSnapshot symbolizes a coverage snapshot and scores it. Runtime
// addresses of vmlinux are mapped to ix with kern's KASLR offset; those of a
// kernel module go to the module's own index, from opt.Modules (asked once
// per module). Hits that resolve to the same index function (two names at
// one address) count once, in the union of their contexts. A compiler clone
// (foo.isra.0) is a function of its own, under its symbol name, credited
// with the lines of its own code only. A hit that no function of its index
// contains is an error: the index does not belong to the kernel, or the
// module, that was measured. So is a module hit without opt.Modules, or a
// module whose index cannot be had (every such module is named).
func FromSnapshot(snap *coverage.Snapshot, ix *symbolize.Index, kern symbolize.Kernel, meta Meta, opt Options) (*Profile, error) {
	if snap == nil {
		return nil, errors.New("score: no snapshot (was the window sampled at least once?)")
	}
	if ix == nil {
		return nil, errors.New("score: no line index")
	}
	if opt.Modules == nil {
		var mods []string
		for _, h := range snap.Hits {
			if h.Module != "" && !slices.Contains(mods, h.Module) {
				mods = append(mods, h.Module)
			}
		}
		if len(mods) > 0 {
			return nil, fmt.Errorf("score: the snapshot has functions of kernel modules %s, and no Options.Modules gives their line indexes", strings.Join(mods, ", "))
		}
	}
	off := kern.Offset(ix)
	byFn := map[*symbolize.Function]int{}
	var funcs []Func
	var contexts []coverage.Context
	modIx := map[string]*symbolize.Index{}
	var modErrs []error
	var order []string                  // modules with unresolved hits, in snapshot order
	unresolved := map[string][]string{} // by module
	total := map[string]int{}           // hits by module
	for _, h := range snap.Hits {
		if snap.Mode != coverage.Counts {
			h.Count = 0 // pruned probes: the tracer saw the function, it did not count calls
		}
		total[h.Module]++
		var sf *symbolize.Function
		if h.Module == "" {
			sf = ix.FuncAt(h.Addr - off)
		} else {
			mix, seen := modIx[h.Module]
			if !seen {
				var err error
				if mix, err = moduleIndex(opt.Modules, h.Module); err != nil {
					modErrs = append(modErrs, err)
				}
				modIx[h.Module] = mix
			}
			if mix == nil {
				continue
			}
			sf = mix.FuncAt(h.Addr)
		}
		if sf == nil {
			if unresolved[h.Module] == nil {
				order = append(order, h.Module)
			}
			unresolved[h.Module] = append(unresolved[h.Module], fmt.Sprintf("%s@%#x", h.Name, h.Addr))
			continue
		}
		if i, ok := byFn[sf]; ok {
			funcs[i].Hits += h.Count
			contexts[i] |= h.Context
			addOrigins(&funcs[i], h.Origins)
			continue
		}
		f := Func{Name: cmp.Or(sf.Symbol, sf.Name), Module: h.Module, Addr: h.Addr, Hits: h.Count, File: sf.File}
		addOrigins(&f, h.Origins)
		if sf.Estimated {
			f.Estimated = sf.LineCount()
		} else {
			f.Own, f.Inlined = sf.Lines()
		}
		byFn[sf] = len(funcs)
		funcs = append(funcs, f)
		contexts = append(contexts, h.Context)
	}
	if len(modErrs) > 0 {
		return nil, fmt.Errorf("score: %w", errors.Join(modErrs...))
	}
	if len(order) > 0 {
		var errs []error
		for _, m := range order {
			u := unresolved[m]
			eg := u[:min(len(u), 5)]
			if m == "" {
				errs = append(errs, fmt.Errorf("%d of %d measured vmlinux functions are not in the debug info of build-id %s (e.g. %v): wrong vmlinux for this kernel?",
					len(u), total[m], ix.BuildID(), eg))
			} else {
				errs = append(errs, fmt.Errorf("%d of %d measured functions of module %s are not in its line index (build-id %s; e.g. %v): debug info of another build of the module, or the module was loaded again at other addresses?",
					len(u), total[m], m, cmp.Or(modIx[m].BuildID(), "unknown"), eg))
			}
		}
		return nil, errors.Join(errs...)
	}
	for i, c := range contexts {
		if c != 0 {
			funcs[i].Context = c.String()
		}
	}
	meta.Backend = cmp.Or(meta.Backend, string(snap.Backend))
	meta.Misses, meta.Drops = snap.Misses, snap.Dropped
	meta.OriginsDropped = snap.OriginsDropped
	meta.Probes = string(snap.Mode)
	meta.Softirq = cmp.Or(meta.Softirq, snap.Softirq)
	meta.Attached = snap.Attached
	if meta.BuildID == "" {
		meta.BuildID = ix.BuildID()
	}
	p := New(meta, funcs, opt)
	for i := range p.Modules {
		m := &p.Modules[i]
		if m.Name == Vmlinux {
			m.BuildID = ix.BuildID()
		} else if mix := modIx[m.Name]; mix != nil {
			m.BuildID = mix.BuildID()
		}
	}
	return p, nil
}

// addOrigins adds a hit's counts by origin to f.
func addOrigins(f *Func, oc []coverage.OriginCount) {
	for _, c := range oc {
		if f.Origins == nil {
			f.Origins = map[string]uint64{}
		}
		f.Origins[c.Origin.String()] += c.Count
	}
}

// moduleIndex asks modules for the index of module.
func moduleIndex(modules func(string) (*symbolize.Index, error), module string) (*symbolize.Index, error) {
	mix, err := modules(module)
	if err != nil {
		return nil, err
	}
	if mix == nil {
		return nil, fmt.Errorf("module %s: no line index", module)
	}
	if mix.Module() != module {
		return nil, fmt.Errorf("module %s: the line index given for it is of %q", module, cmp.Or(mix.Module(), Vmlinux))
	}
	return mix, nil
}

// ScoreTrace holds hooks into a Score call, carried by its context (as
// net/http/httptrace carries a ClientTrace).
type ScoreTrace struct {
	// BeforeWindow is called after the warm-up, before the scope's counts
	// are reset: a caller scoring several cgroups at once (a sandbox and
	// its parts) can hold each call here until all are ready, so that
	// their windows open together.
	BeforeWindow func()
	// WindowStart is called when the window has opened: the scope is
	// traced and its counts reset. With no warm-up, the moment to start
	// a workload whose start-up must be measured.
	WindowStart func()
	// WindowEnd is called when the measured window has closed, before the
	// functions are turned into lines: the moment to stop a load generator,
	// so that its teardown (closing connections, a last statistics query)
	// is not measured as the workload's.
	WindowEnd func()
}

type scoreTraceKey struct{}

// WithScoreTrace returns a context whose Score calls run the hooks of t.
func WithScoreTrace(ctx context.Context, t *ScoreTrace) context.Context {
	return context.WithValue(ctx, scoreTraceKey{}, t)
}

// ContextScoreTrace returns the ScoreTrace of ctx, or nil.
func ContextScoreTrace(ctx context.Context) *ScoreTrace {
	t, _ := ctx.Value(scoreTraceKey{}).(*ScoreTrace)
	return t
}

// onlineCPUs counts the CPUs in /sys/devices/system/cpu/online ("0-3,5"),
// or returns 0 when it cannot be read.
func onlineCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	return countCPUList(strings.TrimSpace(string(b)))
}

// countCPUList counts the CPUs of a kernel CPU list ("0-3,5"); 0 for a
// malformed one.
func countCPUList(s string) int {
	n := 0
	for _, r := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}
