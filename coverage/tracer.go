package coverage

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/bpf"
)

// MaxScopes is how many cgroup subtrees one Tracer counts at once.
const MaxScopes = bpf.MaxScopes

// Options configure Open.
type Options struct {
	Backend Backend // "" picks the first of Backends that works here
	// Interrupts also counts hard-IRQ, soft-IRQ and NMI context that runs
	// in a scope's tasks. It changes what is measured (see the package
	// doc), and lets pruning remove the probes of what interrupts run.
	Interrupts bool
	Workers    int            // parallel attach/detach for fentry and kprobe; 0 = 2×CPUs
	Progress   func(Progress) // optional; called from Open and Close as work advances
	// ModuleLoaded, if set, is called (from another goroutine) each time
	// the tracer has attached to a module loaded after Open (see
	// ModuleLoad). Only a tracer opened on a catalogue from LoadCatalogue
	// watches module loads.
	ModuleLoaded func(ModuleLoad)
	// Counts keeps every probe attached for the whole life of the tracer
	// and counts every call (Mode Counts). By default (Mode Pruned) a
	// function's probe is removed once every active scope has entered it,
	// so the steady state pays only for what the scopes have not run; see
	// Mode and the package doc.
	Counts bool
	// Attribution also counts each function's calls by Origin: the system
	// call (or page fault, io_uring worker, …) the scope's task was in
	// (Hit.Origins). It implies Counts: pruning removes a probe after its
	// first hit, which would record only the first origin. Each counted
	// call costs a hash-map update more (see BENCHMARKS.md), and a hash of
	// (function, scope, origin) keys, about 70 MiB of kernel memory.
	Attribution bool
}

// Mode says how a Tracer probes, and so what Hit.Count means.
type Mode string

const (
	// Pruned (the default): a function's probe is removed once every
	// active scope has entered it; scopes added later (AddScope) and
	// scopes reset (Reset) re-arm the probes they have not seen. The
	// function set is the same as with Counts; Hit.Count is 1 ("seen").
	//
	// fentry and kprobe: the links of seen functions are closed in
	// concurrent batches, hottest first. kprobe.multi: the functions
	// workloads commonly run (prior.txt) get links of up to 256 functions,
	// the others links of up to 1,024; a link holding seen functions is
	// replaced by one over its functions not yet seen, attached before the
	// old one is closed, so no call goes unprobed (by links of up to 256
	// functions, so later rounds patch less) — but only once its seen
	// functions have been hit, by any task, 128 times as often as the
	// replacement patches call sites (the functions it probes again plus
	// those the old link held), so rarely called seen functions stay
	// probed and a link is not rebuilt for each new one. A background
	// loop looks at the counters every 100 ms to 1 s: the period halves
	// while much is pruned and doubles while little is.
	Pruned Mode = "pruned"
	// Counts: every probe stays attached; Hit.Count is the exact number of
	// calls in the scope (minus Snapshot.Misses and Dropped).
	Counts Mode = "counts"
)

// Progress reports attach or detach work.
type Progress struct {
	Stage       string // "attach" or "detach"
	Backend     Backend
	Done, Total int
}

// Tracer counts the kernel functions of a Catalogue entered by tasks of its
// scopes. Its BPF programs and links go away on Close or when the process
// exits.
type Tracer struct {
	cat      *Catalogue
	backend  Backend
	mode     Mode
	opts     Options
	objs     *bpf.Objects
	attached int               // functions attached at Open
	samples  map[Reason]string // one error text per attach failure reason
	// kprobeErr: why the fentry backend could not probe the functions it
	// cannot take with kprobes instead (nil: it could, or had none).
	kprobeErr error
	besides   int // functions the fentry backend probes with kprobes
	// capacity is the number of function indices the counter has: the
	// catalogue's, plus lateReserve when modules loaded later are added.
	capacity int
	mods     *moduleWatch // nil: modules loaded later are not watched

	// armMu serialises changes to the probes: pruning, re-arming, Close.
	armMu sync.Mutex
	// fentry and kprobe: one link per function (nil: not attached now).
	flinks []link.Link
	// kprobe.multi: links over disjoint sets of functions.
	multi []*multiLink
	// function i was attached at Open; armed: it is probed now.
	attachable, armed []bool
	buf               []uint64 // counters read by prune

	stop, stopped chan struct{}
	// debugf, when set (by tests, under armMu), logs each pruning step.
	debugf func(format string, args ...any)

	// stMu guards what Snapshot reads while probes change.
	stMu     sync.Mutex
	excluded map[Reason]int
	fprogs   map[int]ebpf.ProgramID // fentry programs (their FDs are closed once linked)
	retired  uint64                 // misses of programs and links closed by pruning
	pruned   int                    // functions whose probe is removed now
	pruneErr error                  // first pruning failure, reported by Snapshot

	mu     sync.Mutex
	scopes [MaxScopes]*Scope
	closed bool // set by Close; every method then returns ErrClosed
}

