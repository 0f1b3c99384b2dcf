package matrix

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/nameset"
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
const TracingDir = "/sys/kernel/tracing"

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
		_, load, err := plan.runCell(ctx, e, nullScorer{warmup + window}, w, Native())
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
			prof, load, err := plan.runCell(ctx, e, ts, w, Native())
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
				m.funcs[baseName(f.Name)] = true
			}
			m.Functions = len(m.funcs)
		}
	}

	e.logf("overhead: %s traced by ftrace function_graph …", w.Name)
	fs := &ftraceScorer{window: window, warmup: warmup, bufferKB: traceKB}
	_, load, err := plan.runCell(ctx, e, fs, w, Native())
	ftraceReset() // the one place ftrace is put back, whatever step failed
	if err != nil {
		return nil, fmt.Errorf("ftrace: %w", err)
	}
	ft := Method{Name: "ftrace function_graph", Loads: []LoadResult{load}, ScoreAfter: []time.Duration{fs.after}, Functions: len(fs.funcs),
		TraceLines: fs.lines, IRQCalls: fs.irqCalls, Entries: fs.entries, Overrun: fs.overrun}
	in := map[string]bool{}
	for f := range fs.funcs {
		if inCatalogue(f) {
			in[f] = true
		} else {
			ft.Outside++
		}
	}
	for i := range o.Methods {
		m := &o.Methods[i]
		m.Shared, m.Jaccard = jaccard(m.funcs, in)
		m.OnlyHere, m.OnlyFtrace = nameset.Minus(m.funcs, in), nameset.Minus(in, m.funcs)
	}
	o.Methods = append(o.Methods, ft)
	return o, nil
}

// jaccard returns |a∩b| and |a∩b| / |a∪b|.
func jaccard(a, b map[string]bool) (int, float64) {
	shared := 0
	for f := range a {
		if b[f] {
			shared++
		}
	}
	union := len(a) + len(b) - shared
	if union == 0 {
		return 0, 0
	}
	return shared, float64(shared) / float64(union)
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
// way. Prepare (before the load starts, as hapscope attaches before it)
// writes every thread id in the cgroup subtree to set_ftrace_pid, turns on
// function-fork for their children and installs the tracer with
// tracing_on 0; Score waits out the warm-up, records the window, then
// reads the trace text and parses it. MeasureOverhead puts ftrace back
// (ftraceReset) once the cell is over, whether it failed or not.
type ftraceScorer struct {
	warmup, window time.Duration
	bufferKB       int
	prepared       bool
	after          time.Duration
	funcs          map[string]bool
	lines          int
	irqCalls       int
	entries        int64
	overrun        int64
}

func ftraceWrite(name, val string) error {
	if err := os.WriteFile(filepath.Join(TracingDir, name), []byte(val), 0o644); err != nil {
		return fmt.Errorf("ftrace: write %q to %s: %w (needs tracefs at %s and CONFIG_FUNCTION_GRAPH_TRACER)", val, name, err, TracingDir)
	}
	return nil
}

// ftraceReset leaves ftrace as the kernel booted it.
func ftraceReset() {
	for _, step := range [][2]string{{"tracing_on", "0"}, {"current_tracer", "nop"}, {"set_ftrace_pid", ""}, {"options/function-fork", "0"}, {"options/latency-format", "0"}, {"trace", ""}, {"buffer_size_kb", "1408"}} {
		ftraceWrite(step[0], step[1])
	}
}

func (f *ftraceScorer) Prepare(ctx context.Context, cgroup string) error {
	pids, err := cgroupPids(cgroup)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("ftrace: no process in %s", cgroup)
	}
	kb := f.bufferKB
	if kb <= 0 {
		kb = 65536
	}
	for _, step := range [][2]string{
		{"tracing_on", "0"}, {"current_tracer", "nop"}, {"trace", ""}, {"buffer_size_kb", strconv.Itoa(kb)},
		{"set_ftrace_pid", strings.Join(pids, " ")}, {"options/function-fork", "1"},
		{"options/funcgraph-proc", "1"}, {"options/funcgraph-irqs", "0"}, {"options/latency-format", "1"},
		{"current_tracer", "function_graph"},
	} {
		if err := ftraceWrite(step[0], step[1]); err != nil {
			return err
		}
	}
	f.prepared = true
	return nil
}

func (f *ftraceScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if !f.prepared {
		return nil, errors.New("ftrace: Score before Prepare")
	}
	if err := sleep(ctx, f.warmup); err != nil {
		return nil, err
	}
	if err := ftraceWrite("tracing_on", "1"); err != nil {
		return nil, err
	}
	if err := sleep(ctx, f.window); err != nil {
		return nil, err
	}
	if err := ftraceWrite("tracing_on", "0"); err != nil {
		return nil, err
	}
	end := time.Now()
	if tr := hap.ContextScoreTrace(ctx); tr != nil && tr.WindowEnd != nil {
		tr.WindowEnd() // the load stops here, not while the trace is parsed
	}
	var err error
	if f.entries, f.overrun, err = ftraceStats(); err != nil {
		return nil, err
	}
	file, err := os.Open(filepath.Join(TracingDir, "trace"))
	if err != nil {
		return nil, err
	}
	defer file.Close()
	g, err := parseFunctionGraph(file)
	if err != nil {
		return nil, err
	}
	if !g.context {
		return nil, errors.New("ftrace: the trace has no context column (options/latency-format), so interrupt context cannot be left out as hapscope leaves it out")
	}
	f.funcs, f.lines, f.irqCalls = g.funcs, g.lines, g.irqCalls
	f.after = time.Since(end)
	return &hap.Profile{}, nil
}

