package coverage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/bpf"
)

// Bounds of the pruning period (see Pruned).
const (
	minPrunePeriod = 100 * time.Millisecond
	maxPrunePeriod = time.Second
)

// pruneLoop removes the probes of functions every active scope has seen,
// until Close. Its period adapts to how fast new functions appear.
//
// It runs on its own thread at nice -10 when allowed (root): pruning is a
// burst of kernel work (text patching) that competes with the traced
// workload for CPU, and the sooner it is done the less the workload pays
// in probe hits meanwhile. The thread ends with the loop.
func (t *Tracer) pruneLoop() {
	defer close(t.stopped)
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -10)
	period := minPrunePeriod
	tm := time.NewTimer(period)
	defer tm.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tm.C:
		}
		n, err := t.prune()
		if err != nil {
			t.stMu.Lock()
			if t.pruneErr == nil {
				t.pruneErr = err
			}
			t.stMu.Unlock()
			return
		}
		period = nextPeriod(period, n)
		tm.Reset(period)
	}
}

// nextPeriod halves the period while many new functions appear (pruning
// them soon saves the most) and doubles it while few do (a kprobe.multi
// replacement costs in proportion to the link, not to what it removes).
func nextPeriod(p time.Duration, pruned int) time.Duration {
	switch {
	case pruned >= 16:
		p /= 2
	case pruned < 4:
		p *= 2
	}
	return min(max(p, minPrunePeriod), maxPrunePeriod)
}

// seenByAll returns the armed functions every active scope has entered;
// none when no scope is active.
// heat[i] estimates the probe hits of function i since Open by any task:
// the calls the active scopes counted plus the sampled rest (other tasks,
// interrupt context) times the sampling gap. Those are what pruning it
// saves.
func (t *Tracer) seenByAll() (seen []bool, n int, heat []uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.scopes {
		if s == nil {
			continue
		}
		if err := t.objs.Hits(s.slot, t.buf); err != nil {
			return nil, 0, nil, fmt.Errorf("read counters of %s: %w", s.Path, err)
		}
		if seen == nil {
			seen = slices.Clone(t.armed)
			heat = make([]uint64, len(t.armed))
		}
		for i, c := range t.buf[:len(t.armed)] {
			if c == 0 {
				seen[i] = false
			}
			heat[i] += c
		}
	}
	if seen == nil {
		return nil, 0, nil, nil
	}
	if err := t.objs.Sampled(t.buf); err != nil {
		return nil, 0, nil, fmt.Errorf("read sampled counters: %w", err)
	}
	for i, c := range t.buf[:len(t.armed)] {
		heat[i] += c * bpf.SampleGap
	}
	n = 0
	for _, v := range seen {
		if v {
			n++
		}
	}
	return seen, n, heat, nil
}

// prune removes the probes of the functions every active scope has seen
// and returns how many.
func (t *Tracer) prune() (int, error) {
	t.armMu.Lock()
	defer t.armMu.Unlock()
	seen, n, heat, err := t.seenByAll()
	if err != nil || n == 0 {
		return 0, err
	}
	if t.backend == KprobeMulti {
		return t.pruneMulti(seen, heat)
	}
	// Hottest first: the kernel detaches one link at a time (under ftrace's
	// lock, each waiting for grace periods), so the order of the closes is
	// the order in which the workload stops paying.
	var order []int
	for i, v := range seen {
		if v {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(heat[b], heat[a]) })
	var close []link.Link
	var retired uint64
	for _, i := range order {
		close = append(close, t.flinks[i])
		t.flinks[i], t.armed[i] = nil, false
	}
	t.stMu.Lock()
	for i, v := range seen {
		if id, ok := t.fprogs[i]; ok && v {
			m, _ := progMisses(id) // the link still holds the program
			retired += m
			delete(t.fprogs, i)
		}
	}
	t.retired += retired
	t.pruned += n
	t.stMu.Unlock()
	if errs := t.closeLinks(close, ""); len(errs) > 0 {
		return n, fmt.Errorf("detach %d pruned probes: %w", len(errs), errors.Join(errs...))
	}
	return n, nil
}

