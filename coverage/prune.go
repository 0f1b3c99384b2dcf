package coverage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf/link"
)

// Bounds of the pruning period (see Pruned).
const (
	minPrunePeriod = 100 * time.Millisecond
	maxPrunePeriod = 5 * time.Second
)

// pruneLoop removes the probes of functions every active scope has seen,
// until Close. Its period adapts to how fast new functions appear.
func (t *Tracer) pruneLoop() {
	defer close(t.stopped)
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
func (t *Tracer) seenByAll() ([]bool, int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var seen []bool
	for _, s := range t.scopes {
		if s == nil {
			continue
		}
		if err := t.objs.Hits(s.slot, t.buf); err != nil {
			return nil, 0, fmt.Errorf("read counters of %s: %w", s.Path, err)
		}
		if seen == nil {
			seen = slices.Clone(t.armed)
		}
		for i, c := range t.buf {
			if c == 0 {
				seen[i] = false
			}
		}
	}
	n := 0
	for _, v := range seen {
		if v {
			n++
		}
	}
	return seen, n, nil
}

// prune removes the probes of the functions every active scope has seen
// and returns how many.
func (t *Tracer) prune() (int, error) {
	t.armMu.Lock()
	defer t.armMu.Unlock()
	seen, n, err := t.seenByAll()
	if err != nil || n == 0 {
		return 0, err
	}
	if t.backend == KprobeMulti {
		return t.pruneMulti(seen)
	}
	var close []link.Link
	var retired uint64
	for i, v := range seen {
		if !v {
			continue
		}
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

// pruneMulti replaces each kprobe.multi link that holds seen functions by
// one over its functions not yet seen: the new link is attached before the
// old one is closed.
func (t *Tracer) pruneMulti(seen []bool) (int, error) {
	var keep []*multiLink
	var old []link.Link
	pruned := 0
	var firstErr error
	for k, m := range t.multi {
		var rest []int
		for _, i := range m.idx {
			if !seen[i] {
				rest = append(rest, i)
			}
		}
		if len(rest) == len(m.idx) {
			keep = append(keep, m)
			continue
		}
		var repl []*multiLink
		if len(rest) > 0 {
			var err error
			if repl, err = t.attachMultiSet(context.Background(), rest, false); err != nil {
				// The old link stays: nothing goes unprobed.
				firstErr = fmt.Errorf("replace a kprobe.multi link of %d functions by one of %d: %w", len(m.idx), len(rest), err)
				keep = append(keep, t.multi[k:]...)
				break
			}
		}
		for _, i := range m.idx {
			if seen[i] {
				t.armed[i] = false
				pruned++
			}
		}
		keep = append(keep, repl...)
		old = append(old, m.l)
	}
	t.stMu.Lock()
	for _, l := range old {
		t.retired += linkMissed(l)
	}
	t.multi = keep
	t.pruned += pruned
	t.stMu.Unlock()
	if errs := t.closeLinks(old, ""); len(errs) > 0 && firstErr == nil {
		firstErr = fmt.Errorf("detach %d replaced kprobe.multi links: %w", len(errs), errors.Join(errs...))
	}
	return pruned, firstErr
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
		for len(todo) > 0 && err == nil {
			k := min(shardSize, len(todo))
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