// ftraceStats sums the "entries" and "overrun" counters of every CPU's
// ring buffer.
func ftraceStats() (entries, overrun int64, err error) {
	files, err := filepath.Glob(filepath.Join(TracingDir, "per_cpu/cpu*/stats"))
	if err != nil || len(files) == 0 {
		return 0, 0, fmt.Errorf("ftrace: no per-CPU ring buffer statistics under %s: %v", TracingDir, err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return 0, 0, err
		}
		e, o := parseRingStats(string(data))
		entries += e
		overrun += o
	}
	return entries, overrun, nil
}

// parseRingStats reads the entries and overrun counters of one
// per_cpu/cpuN/stats file.
func parseRingStats(s string) (entries, overrun int64) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "entries":
			entries = n
		case "overrun":
			overrun = n
		}
	}
	return entries, overrun
}

// cgroupPids lists the thread ids in dir and its descendants:
// set_ftrace_pid matches threads, and cgroup.procs would name only the
// thread-group leaders (node's and redis' other threads would go
// untraced).
func cgroupPids(dir string) ([]string, error) {
	var pids []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.threads"))
		if err != nil {
			return err
		}
		pids = append(pids, strings.Fields(string(data))...)
		return nil
	})
	return pids, err
}

// graphTrace is what parseFunctionGraph found in a function_graph trace.
type graphTrace struct {
	funcs map[string]bool // entered in task context, clone suffixes stripped
	lines int
	// irqCalls counts call lines left out because their context column
	// (options/latency-format) says hard IRQ, soft IRQ being served or NMI;
	// context is false when no line had that column, so nothing could be
	// left out.
	irqCalls int
	context  bool
}

// parseFunctionGraph reads a function_graph trace. A call line is
// "[cpu)] [proc-pid] | [lat] | [duration] | indent name() {" or "…
// name();", where lat (with options/latency-format) is irqs-off,
// need-resched, hardirq/softirq, preempt-depth… ("d.s1."). Comment lines
// start with '#'; context-switch and interrupt markers (=>, ------) carry
// no "()".
func parseFunctionGraph(r io.Reader) (graphTrace, error) {
	g := graphTrace{funcs: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		g.lines++
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		name := graphCallName(line)
		if name == "" {
			continue
		}
		if ctx, ok := graphContext(line); ok {
			g.context = true
			if ctx != '.' {
				g.irqCalls++
				continue
			}
		}
		g.funcs[baseName(name)] = true
	}
	if err := sc.Err(); err != nil {
		return g, fmt.Errorf("read the trace: %w", err)
	}
	return g, nil
}

// graphContext returns the hardirq/softirq character of a line's latency
// column ('.' for task context; h, H, s, z, Z otherwise), if it has one.
func graphContext(line []byte) (byte, bool) {
	for f := range bytes.SplitSeq(line, []byte("|")) {
		f = bytes.TrimSpace(f)
		if len(f) < 4 || len(f) > 6 {
			continue
		}
		ok := true
		for _, c := range f {
			if !(c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				ok = false
				break
			}
		}
		if ok && bytes.IndexByte([]byte(".hHszZ"), f[2]) >= 0 && bytes.IndexByte(f, '.') >= 0 {
			return f[2], true
		}
	}
	return 0, false
}

// graphCallName returns the function a function_graph call line enters,
// or "". (A regular expression made parsing millions of lines in the
// emulated guest take minutes.)
func graphCallName(line []byte) string {
	s := bytes.TrimRight(line, " \t")
	if len(s) == 0 || (s[len(s)-1] != '{' && s[len(s)-1] != ';') {
		return ""
	}
	s = bytes.TrimRight(s[:len(s)-1], " \t")
	if !bytes.HasSuffix(s, []byte("()")) {
		return ""
	}
	s = s[:len(s)-2]
	i := len(s)
	for i > 0 && isIdent(s[i-1]) {
		i--
	}
	name := s[i:]
	if len(name) == 0 || name[0] == '.' || (name[0] >= '0' && name[0] <= '9') {
		return ""
	}
	if rest := bytes.TrimRight(s[:i], " \t"); len(rest) == 0 || rest[len(rest)-1] != '|' {
		return ""
	}
	return string(name)
}

func isIdent(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// baseName strips compiler clone suffixes (.isra.0, .constprop.0, .part.0,
// .cold) so both tracers name functions alike.
func baseName(s string) string {
	if i := strings.IndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
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
