package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/ftrace"
)

// Overhead is what measuring one workload costs, in the same boot: rounds
// of untraced then each hapscope mode, one after another (so every ratio
// compares runs minutes apart at most), then once the 2018 way (ftrace
// function_graph on the service's threads with function-fork, the trace
// text read and parsed after the window).
type Overhead struct {
	Workload string
	Untraced []LoadResult // one per round
	Methods  []Method     // hapscope's modes, then ftrace
}

// Method is one traced method of an Overhead measurement.
type Method struct {
	Name       string
	Loads      []LoadResult    // one per round (ftrace: one, after the rounds)
	ScoreAfter []time.Duration // end of window → function set ready, per round
	// Functions is how many distinct functions (clone suffixes stripped)
	// the last round entered; the comparison with ftrace uses that round.
	Functions int
	// Outside is how many of Functions lie outside the catalogue hapscope
	// traces (ftrace only); Shared and Jaccard compare the rest with the
	// ftrace set (hapscope only).
	Outside, Shared int
	Jaccard         float64
	// OnlyHere and OnlyFtrace name the catalogue functions one side
	// entered and the other did not (hapscope only).
	OnlyHere, OnlyFtrace []string `json:",omitempty"`
	TraceLines           int      // ftrace: trace lines parsed
	IRQCalls             int      // ftrace: call lines in interrupt context, left out
	Entries              int64    // ftrace: events in the ring buffer
	Overrun              int64    // ftrace: events lost when the ring buffer filled
	funcs                map[string]bool
}

// Ratios are the method's throughput over the untraced throughput of the
// same round; ftrace's, measured once after the rounds, is over the
// median untraced round.
func (o *Overhead) Ratios(m Method) []float64 {
	untraced := rpsOf(o.Untraced)
	if len(m.Loads) != len(untraced) {
		untraced = slices.Repeat([]float64{median(untraced)}, len(m.Loads))
	}
	var r []float64
	for i, l := range m.Loads {
		if untraced[i] > 0 {
			r = append(r, l.RPS()/untraced[i])
		}
	}
	return r
}

func rpsOf(ls []LoadResult) []float64 {
	r := make([]float64, len(ls))
	for i, l := range ls {
		r[i] = l.RPS()
	}
	return r
}

// median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// Tracing is one hapscope mode to compare: New attaches a scorer (its
// attach time is not counted; the load starts after it) and returns its
// close function.
type Tracing struct {
	Name string
	New  func(context.Context) (Scorer, func() error, error)
}

// TracingDir is where tracefs is mounted in the lab guest.
const TracingDir = ftrace.DefaultDir