// pruneMulti replaces each kprobe.multi link whose seen functions have
// run often enough to pay for it (pruneRent) by one over its functions not
// yet seen: the new link is attached before the old one is closed. Links
// whose seen functions ran most often go first; Close interrupts the round
// between links.
func (t *Tracer) pruneMulti(seen []bool, heat []uint64) (int, error) {
	type job struct {
		m    *multiLink
		heat uint64
	}
	var jobs []job
	for _, m := range t.multi {
		var h uint64
		hit, rest := false, 0
		for _, i := range m.idx {
			if seen[i] {
				hit = true
				h += heat[i]
			} else {
				rest++
			}
		}
		if hit && worthReplacing(h, len(m.idx), rest) {
			jobs = append(jobs, job{m, h})
		}
	}
	slices.SortStableFunc(jobs, func(a, b job) int { return cmp.Compare(b.heat, a.heat) })
	pruned := 0
	for _, j := range jobs {
		select {
		case <-t.stop:
			return pruned, nil
		default:
		}
		var rest []int
		for _, i := range j.m.idx {
			if !seen[i] {
				rest = append(rest, i)
			}
		}
		var repl []*multiLink
		t0 := time.Now()
		for part := range slices.Chunk(rest, shardSize) {
			ls, err := t.attachMultiSet(context.Background(), part, false)
			repl = append(repl, ls...)
			if err != nil {
				// The old link stays, so nothing goes unprobed; what was
				// attached of its replacement goes.
				for _, m := range repl {
					m.l.Close()
				}
				return pruned, fmt.Errorf("replace a kprobe.multi link of %d functions by links over the %d not yet seen: %w", len(j.m.idx), len(rest), err)
			}
		}
		k := 0
		for _, i := range j.m.idx {
			if seen[i] {
				t.armed[i] = false
				k++
			}
		}
		missed := linkMissed(j.m.l)
		t1 := time.Now()
		err := j.m.l.Close()
		if t.debugf != nil {
			t.debugf("replace link of %d (heat %d): %d seen, %d re-probed: attach %v, close %v", len(j.m.idx), j.heat, len(j.m.idx)-len(rest), len(rest), t1.Sub(t0), time.Since(t1))
		}
		t.stMu.Lock()
		t.multi = slices.DeleteFunc(t.multi, func(m *multiLink) bool { return m == j.m })
		t.multi = append(t.multi, repl...)
		t.retired += missed
		t.pruned += k
		t.stMu.Unlock()
		pruned += k
		if err != nil {
			return pruned, fmt.Errorf("detach a replaced kprobe.multi link: %w", err)
		}
	}
	return pruned, nil
}

// rearm attaches again every function pruned so far. armMu must be held.
func (t *Tracer) rearm() error {
	var todo []int
	for i, a := range t.armed {
		if t.attachable[i] && !a {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	ctx := context.Background()
	var err error
	if t.backend == KprobeMulti {
		// Links as big as Open's: these functions ran before, so most run
		// again soon and their link is replaced in one step (one close,
		// one set of grace periods) by one over the few that do not.
		for len(todo) > 0 && err == nil {
			k := min(openShard, len(todo))
			var ls []*multiLink
			ls, err = t.attachMultiSet(ctx, todo[:k], true)
			t.stMu.Lock()
			t.multi = append(t.multi, ls...)
			t.stMu.Unlock()
			todo = todo[k:]
		}
	} else {
		err = t.attachSet(ctx, todo, "re-arm")
	}
	// What could not be attached again is lost (counted in Excluded).
	for i, a := range t.armed {
		if t.attachable[i] && !a {
			t.attachable[i] = false
		}
	}
	t.stMu.Lock()
	t.pruned = 0
	t.stMu.Unlock()
	if err != nil {
		return fmt.Errorf("re-arm pruned probes: %w", err)
	}
	return nil
}
