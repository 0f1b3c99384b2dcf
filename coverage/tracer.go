package coverage

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
	Backend    Backend        // "" picks the first of Backends that works here
	Interrupts bool           // also count hard-IRQ, soft-IRQ and NMI context
	Workers    int            // parallel attach/detach for fentry and kprobe; 0 = 2×CPUs
	Progress   func(Progress) // optional; called from Open and Close as work advances
}

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
	opts     Options
	objs     *bpf.Objects
	links    []link.Link
	progs    []ebpf.ProgramID // fentry programs (their FDs are closed once linked)
	attached int
	excluded map[Reason]int
	samples  map[Reason]string // one error text per attach failure reason

	mu     sync.Mutex
	scopes [MaxScopes]*Scope
}

// Scope is one cgroup v2 subtree being counted.
type Scope struct {
	Path  string // cgroup directory
	ID    uint64 // cgroup id (inode number)
	slot  int
	level int
}

// Hit is a function entered Count times in a scope.
type Hit struct {
	Function
	Count uint64
}

// Snapshot is the function set of one scope at one moment.
type Snapshot struct {
	Scope      string
	Backend    Backend
	Interrupts string // "counted", or how interrupt context was detected and skipped
	Hits       []Hit  // functions with Count > 0, in catalogue order
	Attached   int    // functions the counter is attached to
	Excluded   map[Reason]int
	Misses     uint64 // program runs the kernel skipped (recursion misses, all scopes)
	Dropped    uint64 // events the counter could not record (all scopes)
	Skipped    uint64 // events skipped in interrupt context (all scopes)
	Taken      time.Time
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
	b := opts.Backend
	if b == "" {
		var why []string
		for _, p := range ProbeBackends(cat) {
			if p.Err == nil {
				b = p.Backend
				break
			}
			why = append(why, "  "+p.Err.Error())
		}
		if b == "" {
			return nil, fmt.Errorf("open tracer: no exact backend works on this kernel:\n%s", strings.Join(why, "\n"))
		}
	} else if err := probe(b, cat, probeTarget(cat)); err != nil {
		return nil, fmt.Errorf("open tracer: %w", err)
	}
	objs, err := bpf.New(bpf.Config{Functions: len(cat.Functions), Interrupts: opts.Interrupts})
	if err != nil {
		return nil, fmt.Errorf("open tracer: %w", err)
	}
	t := &Tracer{cat: cat, backend: b, opts: opts, objs: objs, excluded: map[Reason]int{}, samples: map[Reason]string{}}
	for r, n := range cat.Excluded {
		t.excluded[r] = n
	}
	switch b {
	case KprobeMulti:
		err = t.attachMulti(ctx)
	case Fentry, Kprobe:
		err = t.attachEach(ctx)
	default:
		err = fmt.Errorf("unknown backend %q (want one of %v)", b, Backends)
	}
	if err == nil && t.attached == 0 {
		err = errors.New("no function could be attached (see the excluded counts)")
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open tracer (%s): %w", b, err)
	}
	return t, nil
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

// attachMulti attaches one kprobe.multi link over all addresses; when the
// kernel refuses the set, it bisects to find and exclude the bad functions.
func (t *Tracer) attachMulti(ctx context.Context) error {
	p, err := t.objs.Program(bpf.KprobeMulti)
	if err != nil {
		return err
	}
	all := make([]int, len(t.cat.Functions))
	for i := range all {
		all[i] = i
	}
	total := len(all)
	t.progress("attach", 0, total)
	var try func(idx []int) error
	try = func(idx []int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		addrs := make([]uintptr, len(idx))
		cookies := make([]uint64, len(idx))
		for j, i := range idx {
			addrs[j] = uintptr(t.cat.Functions[i].Addr)
			cookies[j] = uint64(i)
		}
		l, err := link.KprobeMulti(p, link.KprobeMultiOptions{Addresses: addrs, Cookies: cookies})
		if err == nil {
			t.links = append(t.links, l)
			t.attached += len(idx)
			t.progress("attach", t.attached, total)
			return nil
		}
		if fatal(err) {
			return explain(KprobeMulti, err)
		}
		if len(idx) == 1 {
			r := attachReason(err)
			t.excluded[r]++
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
	return try(all)
}

// attachEach attaches one link per function with a bounded worker pool.
func (t *Tracer) attachEach(ctx context.Context) error {
	var prog *ebpf.Program
	var err error
	if t.backend == Kprobe {
		if prog, err = t.objs.Program(bpf.Kprobe); err != nil {
			return err
		}
	}
	n := len(t.cat.Functions)
	links := make([]link.Link, n)
	progs := make([]ebpf.ProgramID, n)
	reasons := make([]Reason, n)
	names := map[string]int{}
	for _, f := range t.cat.Functions {
		names[f.Name]++
	}
	var todo []int
	for i, f := range t.cat.Functions {
		switch {
		case names[f.Name] > 1:
			reasons[i] = Ambiguous
		case t.backend == Fentry && f.noFentry != "":
			reasons[i] = f.noFentry
		default:
			todo = append(todo, i)
		}
	}
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
				f := t.cat.Functions[i]
				var l link.Link
				var id ebpf.ProgramID
				var err error
				if t.backend == Fentry {
					var p *ebpf.Program
					if p, err = t.objs.Fentry(f.Name); err == nil {
						if l, err = link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry, Cookie: uint64(i)}); err == nil {
							if info, ierr := p.Info(); ierr == nil {
								id, _ = info.ID()
							}
						}
						p.Close()
					}
				} else {
					l, err = link.Kprobe(f.Name, prog, &link.KprobeOptions{Cookie: uint64(i)})
				}
				mu.Lock()
				if err != nil {
					reasons[i] = attachReason(err)
					if _, ok := t.samples[reasons[i]]; !ok {
						t.samples[reasons[i]] = fmt.Sprintf("%s: %v", f.Name, err)
					}
					if fatal(err) && firstErr == nil {
						firstErr = explain(t.backend, fmt.Errorf("attach %s: %w", f.Name, err))
					}
				} else {
					links[i], progs[i] = l, id
				}
				done++
				if done%256 == 0 || done == len(todo) {
					t.progress("attach", done, len(todo))
				}
				mu.Unlock()
			}
		}()
	}
	t.progress("attach", 0, len(todo))
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
	for i := range links {
		if links[i] != nil {
			t.links = append(t.links, links[i])
			t.attached++
			if progs[i] != 0 {
				t.progs = append(t.progs, progs[i])
			}
		} else if reasons[i] != "" {
			t.excluded[reasons[i]]++
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// Backend is the backend in use.
func (t *Tracer) Backend() Backend { return t.backend }

// AddScope starts counting for the cgroup v2 subtree at dir (a directory
// under the cgroup2 mount, or a path relative to its root such as
// "/system.slice"). Descendants created later are included.
func (t *Tracer) AddScope(dir string) (*Scope, error) {
	d, id, level, err := cgroupInfo(dir)
	if err != nil {
		return nil, fmt.Errorf("add scope: %w", err)
	}
	return t.add(d, id, level)
}

// AddScopeID is AddScope for a cgroup id (as bpf_get_current_cgroup_id and
// the inode number of the cgroup directory give it).
func (t *Tracer) AddScopeID(id uint64) (*Scope, error) {
	d, err := cgroupByID(id)
	if err != nil {
		return nil, fmt.Errorf("add scope: %w", err)
	}
	return t.AddScope(d)
}

func (t *Tracer) add(dir string, id uint64, level int) (*Scope, error) {
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
		s := &Scope{Path: dir, ID: id, slot: slot, level: level}
		t.scopes[slot] = s
		return s, nil
	}
	return nil, fmt.Errorf("add scope %s: all %d scopes in use: remove one first", dir, MaxScopes)
}

func (t *Tracer) check(s *Scope) error {
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

// Reset zeroes the counters of s.
func (t *Tracer) Reset(s *Scope) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(s); err != nil {
		return fmt.Errorf("reset scope: %w", err)
	}
	return t.objs.ResetHits(s.slot)
}

// Snapshot returns the functions s has entered since it was added or reset.
func (t *Tracer) Snapshot(s *Scope) (*Snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(s); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	hits := make([]uint64, len(t.cat.Functions))
	if err := t.objs.Hits(s.slot, hits); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
	}
	snap := &Snapshot{Scope: s.Path, Backend: t.backend, Interrupts: t.objs.Interrupts(),
		Attached: t.attached, Excluded: map[Reason]int{}, Taken: time.Now()}
	for r, n := range t.excluded {
		snap.Excluded[r] = n
	}
	for i, c := range hits {
		if c > 0 {
			snap.Hits = append(snap.Hits, Hit{Function: t.cat.Functions[i], Count: c})
		}
	}
	st, err := t.objs.Stats()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
	}
	snap.Dropped, snap.Skipped = st.Dropped, st.Interrupt
	if snap.Misses, err = t.misses(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.Path, err)
	}
	return snap, nil
}

