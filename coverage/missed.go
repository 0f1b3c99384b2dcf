package coverage

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/bpf"
)

// Missed is what the kernel's recursion guards dropped since Open, by the
// guard that counted it. The counters are the kernel's, tracer-wide (all
// scopes, every task and context): subtract two readings to get a window.
type Missed struct {
	// Program counts probe hits for which the program did not run
	// because a BPF program of the kprobe family was already running on
	// that CPU (the per-CPU bpf_prog_active count; fentry: the program's
	// own active count): the program's recursion_misses.
	Program uint64
	// Links are kprobe.multi's own guard (fprobe's per-task ftrace
	// recursion bits), per link over its functions (6.7+; empty on older
	// kernels and for the other backends).
	Links []LinkMissed
	// Retired holds the misses of links and programs pruning has closed.
	Retired uint64
}

// LinkMissed is one kprobe.multi link's fprobe miss count.
type LinkMissed struct {
	Functions []Function // the functions the link probes
	Missed    uint64
}

// Total is every miss counted: what Snapshot.Misses reports.
func (m Missed) Total() uint64 {
	s := m.Program + m.Retired
	for _, l := range m.Links {
		s += l.Missed
	}
	return s
}

// Missed reads the recursion-miss counters of the tracer's programs and
// kprobe.multi links now.
func (t *Tracer) Missed() (Missed, error) {
	var m Missed
	if t.objs == nil {
		return m, fmt.Errorf("missed: %w", ErrClosed)
	}
	switch t.backend {
	case KprobeMulti, Kprobe:
		kind := bpf.KprobeMulti
		if t.backend == Kprobe {
			kind = bpf.Kprobe
		}
		p, err := t.objs.Program(kind)
		if err != nil {
			return m, fmt.Errorf("missed: %w", err)
		}
		st, err := p.Stats()
		if err != nil {
			return m, fmt.Errorf("missed: program stats: %w", err)
		}
		m.Program = st.RecursionMisses
		if t.backend == KprobeMulti {
			t.stMu.Lock()
			ls := make([]*multiLink, len(t.multi))
			copy(ls, t.multi)
			m.Retired = t.retired // with the links: one retired later is still read below
			t.stMu.Unlock()
			for _, l := range ls {
				fs := make([]Function, len(l.idx))
				for j, i := range l.idx {
					fs[j] = t.cat.Functions[i]
				}
				m.Links = append(m.Links, LinkMissed{Functions: fs, Missed: linkMissed(l.l)})
			}
		} else {
			t.stMu.Lock()
			m.Retired = t.retired
			t.stMu.Unlock()
		}
	case Fentry:
		t.stMu.Lock()
		ids := make([]ebpf.ProgramID, 0, len(t.fprogs))
		for _, id := range t.fprogs {
			ids = append(ids, id)
		}
		m.Retired = t.retired // with the ids: one retired later is still read below
		t.stMu.Unlock()
		for _, id := range ids {
			n, err := progMisses(id)
			if err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT: pruned meanwhile
				return m, fmt.Errorf("missed: %w", err)
			}
			m.Program += n
		}
		if t.besides > 0 {
			// The kprobes beside fentry share one program.
			p, err := t.objs.Program(bpf.Kprobe)
			if err != nil {
				return m, fmt.Errorf("missed: %w", err)
			}
			st, err := p.Stats()
			if err != nil {
				return m, fmt.Errorf("missed: program stats: %w", err)
			}
			m.Program += st.RecursionMisses
		}
	}
	return m, nil
}
