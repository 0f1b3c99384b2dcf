package matrix

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hapscope/hapscope/hap"
)

// Overhead is what measuring one workload costs, three ways, one after
// another in the same boot: untraced, traced by hapscope, traced the 2018
// way (ftrace function_graph on the service's pid with function-fork, the
// trace text read and parsed afterwards).
type Overhead struct {
	Workload                    string
	Untraced, Hapscope, Ftrace  LoadResult
	HapscopeScore, FtraceScore  time.Duration // end of window → function set ready
	HapscopeFuncs, FtraceFuncs  int
	Shared                      int     // functions in both sets
	Jaccard                     float64 // |A∩B| / |A∪B|
	FtraceLines                 int     // trace lines parsed
	FtraceOverrun               bool    // the ring buffer lost events
	HapscopeBackend, FtraceNote string
}

// TracingDir is where tracefs is mounted in the lab guest.
const TracingDir = "/sys/kernel/tracing"

// MeasureOverhead runs w natively three times for warmup+window each:
// untraced, scored by newScorer's scorer (attached before, closed after,
// neither counted), and under ftrace function_graph. Interrupt context is
// left out on both traced sides (funcgraph-irqs off; hapscope's default).
func MeasureOverhead(ctx context.Context, e *Env, w Workload, warmup, window time.Duration, newScorer func(context.Context) (Scorer, func() error, error)) (*Overhead, error) {
	o := &Overhead{Workload: w.Name}
	plan := Plan{Workloads: []Workload{w}, Runtimes: []Runtime{Native()}, Warmup: warmup, Window: window}
	if err := os.MkdirAll(e.Cgroup, 0o755); err != nil {
		return nil, err
	}

	// 1. Untraced.
	e.logf("overhead: %s untraced …", w.Name)
	_, load, err := plan.runCell(ctx, e, nullScorer{warmup + window}, w, Native())
	if err != nil {
		return nil, fmt.Errorf("untraced: %w", err)
	}
	o.Untraced = load

	// 2. hapscope.
	e.logf("overhead: %s traced by hapscope …", w.Name)
	sc, closeSc, err := newScorer(ctx)
	if err != nil {
		return nil, err
	}
	ts := &timedScorer{s: sc, window: warmup + window}
	prof, load, err := plan.runCell(ctx, e, ts, w, Native())
	if cerr := closeSc(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("hapscope: %w", err)
	}
	o.Hapscope, o.HapscopeScore = load, ts.after
	o.HapscopeBackend = prof.Backend
	hs := map[string]bool{}
	for _, f := range prof.Functions {
		hs[baseName(f.Name)] = true
	}
	o.HapscopeFuncs = len(hs)

	// 3. ftrace function_graph, the 2018 way.
	e.logf("overhead: %s traced by ftrace function_graph …", w.Name)
	fs := &ftraceScorer{window: window, warmup: warmup}
	_, load, err = plan.runCell(ctx, e, fs, w, Native())
	if err != nil {
		return nil, fmt.Errorf("ftrace: %w", err)
	}
	o.Ftrace, o.FtraceScore, o.FtraceLines, o.FtraceOverrun = load, fs.after, fs.lines, fs.overrun
	o.FtraceFuncs = len(fs.funcs)
	union := len(hs)
	for f := range fs.funcs {
		if hs[f] {
			o.Shared++
		} else {
			union++
		}
	}
	if union > 0 {
		o.Jaccard = float64(o.Shared) / float64(union)
	}
	return o, nil
}

// nullScorer waits d and scores nothing (the untraced baseline).
type nullScorer struct{ d time.Duration }