// MeasureOverhead runs w natively for warmup+window in rounds (at least
// one) of untraced then once per tracing, then once under ftrace
// function_graph, and compares the last round's hapscope function sets
// with ftrace's over the functions inCatalogue accepts (the ones hapscope
// can see). Interrupt context is left out on both sides (funcgraph-irqs
// off; hapscope's default). traceKB is function_graph's ring buffer per CPU.
func MeasureOverhead(ctx context.Context, e *Env, w Workload, warmup, window time.Duration, rounds int, tracings []Tracing, inCatalogue func(string) bool, traceKB int) (*Overhead, error) {
	o := &Overhead{Workload: w.Name, Methods: make([]Method, len(tracings))}
	plan := Plan{Workloads: []Workload{w}, Runtimes: []Runtime{Native()}}
	if err := os.MkdirAll(e.Cgroup, 0o755); err != nil {
		return nil, err
	}
	for r := 1; r <= max(rounds, 1); r++ {
		e.logf("overhead: %s round %d/%d untraced …", w.Name, r, rounds)
		_, _, load, err := plan.runCell(ctx, e, nullScorer{warmup + window}, w, Native())
		if err != nil {
			return nil, fmt.Errorf("untraced (round %d): %w", r, err)
		}
		o.Untraced = append(o.Untraced, load)

		for i, tr := range tracings {
			e.logf("overhead: %s round %d/%d traced by %s …", w.Name, r, rounds, tr.Name)
			sc, closeSc, err := tr.New(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s (round %d): %w", tr.Name, r, err)
			}
			ts := &timedScorer{s: sc}
			prof, _, load, err := plan.runCell(ctx, e, ts, w, Native())
			if cerr := closeSc(); err == nil && cerr != nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("%s (round %d): %w", tr.Name, r, err)
			}
			m := &o.Methods[i]
			m.Name = tr.Name
			m.Loads = append(m.Loads, load)
			m.ScoreAfter = append(m.ScoreAfter, ts.after)
			m.funcs = map[string]bool{}
			for _, f := range prof.Functions {
				m.funcs[ftrace.BaseName(f.Name)] = true
			}
			m.Functions = len(m.funcs)
		}
	}

	e.logf("overhead: %s traced by ftrace function_graph …", w.Name)
	fs := &ftraceScorer{window: window, warmup: warmup, bufferKB: traceKB}
	_, _, load, err := plan.runCell(ctx, e, fs, w, Native())
	if fs.session != nil {
		fs.session.Close() // the one place ftrace is put back, whatever step failed
	}
	if err != nil {
		return nil, fmt.Errorf("ftrace: %w", err)
	}
	ft := Method{Name: "ftrace function_graph", Loads: []LoadResult{load}, ScoreAfter: []time.Duration{fs.after}, Functions: len(fs.graph.Funcs),
		TraceLines: fs.graph.Lines, IRQCalls: fs.graph.IRQCalls, Entries: fs.stats.Entries, Overrun: fs.stats.Overrun}
	ft.Outside = ftrace.CompareNames(fs.graph.Funcs, nil, inCatalogue).Outside
	for i := range o.Methods {
		m := &o.Methods[i]
		c := ftrace.CompareNames(fs.graph.Funcs, m.funcs, inCatalogue)
		m.Shared, m.Jaccard, m.OnlyHere, m.OnlyFtrace = c.Shared, c.Jaccard, c.OnlyOther, c.OnlyFtrace
	}
	o.Methods = append(o.Methods, ft)
	return o, nil
}

// nullScorer waits d and scores nothing (the untraced baseline).
type nullScorer struct{ d time.Duration }

func (n nullScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if err := sleep(ctx, n.d); err != nil {
		return nil, err
	}
	return &hap.Profile{}, nil
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timedScorer records how long scoring took after the window ended: from
// the scorer's hap.ScoreTrace WindowEnd (where the load stops) to its return.
type timedScorer struct {
	s     Scorer
	after time.Duration
}

func (t *timedScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	var end time.Time
	tr := hap.ScoreTrace{WindowEnd: func() { end = time.Now() }}
	if up := hap.ContextScoreTrace(ctx); up != nil && up.WindowEnd != nil {
		tr.WindowEnd = func() { end = time.Now(); up.WindowEnd() }
	}
	p, err := t.s.Score(hap.WithScoreTrace(ctx, &tr), cgroup)
	if err == nil && end.IsZero() {
		return nil, errors.New("overhead: the scorer never said where its window ended")
	}
	t.after = time.Since(end)
	return p, err
}

// ftraceScorer traces the scope's threads with function_graph the 2018
// way, through internal/ftrace. Prepare (before the load starts, as
// hapscope attaches before it) sets up function_graph on every thread in
// the cgroup subtree, following their children (function-fork), with
// tracing off; Score waits out the warm-up, records the window, then
// reads the trace text and parses it. MeasureOverhead closes the session
// (ftrace back as booted) once the cell is over, whether it failed or not.
type ftraceScorer struct {
	warmup, window time.Duration
	bufferKB       int
	session        *ftrace.Session
	after          time.Duration
	graph          ftrace.GraphTrace
	stats          ftrace.Stats
}

func (f *ftraceScorer) Prepare(ctx context.Context, cgroup string) error {
	pids, err := ftrace.CgroupThreads(cgroup)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("ftrace: no process in %s", cgroup)
	}
	f.session, err = ftrace.Setup(ftrace.Options{Tracer: ftrace.FunctionGraph, PIDs: pids, Fork: true, BufferKB: f.bufferKB})
	return err
}

