package coverage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/bpf"
)

// TestOpenRefusedHere is acceptance item 6: on a kernel that cannot be
// traced (this development host: fentry EPERM, no kprobes, no fprobe) Open
// fails with ErrNoBackend and an error that names every backend it tried,
// EPERM, and the lockdown state as far as it is known, without blaming a
// cause it cannot know.
func TestOpenRefusedHere(t *testing.T) {
	if os.Geteuid() != 0 || !privileged(effectiveCaps()) {
		t.Skip("needs root: as a user every backend fails for want of privileges (TestOpenUnprivileged)")
	}
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Open(context.Background(), cat, Options{})
	if err == nil {
		tr.Close()
		t.Skip("this kernel can be traced: the test checks the refusal on kernels that cannot (the lab tests cover the rest)")
	}
	msg := err.Error()
	t.Log(msg)
	if !errors.Is(err, ErrNoBackend) || errors.Is(err, ErrPermission) {
		t.Errorf("as root: errors.Is(ErrNoBackend) = %v, errors.Is(ErrPermission) = %v; want true, false", errors.Is(err, ErrNoBackend), errors.Is(err, ErrPermission))
	}
	mode, known := lockdown()
	if errors.Is(err, ErrLockdown) != (known && mode == "confidentiality") {
		t.Errorf("errors.Is(ErrLockdown) = %v under lockdown %q (known %v)", errors.Is(err, ErrLockdown), mode, known)
	}
	for _, want := range []string{string(KprobeMulti), string(Fentry), string(Kprobe)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	if strings.Contains(msg, "operation not permitted") {
		want := "lockdown=" + mode
		if !known {
			want = lockdownCheck
		}
		if !strings.Contains(msg, "EPERM") || !strings.Contains(msg, want) {
			t.Errorf("an EPERM without the explanation %q", want)
		}
		// Facts only: integrity lockdown by itself does not forbid
		// tracing, and an unknown state is unknown.
		if mode != "confidentiality" && strings.Contains(msg, "forbids") {
			t.Errorf("error claims a cause it cannot know: %s", msg)
		}
	}
	// ChooseBackend answers the same, without attaching anything.
	if b, cerr := ChooseBackend(cat, ""); cerr == nil || !errors.Is(cerr, ErrNoBackend) {
		t.Errorf("ChooseBackend = %q, %v; want Open's ErrNoBackend", b, cerr)
	}
	// Forcing one backend gives that backend's reason.
	_, err = Open(context.Background(), cat, Options{Backend: Fentry})
	if err == nil || !strings.Contains(err.Error(), "fentry") || !strings.Contains(err.Error(), "lockdown") || !errors.Is(err, ErrNoBackend) {
		t.Errorf("forced fentry: %v", err)
	}
}

func TestCgroupOf(t *testing.T) {
	dir, err := CgroupOf(os.Getpid())
	if err != nil {
		if _, err2 := cgroupRoot(); err2 != nil {
			t.Skipf("no cgroup2 here: %v", err2)
		}
		t.Fatal(err)
	}
	_, id, level, err := cgroupInfo(dir)
	if err != nil || id == 0 || level < 0 {
		t.Fatalf("cgroupInfo(%s) = %d %d %v", dir, id, level, err)
	}
	back, err := cgroupByID(id)
	if err != nil || back != dir {
		t.Errorf("cgroupByID(%d) = %q, %v; want %q", id, back, err, dir)
	}
	if _, _, _, err := cgroupInfo("/proc"); err == nil {
		t.Error("cgroupInfo accepted /proc")
	}
}

func TestOpenEmpty(t *testing.T) {
	_, err := Open(context.Background(), &Catalogue{}, Options{})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Open of an empty catalogue: %v", err)
	}
}

func TestNextPeriod(t *testing.T) {
	p := minPrunePeriod
	for i := 0; i < 10; i++ {
		p = nextPeriod(p, 0)
	}
	if p != maxPrunePeriod {
		t.Errorf("no new functions for 10 periods: period %v, want the maximum %v", p, maxPrunePeriod)
	}
	q := nextPeriod(p, 100)
	if q != p/2 {
		t.Errorf("100 new functions: period %v, want half of %v", q, p)
	}
	if r := nextPeriod(q, 8); r != q {
		t.Errorf("8 new functions: period %v, want it kept at %v", r, q)
	}
	for i := 0; i < 10; i++ {
		q = nextPeriod(q, 1000)
	}
	if q != minPrunePeriod {
		t.Errorf("many new functions: period %v, want the minimum %v", q, minPrunePeriod)
	}
}