// misses sums the kernel's recursion-miss counters of the programs in use.
func (t *Tracer) misses() (uint64, error) {
	var sum uint64
	switch t.backend {
	case KprobeMulti, Kprobe:
		kind := bpf.KprobeMulti
		if t.backend == Kprobe {
			kind = bpf.Kprobe
		}
		p, err := t.objs.Program(kind)
		if err != nil {
			return 0, err
		}
		st, err := p.Stats()
		if err != nil {
			return 0, fmt.Errorf("program stats: %w", err)
		}
		sum = st.RecursionMisses
	case Fentry:
		for _, id := range t.progs {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				return 0, fmt.Errorf("program %d: %w", id, err)
			}
			st, err := p.Stats()
			p.Close()
			if err != nil {
				return 0, fmt.Errorf("program stats: %w", err)
			}
			sum += st.RecursionMisses
		}
	}
	return sum, nil
}

// Measure waits warmup (start-up is not steady state), resets s, waits
// window and returns the snapshot of that window.
func (t *Tracer) Measure(ctx context.Context, s *Scope, warmup, window time.Duration) (*Snapshot, error) {
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

// Converge samples s n times, every interval, and returns how many functions
// were new in each interval (a series that falls to 0 in steady state) and
// the last snapshot.
func (t *Tracer) Converge(ctx context.Context, s *Scope, interval time.Duration, n int) ([]int, *Snapshot, error) {
	seen := map[Function]bool{}
	var series []int
	var last *Snapshot
	for k := 0; k < n; k++ {
		if err := sleep(ctx, interval); err != nil {
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
// grace periods) and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	total := len(t.links)
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
				if done%256 == 0 || done == total {
					t.progress("detach", done, total)
				}
				mu.Unlock()
			}
		}()
	}
	for _, l := range t.links {
		work <- l
	}
	close(work)
	wg.Wait()
	t.links = nil
	if t.objs != nil {
		errs = append(errs, t.objs.Close())
		t.objs = nil
	}
	return errors.Join(errs...)
}