// multiLink is one kprobe.multi link and the functions it probes.
type multiLink struct {
	l   link.Link
	idx []int
}

// openShard and shardSize bound the functions of one kprobe.multi link in
// Pruned mode. Replacing a link patches every function it still probes, so
// small links let rounds touch only the code the workload runs hot; but
// closing a link waits for RCU-tasks grace periods under ftrace's lock, one
// close at a time (see BENCHMARKS.md). So Open puts the prior's functions,
// which most workloads run, in links of shardSize and the others, which
// most workloads never run, in a few big links of openShard; replacements
// are links of shardSize.
const (
	openShard = 1024
	shardSize = 256
)

// pruneRent is the pruning rule of kprobe.multi links (ski rental): a link
// is replaced once the seen functions it still probes have been hit, by
// any task (see seenByAll), pruneRent times per call site the replacement
// patches: attaching the new link patches the functions it probes again,
// closing the old one every function the old link held (see
// worthReplacing). The rent is about half the break-even point, the cost
// of patching one call site expressed in probe hits, as measured in the lab
// (BENCHMARKS.md, "Pruning rent"): it counts only the hits so far, and a
// seen function that has run hot keeps running. Below it, keeping a seen
// function probed is cheaper than removing it. Tests of the mechanism set
// it to 0.
var pruneRent uint64 = 128

// worthReplacing applies pruneRent to a link of n functions whose seen
// ones were hit heat times and which would probe rest of them again.
func worthReplacing(heat uint64, n, rest int) bool {
	return heat >= pruneRent*uint64(n+rest)
}

// Scope is one cgroup v2 subtree being counted.
type Scope struct {
	Path  string // cgroup directory
	ID    uint64 // cgroup id (inode number)
	slot  int
	level int
	base  counters // the tracer's counters when the scope's window began
}

// counters are the tracer-wide event counts a Snapshot reports: raw, as
// totals since Open, or as the difference over one window.
type counters struct {
	misses, dropped, skipped, events, originsDropped uint64
}

// since is c minus base, field by field: what happened during a window
// that began at base. A count that reads lower than at base (a program
// closed by pruning between two reads of its counter) gives 0, not a
// wrapped-around difference.
func (c counters) since(base counters) counters {
	d := func(now, then uint64) uint64 {
		if now < then {
			return 0
		}
		return now - then
	}
	return counters{
		misses:  d(c.misses, base.misses),
		dropped: d(c.dropped, base.dropped),
		skipped: d(c.skipped, base.skipped),
		events:  d(c.events, base.events),

		originsDropped: d(c.originsDropped, base.originsDropped),
	}
}

// Hit is a function entered Count times in a scope.
type Hit struct {
	Function
	Count uint64
	// Context says in which contexts the scope's tasks entered it (see
	// Context). In Pruned mode, those seen until its probe was removed:
	// a function first seen in soft-IRQ work says "softirq" even if the
	// task calls it later too.
	Context Context
	// Origins splits Count by Origin (Options.Attribution), by origin.
	// They are read after the counters, so while the scope's tasks run
	// their sum can exceed Count by the calls made in between.
	Origins []OriginCount
}

// Context is a set of the execution contexts a function was counted in.
type Context uint8

const (
	// Task: the scope's task itself, in process context (system calls,
	// page faults, its own kernel work).
	Task Context = 1 << iota
	// Softirq: soft-IRQ work the scope's task ran synchronously on its
	// own path (see the package doc for the attribution rule).
	Softirq
	// Interrupt: any interrupt context that ran in the scope's task, only
	// counted with Options.Interrupts.
	Interrupt
)