// TestMultiParts: Open's kprobe.multi links cover every catalogue function
// exactly once; in Pruned mode the prior's functions come first, in links
// of shardSize holding nothing else.
func TestMultiParts(t *testing.T) {
	if len(prior) < 500 || !prior["vfs_read"] || !prior["schedule"] {
		t.Fatalf("prior.txt: %d names, vfs_read %v, schedule %v: want the lab's common functions", len(prior), prior["vfs_read"], prior["schedule"])
	}
	var cat Catalogue
	for i := range 5000 {
		name := fmt.Sprintf("cold_%d", i)
		if i%7 == 0 {
			name = []string{"vfs_read", "schedule", "tcp_sendmsg", "do_epoll_wait"}[i/7%4] // clones share a name
		}
		cat.Functions = append(cat.Functions, Function{Name: name, Addr: uint64(0x1000 + 16*i)})
	}
	for _, mode := range []Mode{Counts, Pruned} {
		parts := multiParts(&cat, mode)
		seen := map[int]bool{}
		hotDone := false
		for _, p := range parts {
			hot := prior[cat.Functions[p[0]].Name]
			if mode == Counts && len(parts) != 1 {
				t.Fatalf("counts: %d links, want 1", len(parts))
			}
			if mode == Pruned {
				if hot && hotDone {
					t.Errorf("a prior link after the others")
				}
				hotDone = hotDone || !hot
				if limit := map[bool]int{true: shardSize, false: openShard}[hot]; len(p) > limit {
					t.Errorf("link of %d functions (prior %v), want at most %d", len(p), hot, limit)
				}
			}
			for _, i := range p {
				if seen[i] {
					t.Fatalf("%s: function %d in two links", mode, i)
				}
				seen[i] = true
				if mode == Pruned && prior[cat.Functions[i].Name] != hot {
					t.Errorf("link mixes prior and other functions")
				}
			}
		}
		if len(seen) != len(cat.Functions) {
			t.Errorf("%s: %d functions in links, want %d", mode, len(seen), len(cat.Functions))
		}
	}
}

// A replacement pays for every call site it patches: the functions the new
// link probes again and every function the old link held.
func TestWorthReplacing(t *testing.T) {
	for _, c := range []struct {
		heat    uint64
		n, rest int
		want    bool
	}{
		{heat: 128 * 387, n: 256, rest: 131, want: true},
		{heat: 128*387 - 1, n: 256, rest: 131, want: false},
		{heat: 128 * 387, n: 1024, rest: 131, want: false}, // same rest, a bigger old link to close
		{heat: 128, n: 1, rest: 0, want: true},             // a link of one seen function
		{heat: 127, n: 1, rest: 0, want: false},
	} {
		if got := worthReplacing(c.heat, c.n, c.rest); got != c.want {
			t.Errorf("worthReplacing(heat %d, link of %d, %d to probe again) = %v, want %v", c.heat, c.n, c.rest, got, c.want)
		}
	}
}

// hostTracer is a Tracer as Open leaves it, with the maps created but no
// probe attached: what the scope and snapshot bookkeeping needs, on a
// kernel that cannot attach (this host). It needs BPF maps (root).
func hostTracer(t *testing.T) (*Tracer, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create BPF maps")
	}
	cg, err := CgroupOf(os.Getpid())
	if err != nil {
		t.Skipf("no cgroup v2 to scope to here: %v", err)
	}
	cat := &Catalogue{Functions: []Function{{Name: "vfs_read", Addr: 0x1000}, {Name: "ksys_read", Addr: 0x2000}}}
	objs, err := bpf.New(bpf.Config{Functions: len(cat.Functions), Interrupts: true})
	if err != nil {
		t.Fatalf("create the maps: %v", err)
	}
	return newTracer(cat, Fentry, Options{Counts: true}, objs), cg
}