func (n nullScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	select {
	case <-time.After(n.d):
		return &hap.Profile{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// timedScorer records how long scoring took after the window ended.
type timedScorer struct {
	s      Scorer
	window time.Duration
	after  time.Duration
}

func (t *timedScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	start := time.Now()
	p, err := t.s.Score(ctx, cgroup)
	t.after = time.Since(start) - t.window
	return p, err
}

// ftraceScorer traces the scope's processes with function_graph:
// set_ftrace_pid on every pid in the cgroup subtree, function-fork for
// their children, tracing on after the warm-up, off after the window;
// then the trace text is read and parsed.
type ftraceScorer struct {
	warmup, window time.Duration
	after          time.Duration
	funcs          map[string]bool
	lines          int
	overrun        bool
}

func (f *ftraceScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	t := func(name, val string) error {
		if err := os.WriteFile(filepath.Join(TracingDir, name), []byte(val), 0o644); err != nil {
			return fmt.Errorf("ftrace: write %q to %s: %w (needs tracefs at %s and CONFIG_FUNCTION_GRAPH_TRACER)", val, name, err, TracingDir)
		}
		return nil
	}
	pids, err := cgroupPids(cgroup)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("ftrace: no process in %s", cgroup)
	}
	defer func() {
		t("tracing_on", "0")
		t("current_tracer", "nop")
		t("set_ftrace_pid", "")
		t("trace", "")
	}()
	for _, step := range [][2]string{
		{"tracing_on", "0"}, {"current_tracer", "nop"}, {"trace", ""}, {"buffer_size_kb", "65536"},
		{"set_ftrace_pid", strings.Join(pids, " ")}, {"options/function-fork", "1"},
		{"options/funcgraph-proc", "1"}, {"options/funcgraph-irqs", "0"}, {"current_tracer", "function_graph"},
	} {
		if err := t(step[0], step[1]); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(f.warmup):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := t("tracing_on", "1"); err != nil {
		return nil, err
	}
	select {
	case <-time.After(f.window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := t("tracing_on", "0"); err != nil {
		return nil, err
	}
	end := time.Now()
	file, err := os.Open(filepath.Join(TracingDir, "trace"))
	if err != nil {
		return nil, err
	}
	defer file.Close()
	f.funcs, f.lines, err = parseFunctionGraph(file)
	if err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(filepath.Join(TracingDir, "per_cpu/cpu0/stats")); err == nil {
		f.overrun = !strings.Contains(string(data), "overrun: 0\n")
	}
	f.after = time.Since(end)
	return &hap.Profile{}, nil
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

// A function_graph line: "[cpu)] [proc-pid] [duration |] indent name() {"
// or "... name();". Comment lines start with '#'; context-switch and
// interrupt markers (=>, ------) carry no "()".
var graphCall = regexp.MustCompile(`\|\s*([A-Za-z_][A-Za-z0-9_.]*)\(\)\s*(?:\{|;)\s*$`)

// parseFunctionGraph returns the distinct function names (clone suffixes
// such as .isra.0 stripped) in a function_graph trace and the number of
// lines read.
func parseFunctionGraph(r io.Reader) (map[string]bool, int, error) {
	funcs := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if m := graphCall.FindStringSubmatch(line); m != nil {
			funcs[baseName(m[1])] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, n, fmt.Errorf("read the trace: %w", err)
	}
	return funcs, n, nil
}

// baseName strips compiler clone suffixes (.isra.0, .constprop.0, .part.0,
// .cold) so both tracers name functions alike.
func baseName(s string) string {
	if i := strings.IndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}

// WriteOverhead prints the comparison.
func WriteOverhead(w io.Writer, results []*Overhead) error {
	var b strings.Builder
	fmt.Fprintln(&b, "workload\tmethod\treq/s\tratio to untraced\tend of window → set ready\tfunctions\tnote")
	for _, o := range results {
		ratio := func(r LoadResult) string {
			if o.Untraced.RPS() == 0 {
				return "-"
			}
			return fmt.Sprintf("%.3f", r.RPS()/o.Untraced.RPS())
		}
		fmt.Fprintf(&b, "%s\tuntraced\t%.0f\t1\t-\t-\t\n", o.Workload, o.Untraced.RPS())
		fmt.Fprintf(&b, "%s\thapscope (%s)\t%.0f\t%s\t%s\t%d\t\n", o.Workload, o.HapscopeBackend, o.Hapscope.RPS(), ratio(o.Hapscope), o.HapscopeScore.Round(time.Millisecond), o.HapscopeFuncs)
		note := fmt.Sprintf("%d trace lines", o.FtraceLines)
		if o.FtraceOverrun {
			note += "; ring buffer overran (events lost)"
		}
		fmt.Fprintf(&b, "%s\tftrace function_graph\t%.0f\t%s\t%s\t%d\t%s\n", o.Workload, o.Ftrace.RPS(), ratio(o.Ftrace), o.FtraceScore.Round(time.Millisecond), o.FtraceFuncs, note)
		fmt.Fprintf(&b, "%s\tJaccard(hapscope, ftrace)\t\t\t\t%d shared\t%.3f\n", o.Workload, o.Shared, o.Jaccard)
	}
	return writeTabbed(w, b.String())
}