// String is "task", "softirq", "interrupt", or several joined by "+".
func (c Context) String() string {
	var parts []string
	for _, x := range []struct {
		c Context
		s string
	}{{Task, "task"}, {Softirq, "softirq"}, {Interrupt, "interrupt"}} {
		if c&x.c != 0 {
			parts = append(parts, x.s)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Snapshot is the function set of one scope at one moment: what its tasks
// entered during its window, which began when the scope was added
// (AddScope) or last reset (Reset).
//
// Misses, Dropped, Skipped and Events cover that same window, but over all
// tasks: the kernel keeps these counters per program or link, not per
// cgroup, so they cannot be split by scope. Two scopes with different
// windows report different counts; neither grows across windows.
//
// Misses are probe hits for which the kernel did not run the program;
// Tracer.Missed has them by guard and by kprobe.multi link. Two guards drop
// hits. kprobe.multi and kprobe: a hit while a BPF program of the kprobe
// family runs on that CPU (this tracer's own included) or while a bpf(2) map
// operation copies on that CPU (both raise the CPU's bpf_prog_active) is
// dropped and counted in the program's recursion misses. kprobe.multi also
// drops a hit nested in another probe handler of the same task and context,
// beyond the one nesting ftrace allows while an interrupt's preempt count is
// not yet updated (fprobe's guard, the link's missed count, 6.7+). fentry
// guards per program: only the same function nested in itself is dropped.
//
// What misses can hide with the default context rules (Interrupts off):
//   - calls made by an interrupt that arrives while a program runs:
//     interrupt context, not counted anyway, except the interrupt entry and
//     exit code that runs before the preempt count says "interrupt"
//     (irq_enter_rcu, idle_cpu, handle_softirqs): ftrace too shows it as
//     task context, and such calls are lost;
//   - every call of a catalogue function that the program itself calls:
//     the deny list is meant to hold them all (a helper missing from it is
//     never counted);
//   - calls of the workload's own task-context functions, only while
//     another BPF program of the kprobe family runs in that task, or, on
//     kernels with full preemption, while a task preempted inside a bpf(2)
//     map operation (which disables migration, not preemption) has left
//     the CPU's bpf_prog_active raised.
//
// With Interrupts on, an interrupt that arrives while a program runs is
// missed for that occurrence.
type Snapshot struct {
	Scope      string
	Backend    Backend
	Mode       Mode   // Pruned: Hit.Count is 1 ("seen"); Counts: exact counts
	Interrupts string // "counted", or how interrupt context was detected and skipped
	// Softirq says how soft-IRQ work a scope's task runs on its own path
	// was told apart (the guard on do_softirq; see the package doc).
	Softirq string
	Hits    []Hit // functions with Count > 0, in catalogue order
	// Attributed: Options.Attribution was on, so each Hit has Origins.
	// OriginsDropped counts, over all scopes, calls whose origin could not
	// be recorded (the hash was full or busy) during this window.
	Attributed     bool
	OriginsDropped uint64
	Attached       int // functions the counter was attached to at Open
	Pruned         int // of those, functions not probed now: every active scope saw them
	Excluded       map[Reason]int
	// Misses, Dropped and Skipped are over all tasks, during this window.
	Misses  uint64 // probe hits the kernel did not run the program for (see above)
	Dropped uint64 // events the counter could not record
	Skipped uint64 // events skipped in interrupt context
	// Events counts the probe hits during this window of every task and
	// context, in a scope or not: what tracing makes the machine pay.
	// Pruning lowers its rate; what is left are functions no active scope
	// has run yet.
	Events uint64
	Taken  time.Time
}

// Names returns the sorted unique names of the functions hit.
func (s *Snapshot) Names() []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range s.Hits {
		if !seen[h.Name] {
			seen[h.Name] = true
			out = append(out, h.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Open attaches the counter to every function of cat.
func Open(ctx context.Context, cat *Catalogue, opts Options) (*Tracer, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if len(cat.Functions) == 0 {
		return nil, errors.New("open tracer: the catalogue has no functions")
	}
	b, err := ChooseBackend(cat, opts.Backend)
	if err != nil {
		return nil, err
	}
	if opts.Attribution {
		opts.Counts = true
	}
	cfg := bpf.Config{Functions: len(cat.Functions), Interrupts: opts.Interrupts, Attribution: opts.Attribution}
	if cat.loaded != nil {
		cfg.Reserve = lateReserve
	}
	if b == KprobeMulti {
		cfg.Addrs = make([]uint64, len(cat.Functions))
		for i, f := range cat.Functions {
			cfg.Addrs[i] = f.Addr
		}
	}
	objs, err := bpf.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("open tracer: %w", err)
	}
	t := newTracer(cat, b, opts, objs)
	if err := objs.AttachSoftirq(); err != nil {
		t.Close()
		return nil, fmt.Errorf("open tracer: %w", err)
	}
	if opts.Attribution {
		if err := objs.AttachFaults(); err != nil {
			t.Close()
			return nil, fmt.Errorf("open tracer: attribution: %w", err)
		}
	}
	switch b {
	case KprobeMulti:
		err = t.attachMulti(ctx)
	case Fentry, Kprobe:
		err = t.attachEach(ctx)
	default:
		err = fmt.Errorf("unknown backend %q (want one of %v)", b, Backends)
	}
	for _, a := range t.armed {
		if a {
			t.attached++
		}
	}
	if err == nil && t.attached == 0 {
		err = errors.New("no function could be attached (see the excluded counts)")
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open tracer (%s): %w", b, err)
	}
	copy(t.attachable, t.armed)
	if cat.loaded != nil {
		if err := t.watchModules(); err != nil {
			t.Close()
			return nil, fmt.Errorf("open tracer (%s): watch module loads: %w (to probe a fixed set of functions instead, open a Subset of the catalogue)", b, err)
		}
	}
	if t.mode == Pruned {
		t.buf = make([]uint64, t.capacity)
		t.stop, t.stopped = make(chan struct{}), make(chan struct{})
		go t.pruneLoop()
	}
	return t, nil
}

// ChooseBackend returns the backend Open would use for cat: want, if it
// works on this kernel, or with want "" the first of Backends that does.
// It tries one function (ProbeBackends), so it answers in a fraction of
// the time Open takes to attach them all; its error is the one Open would
// return (see noBackendError). Callers that have other slow work to do
// before Open (loading debug info) can learn first whether tracing is
// possible at all.
func ChooseBackend(cat *Catalogue, want Backend) (Backend, error) {
	if len(cat.Functions) == 0 {
		return "", errors.New("open tracer: the catalogue has no functions")
	}
	if want != "" {
		if err := probe(want, cat, probeTarget(cat)); err != nil {
			return "", noBackend([]Probe{{want, err}})
		}
		return want, nil
	}
	probes := ProbeBackends(cat)
	for _, p := range probes {
		if p.Err == nil {
			return p.Backend, nil
		}
	}
	return "", noBackend(probes)
}

// newTracer is a Tracer over objs with nothing attached yet.
func newTracer(cat *Catalogue, b Backend, opts Options, objs *bpf.Objects) *Tracer {
	n := len(cat.Functions)
	// A copy: functions of modules loaded later are appended to it.
	cat = &Catalogue{Functions: slices.Clone(cat.Functions), Excluded: cat.Excluded, Notes: cat.Notes, loaded: cat.loaded}
	t := &Tracer{cat: cat, backend: b, mode: Pruned, opts: opts, objs: objs, excluded: map[Reason]int{}, samples: map[Reason]string{},
		attachable: make([]bool, n), armed: make([]bool, n), fprogs: map[int]ebpf.ProgramID{}}
	if objs != nil {
		t.capacity = objs.Indices()
	}
	if opts.Counts {
		t.mode = Counts
	}
	for r, n := range cat.Excluded {
		t.excluded[r] = n
	}
	return t
}

// noBackend is Open's error when no backend (or not the one asked for)
// can attach. It wraps ErrPermission when a backend failed for want of
// privileges (the kernel may well allow tracing), ErrNoBackend otherwise,
// and every backend's own error.
type noBackendError struct {
	sentinel error
	probes   []Probe
}

func noBackend(probes []Probe) error {
	e := &noBackendError{sentinel: ErrNoBackend, probes: probes}
	for _, p := range probes {
		if errors.Is(p.Err, ErrPermission) {
			e.sentinel = ErrPermission
		}
	}
	return e
}

func (e *noBackendError) Error() string {
	var b strings.Builder
	switch {
	case e.sentinel == ErrPermission:
		b.WriteString("open tracer: insufficient privileges to trace (run as root, or with CAP_BPF and CAP_PERFMON):")
	case len(e.probes) == 1:
		fmt.Fprintf(&b, "open tracer: backend %s does not work on this kernel:", e.probes[0].Backend)
	default:
		b.WriteString("open tracer: no exact backend works on this kernel:")
	}
	for _, p := range e.probes {
		b.WriteString("\n  " + p.Err.Error())
	}
	return b.String()
}

func (e *noBackendError) Unwrap() []error {
	out := []error{e.sentinel}
	for _, p := range e.probes {
		out = append(out, p.Err)
	}
	return out
}

func probeTarget(cat *Catalogue) int {
	t := -1
	for i, f := range cat.Functions {
		if f.Name == "vfs_read" {
			return i
		}
		if t < 0 && f.noFentry == "" {
			t = i
		}
	}
	return t
}

func (t *Tracer) progress(stage string, done, total int) {
	if t.opts.Progress != nil {
		t.opts.Progress(Progress{Stage: stage, Backend: t.backend, Done: done, Total: total})
	}
}

func attachReason(err error) Reason {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return Reason("attach: " + unix.ErrnoName(errno))
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return "attach: not supported"
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return "attach: verifier rejected"
	}
	return "attach: other error"
}

// fatal errors stop attaching: retrying other functions cannot help.
func fatal(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EMFILE) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// attachMulti attaches kprobe.multi links over all functions (one link in
// Counts mode, shards in Pruned mode); when the kernel refuses a set, it
// bisects to find and exclude the bad functions.
func (t *Tracer) attachMulti(ctx context.Context) error {
	t.progress("attach", 0, len(t.cat.Functions))
	done := 0
	for _, part := range multiParts(t.cat, t.mode) {
		ls, err := t.attachMultiSet(ctx, part, true)
		t.multi = append(t.multi, ls...)
		if err != nil {
			return err
		}
		done += len(part)
		t.progress("attach", done, len(t.cat.Functions))
	}
	return nil
}

// multiParts splits the catalogue into the function sets of Open's
// kprobe.multi links: one in Counts mode; in Pruned mode, the prior
// functions in links of shardSize, then the others in links of openShard.
func multiParts(cat *Catalogue, mode Mode) [][]int {
	var hot, rest []int
	for i, f := range cat.Functions {
		if mode == Pruned && prior[f.Name] {
			hot = append(hot, i)
		} else {
			rest = append(rest, i)
		}
	}
	if mode != Pruned {
		return [][]int{rest}
	}
	return append(slices.Collect(slices.Chunk(hot, shardSize)), slices.Collect(slices.Chunk(rest, openShard))...)
}

// prior names the functions measured workloads commonly run (prior.txt,
// made by internal/cmd/prior from the lab's profiles). In Pruned mode Open
// gives them links of their own, so that the first rounds of pruning
// replace small links that are mostly seen instead of every big one: the
// seen functions of a workload are otherwise spread over all links, and a
// replacement probes again every function of its link that was not seen.
// It changes how fast probes go, never which functions are reported.
var prior = func() map[string]bool {
	m := map[string]bool{}
	for l := range strings.Lines(priorText) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[l] = true
		}
	}
	return m
}()

//go:embed prior.txt
var priorText string

// attachMultiSet attaches links over idx and marks them armed. With bisect,
// functions the kernel refuses are excluded one by one; without, the first
// error stops it.
func (t *Tracer) attachMultiSet(ctx context.Context, idx []int, bisect bool) ([]*multiLink, error) {
	p, err := t.objs.Program(bpf.KprobeMulti)
	if err != nil {
		return nil, err
	}
	var out []*multiLink
	var try func(idx []int) error
	try = func(idx []int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		addrs := make([]uintptr, len(idx))
		for j, i := range idx {
			addrs[j] = uintptr(t.cat.Functions[i].Addr)
		}
		// No cookies: the program finds the index from the address.
		l, err := link.KprobeMulti(p, link.KprobeMultiOptions{Addresses: addrs})
		if err == nil {
			out = append(out, &multiLink{l: l, idx: slices.Clone(idx)})
			for _, i := range idx {
				t.armed[i] = true
			}
			return nil
		}
		if fatal(err) || !bisect {
			return explain(KprobeMulti, err)
		}
		if len(idx) == 1 {
			r := attachReason(err)
			t.stMu.Lock()
			t.excluded[r]++
			t.stMu.Unlock()
			if _, ok := t.samples[r]; !ok {
				t.samples[r] = fmt.Sprintf("%s: %v", t.cat.Functions[idx[0]].Name, err)
			}
			return nil
		}
		h := len(idx) / 2
		if err := try(idx[:h]); err != nil {
			return err
		}
		return try(idx[h:])
	}
	return out, try(idx)
}

// attachEach attaches one link per function with a bounded worker pool.
// The kprobe backend attaches by address. The fentry backend attaches by
// name (BTF); the functions it cannot take (no BTF FUNC, a name that is not
// unique, a signature trampolines refuse) get kprobes by address beside
// it, or are excluded for their fentry reason if kprobes do not work here.
func (t *Tracer) attachEach(ctx context.Context) error {
	t.flinks = make([]link.Link, len(t.cat.Functions))
	var todo []int
	var beside int
	for i, f := range t.cat.Functions {
		if t.backend == Fentry && f.noFentry != "" {
			beside++
		}
		todo = append(todo, i)
	}
	if beside > 0 {
		if err := t.kprobeUsable(); err != nil {
			t.kprobeErr = err
			kept := todo[:0]
			for _, i := range todo {
				if f := t.cat.Functions[i]; f.noFentry != "" {
					t.excluded[f.noFentry]++
					if _, ok := t.samples[f.noFentry]; !ok {
						t.samples[f.noFentry] = fmt.Sprintf("%s: fentry cannot take it and kprobes do not work here: %v", f, err)
					}
					continue
				}
				kept = append(kept, i)
			}
			todo = kept
		} else {
			t.besides = beside
		}
	}
	return t.attachSet(ctx, todo, "attach")
}

// kprobeUsable tries the kprobe program by address on one function.
func (t *Tracer) kprobeUsable() error {
	prog, err := t.objs.Program(bpf.Kprobe)
	if err != nil {
		return err
	}
	target := probeTarget(t.cat)
	if target < 0 {
		return errors.New("no function to try")
	}
	l, err := kprobeAt(t.cat.Functions[target].Addr, prog, uint64(len(t.cat.Functions))) // an index the counter drops
	if err != nil {
		return explain(Kprobe, err)
	}
	return l.Close()
}

// byKprobe says whether function i is probed with a kprobe.
func (t *Tracer) byKprobe(i int) bool {
	return t.backend == Kprobe || t.backend == Fentry && t.cat.Functions[i].noFentry != ""
}

// attachOne attaches the probe of function i (fentry: loads its program).
func (t *Tracer) attachOne(i int) (link.Link, ebpf.ProgramID, error) {
	f := t.cat.Functions[i]
	if t.byKprobe(i) {
		prog, err := t.objs.Program(bpf.Kprobe)
		if err != nil {
			return nil, 0, err
		}
		l, err := kprobeAt(f.Addr, prog, uint64(i))
		return l, 0, err
	}
	p, err := t.objs.Fentry(f.Name)
	if err != nil {
		return nil, 0, err
	}
	defer p.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry, Cookie: uint64(i)})
	if err != nil {
		return nil, 0, err
	}
	var id ebpf.ProgramID
	if info, ierr := p.Info(); ierr == nil {
		id, _ = info.ID()
	}
	return l, id, nil
}