func (f *ftraceScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if f.session == nil {
		return nil, errors.New("ftrace: Score before Prepare")
	}
	if err := sleep(ctx, f.warmup); err != nil {
		return nil, err
	}
	if err := f.session.Start(); err != nil {
		return nil, err
	}
	if err := sleep(ctx, f.window); err != nil {
		return nil, err
	}
	if err := f.session.Stop(); err != nil {
		return nil, err
	}
	end := time.Now()
	if tr := hap.ContextScoreTrace(ctx); tr != nil && tr.WindowEnd != nil {
		tr.WindowEnd() // the load stops here, not while the trace is parsed
	}
	var err error
	if f.stats, err = f.session.Stats(); err != nil {
		return nil, err
	}
	file, err := f.session.Trace()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if f.graph, err = ftrace.ParseGraph(file); err != nil {
		return nil, err
	}
	if !f.graph.Context {
		return nil, errors.New("ftrace: the trace has no context column (options/latency-format), so interrupt context cannot be left out as hapscope leaves it out")
	}
	f.after = time.Since(end)
	return &hap.Profile{}, nil
}

// WriteOverhead prints the comparison: per method the median over the
// rounds, and the range where there are several.
func WriteOverhead(w io.Writer, results []*Overhead) error {
	var b strings.Builder
	fmt.Fprintln(&b, "workload\tmethod\treq/s\tratio to untraced\tend of window → set ready\tfunctions\tvs ftrace (catalogue functions)\tnote")
	for _, o := range results {
		fmt.Fprintf(&b, "%s\tuntraced\t%s\t1\t-\t-\t\t%s\n", o.Workload, spread(rpsOf(o.Untraced), "%.0f"), rounds(len(o.Untraced)))
		for _, m := range o.Methods {
			ratio := "-"
			if r := o.Ratios(m); len(r) > 0 {
				ratio = spread(r, "%.3f")
			}
			after := make([]float64, len(m.ScoreAfter))
			for i, d := range m.ScoreAfter {
				after[i] = d.Seconds()
			}
			vs, note := "", ""
			if m.TraceLines > 0 || m.Entries > 0 {
				note = fmt.Sprintf("%d trace lines, %d events, %d calls in soft IRQ context left out, %d functions outside the catalogue", m.TraceLines, m.Entries, m.IRQCalls, m.Outside)
				if len(o.Untraced) > 1 {
					note = "once, after the rounds; ratio to the median untraced; " + note
				}
				if m.Overrun > 0 {
					note += fmt.Sprintf("; ring buffer overran: %d events lost, the set is incomplete", m.Overrun)
				}
			} else {
				vs = fmt.Sprintf("%d shared, Jaccard %.3f", m.Shared, m.Jaccard)
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%s s\t%d\t%s\t%s\n", o.Workload, m.Name, spread(rpsOf(m.Loads), "%.0f"), ratio, spread(after, "%.2f"), m.Functions, vs, note)
		}
	}
	return writeTabbed(w, b.String())
}

// spread formats the median of xs, and their range when there are several.
func spread(xs []float64, f string) string {
	if len(xs) == 0 {
		return "-"
	}
	s := fmt.Sprintf(f, median(xs))
	if len(xs) > 1 {
		s += fmt.Sprintf(" ("+f+"–"+f+")", slices.Min(xs), slices.Max(xs))
	}
	return s
}

func rounds(n int) string {
	if n > 1 {
		return fmt.Sprintf("%d rounds: medians (ranges)", n)
	}
	return ""
}