// Every method of a closed Tracer returns ErrClosed (they dereferenced the
// freed maps); Close twice is fine.
func TestTracerAfterClose(t *testing.T) {
	tr, cg := hostTracer(t)
	s, err := tr.AddScope(cg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Snapshot(s); err != nil {
		t.Fatalf("snapshot before Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"AddScope":    func() error { _, err := tr.AddScope(cg); return err },
		"AddScopeID":  func() error { _, err := tr.AddScopeID(s.ID); return err },
		"Snapshot":    func() error { _, err := tr.Snapshot(s); return err },
		"Reset":       func() error { return tr.Reset(s) },
		"RemoveScope": func() error { return tr.RemoveScope(s) },
		"Measure":     func() error { _, err := tr.Measure(ctx, s, 0, 0); return err },
		"Converge":    func() error { _, _, err := tr.Converge(ctx, s, 0, 1); return err },
	} {
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return call()
		}()
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Close while other goroutines snapshot and reset: each call either
// completes or returns ErrClosed, none touches the freed maps.
func TestTracerCloseConcurrent(t *testing.T) {
	tr, cg := hostTracer(t)
	s, err := tr.AddScope(cg)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for {
				var err error
				if g%2 == 0 {
					_, err = tr.Snapshot(s)
				} else {
					err = tr.Reset(s)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("a call racing Close: %v, want ErrClosed", err)
		}
	}
}

// Converge without a sample has no snapshot to return: an error, not nil.
func TestConvergeNoSamples(t *testing.T) {
	tr, cg := hostTracer(t)
	defer tr.Close()
	s, err := tr.AddScope(cg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1} {
		series, snap, err := tr.Converge(context.Background(), s, time.Millisecond, n)
		if err == nil || snap != nil || series != nil {
			t.Errorf("Converge(%d samples) = %v, %v, %v; want an error", n, series, snap, err)
		}
	}
	_, snap, err := tr.Converge(context.Background(), s, time.Millisecond, 1)
	if err != nil || snap == nil {
		t.Errorf("Converge(1 sample) = %v, %v", snap, err)
	}
}

// A Snapshot's counters cover its scope's window (since AddScope or the
// last Reset), not the tracer's life: the misses of programs pruning
// retired (a raw counter that only grows) stand in for every counter.
func TestSnapshotCountersPerWindow(t *testing.T) {
	tr, cg := hostTracer(t)
	defer tr.Close()
	bump := func(n uint64) {
		tr.stMu.Lock()
		tr.retired += n
		tr.stMu.Unlock()
	}
	misses := func(s *Scope) uint64 {
		t.Helper()
		snap, err := tr.Snapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Misses
	}
	bump(100) // before any window
	a, err := tr.AddScope(cg)
	if err != nil {
		t.Fatal(err)
	}
	if m := misses(a); m != 0 {
		t.Errorf("a new scope reports %d misses from before its window", m)
	}
	bump(30)
	b, err := tr.AddScope(cg)
	if err != nil {
		t.Fatal(err)
	}
	bump(7)
	if ma, mb := misses(a), misses(b); ma != 37 || mb != 7 {
		t.Errorf("misses a %d, b %d; want 37 and 7 (each scope's own window)", ma, mb)
	}
	if err := tr.Reset(a); err != nil {
		t.Fatal(err)
	}
	if m := misses(a); m != 0 {
		t.Errorf("after Reset: %d misses, want 0", m)
	}
	bump(5)
	if ma, mb := misses(a), misses(b); ma != 5 || mb != 12 {
		t.Errorf("misses a %d, b %d; want 5 and 12", ma, mb)
	}
}

func TestCountersSince(t *testing.T) {
	base := counters{misses: 10, dropped: 2, skipped: 100, events: 1000}
	now := counters{misses: 15, dropped: 2, skipped: 160, events: 1900}
	if got, want := now.since(base), (counters{misses: 5, skipped: 60, events: 900}); got != want {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	// A count read lower than at the window's start gives 0, not 2^64-1.
	if got := (counters{misses: 9}).since(base); got.misses != 0 {
		t.Errorf("a counter that went back: %d misses, want 0", got.misses)
	}
}