// attachSet attaches the functions todo (one link each) with a bounded
// worker pool; failures are counted as exclusions (stage names the reason's
// prefix), fatal ones stop it.
func (t *Tracer) attachSet(ctx context.Context, todo []int, stage string) error {
	var (
		mu       sync.Mutex
		done     int
		firstErr error
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < t.opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				l, id, err := t.attachOne(i)
				mu.Lock()
				if err != nil {
					r := attachReason(err)
					if stage != "attach" {
						r = Reason(stage + strings.TrimPrefix(string(r), "attach"))
					}
					t.stMu.Lock()
					t.excluded[r]++
					t.stMu.Unlock()
					if _, ok := t.samples[r]; !ok {
						t.samples[r] = fmt.Sprintf("%s: %v", t.cat.Functions[i].Name, err)
					}
					if fatal(err) && firstErr == nil {
						firstErr = explain(t.backend, fmt.Errorf("%s %s: %w", stage, t.cat.Functions[i].Name, err))
					}
				} else {
					t.flinks[i], t.armed[i] = l, true
					if id != 0 {
						t.stMu.Lock()
						t.fprogs[i] = id
						t.stMu.Unlock()
					}
				}
				done++
				if done%256 == 0 || done == len(todo) {
					t.progress(stage, done, len(todo))
				}
				mu.Unlock()
			}
		}()
	}
	t.progress(stage, 0, len(todo))
feed:
	for _, i := range todo {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// Backend is the backend in use.
func (t *Tracer) Backend() Backend { return t.backend }

// AddScope starts counting for the cgroup v2 subtree at dir (a directory
// under the cgroup2 mount, or a path relative to its root such as
// "/system.slice"). Descendants created later are included. In Pruned mode
// it first re-arms the probes pruned so far (the new scope has seen
// nothing), so it can take as long as attaching those functions.
func (t *Tracer) AddScope(dir string) (*Scope, error) {
	if err := t.closedErr(); err != nil {
		return nil, fmt.Errorf("add scope %s: %w", dir, err)
	}
	d, id, level, err := scopeDir(dir)
	if err != nil {
		return nil, fmt.Errorf("add scope: %w", err)
	}
	return t.add(d, id, level)
}

// AddScopeID is AddScope for a cgroup id (as bpf_get_current_cgroup_id and
// the inode number of the cgroup directory give it).
func (t *Tracer) AddScopeID(id uint64) (*Scope, error) {
	if err := t.closedErr(); err != nil {
		return nil, fmt.Errorf("add scope: %w", err)
	}
	d, err := cgroupByID(id)
	if err != nil {
		return nil, fmt.Errorf("add scope: %w", err)
	}
	return t.AddScope(d)
}

func (t *Tracer) add(dir string, id uint64, level int) (*Scope, error) {
	if err := t.waitPending(); err != nil {
		return nil, fmt.Errorf("add scope %s: %w", dir, err)
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	t.mu.Lock()
	full, closed := !slices.Contains(t.scopes[:], nil), t.closed
	t.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("add scope %s: %w", dir, ErrClosed)
	}
	if full {
		return nil, fmt.Errorf("add scope %s: all %d scopes in use: remove one first", dir, MaxScopes)
	}
	// Re-arm before the scope counts: no blind spot in its window.
	if err := t.rearm(); err != nil {
		return nil, fmt.Errorf("add scope %s: %w", dir, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for slot, s := range t.scopes {
		if s != nil {
			continue
		}
		if err := t.objs.ResetHits(slot); err != nil {
			return nil, fmt.Errorf("add scope %s: %w", dir, err)
		}
		if err := t.objs.SetScope(slot, id, level); err != nil {
			return nil, fmt.Errorf("add scope %s: %w", dir, err)
		}
		base, err := t.counters()
		if err != nil {
			t.objs.ClearScope(slot)
			return nil, fmt.Errorf("add scope %s: %w", dir, err)
		}
		s := &Scope{Path: dir, ID: id, slot: slot, level: level, base: base}
		t.scopes[slot] = s
		return s, nil
	}
	return nil, fmt.Errorf("add scope %s: all %d scopes in use: remove one first", dir, MaxScopes)
}

// closedErr is ErrClosed once Close has begun.
func (t *Tracer) closedErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return nil
}

// check says whether s is an active scope of t. mu must be held.
func (t *Tracer) check(s *Scope) error {
	if t.closed {
		return ErrClosed
	}
	if s == nil || s.slot < 0 || s.slot >= MaxScopes || t.scopes[s.slot] != s {
		return errors.New("scope is not part of this tracer (removed?)")
	}
	return nil
}

// RemoveScope stops counting s.
func (t *Tracer) RemoveScope(s *Scope) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(s); err != nil {
		return fmt.Errorf("remove scope: %w", err)
	}
	t.scopes[s.slot] = nil
	return t.objs.ClearScope(s.slot)
}

// Reset zeroes the counters of s. In Pruned mode it first re-arms the probes
// pruned so far (s has seen nothing after it), like AddScope.
func (t *Tracer) Reset(s *Scope) error {
	if err := t.waitPending(); err != nil {
		return fmt.Errorf("reset scope: %w", err)
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	t.mu.Lock()
	err := t.check(s)
	t.mu.Unlock()
	if err != nil {
		return fmt.Errorf("reset scope: %w", err)
	}
	if err := t.rearm(); err != nil {
		return fmt.Errorf("reset scope %s: %w", s.Path, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(s); err != nil {
		return fmt.Errorf("reset scope: %w", err)
	}
	if err := t.objs.ResetHits(s.slot); err != nil {
		return fmt.Errorf("reset scope %s: %w", s.Path, err)
	}
	base, err := t.counters()
	if err != nil {
		return fmt.Errorf("reset scope %s: %w", s.Path, err)
	}
	s.base = base
	return nil
}

// Snapshot returns the functions s has entered since it was added or reset.
func (t *Tracer) Snapshot(s *Scope) (*Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(s); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	t.stMu.Lock()
	fns, attached := t.cat.Functions, t.attached
	t.stMu.Unlock()
	var rows [bpf.Contexts][]uint64
	for c := range rows {
		rows[c] = make([]uint64, t.capacity)
		if err := t.objs.HitsIn(s.slot, bpf.Context(c), rows[c]); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
		}
	}
	snap := &Snapshot{Scope: s.Path, Backend: t.backend, Mode: t.mode, Interrupts: t.objs.Interrupts(), Softirq: "own do_softirq, guard: " + t.objs.Softirq(),
		Attached: attached, Excluded: map[Reason]int{}, Taken: time.Now()}
	t.stMu.Lock()
	for r, n := range t.excluded {
		snap.Excluded[r] = n
	}
	snap.Pruned = t.pruned
	perr := t.pruneErr
	t.stMu.Unlock()
	if perr != nil {
		return nil, fmt.Errorf("snapshot %s: pruning failed, probes may be missing: %w (use Options.Counts to trace without pruning)", s.Path, perr)
	}
	var origins map[int][]OriginCount
	if t.opts.Attribution {
		oc, err := t.objs.Origins(s.slot)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
		}
		origins = map[int][]OriginCount{}
		for _, c := range oc {
			origins[c.Index] = append(origins[c.Index], OriginCount{Origin: Origin(c.Origin), Count: c.Count})
		}
		snap.Attributed = true
	}
	for i := range fns {
		var c uint64
		var ctx Context
		for k, bit := range [bpf.Contexts]Context{Task, Softirq, Interrupt} {
			if v := rows[k][i]; v > 0 {
				c += v
				ctx |= bit
			}
		}
		if c > 0 {
			if t.mode == Pruned {
				c = 1
			}
			h := Hit{Function: fns[i], Count: c, Context: ctx, Origins: origins[i]}
			slices.SortFunc(h.Origins, func(a, b OriginCount) int { return cmp.Compare(a.Origin, b.Origin) })
			snap.Hits = append(snap.Hits, h)
		}
	}
	now, err := t.counters()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
	}
	w := now.since(s.base)
	snap.Misses, snap.Dropped, snap.Skipped, snap.Events = w.misses, w.dropped, w.skipped, w.events
	if snap.Attributed {
		snap.OriginsDropped = w.originsDropped
	}
	return snap, nil
}

// counters reads the tracer-wide counters as totals since Open. mu must be
// held.
func (t *Tracer) counters() (counters, error) {
	st, err := t.objs.Stats()
	if err != nil {
		return counters{}, err
	}
	m, err := t.Missed()
	if err != nil {
		return counters{}, err
	}
	return counters{misses: m.Total(), dropped: st.Dropped, skipped: st.Interrupt, events: st.Events, originsDropped: st.OriginsDropped}, nil
}

func progMisses(id ebpf.ProgramID) (uint64, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return 0, fmt.Errorf("program %d: %w", id, err)
	}
	defer p.Close()
	st, err := p.Stats()
	if err != nil {
		return 0, fmt.Errorf("program %d stats: %w", id, err)
	}
	return st.RecursionMisses, nil
}

// linkMissed is fprobe's count of handler runs skipped for recursion
// (kprobe.multi link info, 6.7+; 0 where the kernel does not report it).
func linkMissed(l link.Link) uint64 {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	if km := info.KprobeMulti(); km != nil {
		return km.Missed
	}
	return 0
}

// Measure waits warmup (start-up is not steady state), resets s, waits
// window and returns the snapshot of that window.
func (t *Tracer) Measure(ctx context.Context, s *Scope, warmup, window time.Duration) (*Snapshot, error) {
	if err := t.closedErr(); err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	if err := sleep(ctx, warmup); err != nil {
		return nil, err
	}
	if err := t.Reset(s); err != nil {
		return nil, err
	}
	if err := sleep(ctx, window); err != nil {
		return nil, err
	}
	return t.Snapshot(s)
}

// Converge samples s n times, every interval from the call, and returns how
// many functions were new in each interval (a series that falls to 0 in
// steady state) and the last snapshot. The samples are taken at fixed
// times, so the time snapshots take does not lengthen the window. n must
// be at least 1: without a sample there is no snapshot to return.
func (t *Tracer) Converge(ctx context.Context, s *Scope, interval time.Duration, n int) ([]int, *Snapshot, error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("converge: %d samples: want at least 1", n)
	}
	if err := t.closedErr(); err != nil {
		return nil, nil, fmt.Errorf("converge: %w", err)
	}
	seen := map[Function]bool{}
	var series []int
	var last *Snapshot
	start := time.Now()
	for k := 0; k < n; k++ {
		if err := sleep(ctx, time.Until(start.Add(time.Duration(k+1)*interval))); err != nil {
			return series, last, err
		}
		snap, err := t.Snapshot(s)
		if err != nil {
			return series, last, err
		}
		added := 0
		for _, h := range snap.Hits {
			if !seen[h.Function] {
				seen[h.Function] = true
				added++
			}
		}
		series = append(series, added)
		last = snap
	}
	return series, last, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close detaches every link (concurrently: fentry detach waits for RCU
// grace periods) and frees the maps. Every method called after it returns
// an error wrapping ErrClosed; Close itself may be called again (it then
// does nothing and returns nil).
func (t *Tracer) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.stopModules()
	if t.stop != nil {
		close(t.stop)
		<-t.stopped
		t.stop = nil
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	var all []link.Link
	for _, l := range t.flinks {
		if l != nil {
			all = append(all, l)
		}
	}
	for _, m := range t.multi {
		all = append(all, m.l)
	}
	t.flinks, t.multi = nil, nil
	errs := t.closeLinks(all, "detach")
	if t.objs != nil {
		errs = append(errs, t.objs.Close())
		t.objs = nil
	}
	return errors.Join(errs...)
}

// closeLinks closes links concurrently (fentry detach waits for RCU-tasks
// grace periods; the kernel batches concurrent waits).
func (t *Tracer) closeLinks(links []link.Link, stage string) []error {
	var errs []error
	total := len(links)
	work := make(chan link.Link)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	workers := t.opts.Workers
	if t.backend == Fentry && workers < 64 {
		workers = 64 // detach is sleep-bound, not CPU-bound
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				err := l.Close()
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				done++
				if stage != "" && (done%256 == 0 || done == total) {
					t.progress(stage, done, total)
				}
				mu.Unlock()
			}
		}()
	}
	for _, l := range links {
		work <- l
	}
	close(work)
	wg.Wait()
	return errs
}
