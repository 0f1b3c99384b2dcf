package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/matrix"
)

func init() {
	register("matrix", "reproduce the 2018 HAP study: workloads × runtimes, N runs each, in functions and lines", cmdMatrix)
}

func cmdMatrix(args []string) int {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	var sf scoreFlags
	sf.register(fs)
	out := fs.String("out", "out/matrix", "directory for the per-run profiles (JSON), matrix.json and report.html")
	root := fs.String("root", "", "directory holding the userland the workloads run from (the lab passes /host)")
	runs := fs.Int("runs", 5, "measurements per cell (with --overhead: rounds of untraced, counts, pruned; default 3)")
	runsc := fs.String("runsc", defaultLabCache("runsc/runsc"), "gVisor runsc binary (inside --root); `make runsc` builds it")
	express := fs.String("express", defaultLabCache("express/node_modules/express"), "express package directory (inside --root); `make matrix` installs it with npm")
	workloads := fs.String("workloads", "redis-set,redis-get,python-tornado,node-express,idle", "comma-separated workloads (idle: the runtime's baseline, a sleeping service under no load)")
	overhead := fs.Bool("overhead", false, "instead of the matrix: what measuring costs for redis-set and node-express natively — untraced, hapscope counts, hapscope pruned, ftrace function_graph (the 2018 way) — and the Jaccard of hapscope's and ftrace's function sets")
	prune := fs.Bool("prune", false, "let the tracer remove a function's probe once the scope has entered it (faster; patches kernel text while workloads run, which has crashed the 6.12 lab guest under multi-threaded QEMU)")
	merge := fs.String("merge", "", "instead of running: merge the studies in these comma-separated directories (make matrix's lanes, each a guest measuring its share of the workloads) into one table in --out")
	runtimes := fs.String("runtimes", "", "comma-separated runtimes (default: all rows of the 2018 study and this machine: "+strings.Join(runtimeNames(), ",")+")")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope matrix [--runs N] [--out DIR] [--workloads W,…] [--runtimes R,…] [flags]")
		fmt.Fprintln(fs.Output(), "Needs root and Debian's redis-server, redis-tools, wrk, python3-tornado, runc, bubblewrap; node with express; runsc for the gVisor rows.")
		fmt.Fprintln(fs.Output(), "`make matrix` runs it in the lab (Debian 6.12 under QEMU) where this kernel cannot be traced.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if *merge != "" {
		return mergeMatrix(splitList(*merge), *out)
	}
	if *runs < 1 {
		return usageError(fmt.Errorf("-runs %d: must be at least 1", *runs))
	}
	demoDefaults(fs, &sf)
	if isFlagSet(fs, "counts") && *prune {
		return usageError(errors.New("--counts and --prune contradict each other (the matrix counts unless --prune)"))
	}
	sf.Counts = !*prune
	if err := sf.Validate(); err != nil {
		return usageError(err)
	}
	plan := matrix.Plan{Runs: *runs}
	for _, name := range splitList(*workloads) {
		switch name {
		case "redis-set":
			plan.Workloads = append(plan.Workloads, matrix.Redis("set"))
		case "redis-get":
			plan.Workloads = append(plan.Workloads, matrix.Redis("get"))
		case "python-tornado":
			plan.Workloads = append(plan.Workloads, matrix.Tornado())
		case "node-express":
			plan.Workloads = append(plan.Workloads, matrix.Express(*express))
		case "idle":
			plan.Workloads = append(plan.Workloads, matrix.Idle())
		default:
			return usageError(fmt.Errorf("unknown workload %q (have redis-set, redis-get, python-tornado, node-express, idle)", name))
		}
	}
	all := matrix.Study2018(*runsc)
	if *runtimes == "" {
		plan.Runtimes = all
	}
	for _, name := range splitList(*runtimes) {
		found := false
		for _, rt := range all {
			if rt.Name == name {
				plan.Runtimes, found = append(plan.Runtimes, rt), true
			}
		}
		if !found {
			return usageError(fmt.Errorf("unknown runtime %q (have %s)", name, strings.Join(runtimeNames(), ", ")))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(err)
	}
	env, cleanup, err := planEnv("hapscope-matrix", *root)
	if err != nil {
		return fail(err)
	}
	defer cleanup()

	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	if *overhead {
		rounds := *runs
		if !isFlagSet(fs, "runs") {
			rounds = 3
		}
		return runOverhead(ctx, env, o, sf.Warmup, sf.Window, rounds, *express, *out)
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "matrix: %d workloads × %d runtimes × %d runs\n", len(plan.Workloads), len(plan.Runtimes), plan.Runs)
	cells, err := runPlan(ctx, "matrix", env, o, plan)
	if err != nil {
		// Interrupted (SIGINT, SIGTERM): hours of finished runs are not
		// thrown away; the table holds them and says it is partial.
		if ctx.Err() == nil || len(cells) == 0 {
			return fail(err)
		}
		total := len(plan.Workloads) * len(plan.Runtimes) * plan.Runs
		fmt.Fprintf(os.Stderr, "matrix: interrupted after %d of %d runs (%v); writing the table of those\n", len(cells), total, err)
		writeMatrix(cells, *out, time.Since(start), fmt.Sprintf("interrupted after %d of %d runs", len(cells), total))
		return 1
	}
	return writeMatrix(cells, *out, time.Since(start), "")
}

// mergeMatrix writes the table of the studies in dirs, as one, into out.
func mergeMatrix(dirs []string, out string) int {
	var rs []matrix.Runs
	for _, d := range dirs {
		r, err := matrix.ReadRuns(d)
		if err != nil {
			return fail(fmt.Errorf("merge %s: %w", d, err))
		}
		fmt.Fprintf(os.Stderr, "matrix: %s: %d runs, took %s\n", d, len(r.Cells), r.Took.Round(time.Second))
		rs = append(rs, r)
	}
	m, err := matrix.MergeRuns(rs...)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fail(err)
	}
	return writeMatrix(m.Cells, out, m.Took, m.Partial)
}

// writeMatrix writes every run's profile, matrix.json (the summary rows)
// and report.html, prints the table, and returns 1 when a cell failed.
// partial, when not "", says why the table lacks runs (matrix.json's
// "partial").
func writeMatrix(cells []matrix.Cell, out string, took time.Duration, partial string) int {
	failed := 0
	for _, c := range cells {
		if c.Err != nil {
			failed++
		}
		if c.Profile == nil {
			continue
		}
		if err := writeProfile(filepath.Join(out, matrix.ProfileName(c, "")), c.Profile); err != nil {
			fmt.Fprintln(os.Stderr, "hapscope:", err)
		}
		for part, p := range c.Parts {
			if err := writeProfile(filepath.Join(out, matrix.ProfileName(c, part)), p); err != nil {
				fmt.Fprintln(os.Stderr, "hapscope:", err)
			}
		}
	}
	if err := matrix.WriteRuns(out, matrix.Runs{Cells: cells, Took: took, Partial: partial}); err != nil {
		return fail(err)
	}
	rows := matrix.Summarize(cells)
	if err := matrix.WriteTable(os.Stdout, rows); err != nil {
		return fail(err)
	}
	if err := writeJSONFile(filepath.Join(out, "matrix.json"), summaryJSON(rows, took, partial)); err != nil {
		return fail(err)
	}
	report := filepath.Join(out, "report.html")
	f, err := os.Create(report)
	if err != nil {
		return fail(err)
	}
	err = matrix.WriteReport(f, "hapscope matrix: the 2018 HAP study on "+kernelOf(rows), rows)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	fmt.Printf("\nprofiles (JSON), matrix.json and report: %s (took %s)\n", report, took.Round(time.Second))
	if partial != "" {
		fmt.Printf("partial table: %s; its rows hold fewer runs than planned\n", partial)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "hapscope: %d runs failed; their workloads are not scored (see the status column)\n", failed)
		return 1
	}
	return 0
}

func writeProfile(name string, p *hap.Profile) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	err = p.WriteJSON(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeJSONFile(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(data, '\n'), 0o644)
}

// summaryJSON is matrix.json: the rows without their profiles.
func summaryJSON(rows []matrix.Row, took time.Duration, partial string) any {
	type stat struct {
		N    int     `json:"n"`
		Mean float64 `json:"mean"`
		SD   float64 `json:"sd"`
	}
	type row struct {
		Workload  string `json:"workload"`
		Runtime   string `json:"runtime"`
		Variant   string `json:"variant,omitempty"`
		OK        int    `json:"runs_ok"`
		Unsettled int    `json:"runs_unsettled,omitempty"`
		// Lines over the native row's mean; absent without one.
		OverNative *float64        `json:"lines_over_native,omitempty"`
		Failed     int             `json:"runs_failed"`
		Skipped    string          `json:"skipped,omitempty"`
		Errors     []string        `json:"errors,omitempty"`
		Stats      map[string]stat `json:"stats,omitempty"`
		Study2018  float64         `json:"study2018_functions,omitempty"`
	}
	var out []row
	for _, r := range rows {
		x := row{Workload: r.Workload, Runtime: r.Runtime, Variant: r.Variant, OK: r.OK, Unsettled: r.Unsettled,
			Failed: r.Failed, Skipped: r.Skipped, Errors: r.Errors, Study2018: r.Study2018}
		if !math.IsNaN(r.OverNative) && r.Runtime != "native" {
			v := r.OverNative
			x.OverNative = &v
		}
		if r.OK > 0 {
			x.Stats = map[string]stat{}
			for k, s := range map[string]matrix.Stat{"functions": r.Functions, "lines": r.Lines, "lines_own": r.Own,
				"lines_inlined": r.Inlined, "estimated_bugs": r.Bugs, "requests_per_second": r.RPS,
				"container_functions": r.ContainerFunctions, "container_lines": r.ContainerLines, "runtime_process_lines": r.RuntimeLines,
				"sentry_lines": r.SentryLines, "stub_lines": r.StubLines, "gofer_lines": r.GoferLines,
				"dockerd_lines": r.DockerdLines, "containerd_lines": r.ContainerdLines, "shim_lines": r.ShimLines, "proxy_lines": r.ProxyLines} {
				if s.N > 0 {
					x.Stats[k] = stat{s.N, s.Mean, s.SD}
				}
			}
		}
		out = append(out, x)
	}
	j := map[string]any{"schema": 1, "took_seconds": took.Seconds(), "rows": out}
	if partial != "" {
		j["partial"] = partial
	}
	return j
}

func kernelOf(rows []matrix.Row) string {
	for _, r := range rows {
		if r.Median != nil && r.Median.Release != "" {
			return r.Median.Release
		}
	}
	return "this kernel"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func runtimeNames() []string {
	var names []string
	for _, rt := range matrix.Study2018("") {
		names = append(names, rt.Name)
	}
	return names
}

// defaultLabCache is rel under the lab cache ($XDG_CACHE_HOME/hapscope-lab
// or ~/.cache/hapscope-lab), "" when there is no home.
func defaultLabCache(rel string) string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "/" {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "hapscope-lab", rel)
}

// ftraceBufferKB is function_graph's ring buffer per CPU in the overhead
// run: a 5 s window of redis under function_graph writes about 100 MB.
const ftraceBufferKB = 256 << 10

// runOverhead measures redis SET and express, in rounds, untraced and under
// hapscope in counts and in pruning mode (the backend o picks; the kernel's
// best for the whole catalogue), then under ftrace function_graph (see
// matrix.MeasureOverhead), and writes overhead.json.
func runOverhead(ctx context.Context, env *matrix.Env, o hap.ScoreOptions, warmup, window time.Duration, rounds int, express, out string) int {
	cat := o.Catalogue // --functions
	if cat == nil {
		var err error
		if cat, err = coverage.LoadCatalogue(); err != nil {
			return fail(err)
		}
	}
	o.Catalogue = cat
	names := make(map[string]bool, len(cat.Functions))
	for _, f := range cat.Functions {
		names[f.Name] = true
	}
	var tracings []matrix.Tracing
	for _, counts := range []bool{true, false} {
		o := o
		o.Coverage.Counts = counts
		mode := "pruned"
		if counts {
			mode = "counts"
		}
		tracings = append(tracings, matrix.Tracing{Name: "hapscope " + mode, New: func(ctx context.Context) (matrix.Scorer, func() error, error) {
			start := time.Now()
			s, err := hap.NewScorer(ctx, o)
			if err != nil {
				return nil, nil, err
			}
			fmt.Fprintf(os.Stderr, "overhead: hapscope (%s) attached in %s (not counted)\n", mode, time.Since(start).Round(time.Millisecond))
			return s, s.Close, nil
		}})
	}
	var results []*matrix.Overhead
	for _, w := range []matrix.Workload{matrix.Redis("set"), matrix.Express(express)} {
		r, err := matrix.MeasureOverhead(ctx, env, w, warmup, window, rounds, tracings, func(name string) bool { return names[name] }, ftraceBufferKB)
		if err != nil {
			return fail(fmt.Errorf("overhead of %s: %w", w.Name, err))
		}
		results = append(results, r)
	}
	if err := matrix.WriteOverhead(os.Stdout, results); err != nil {
		return fail(err)
	}
	if err := writeJSONFile(filepath.Join(out, "overhead.json"), results); err != nil {
		return fail(err)
	}
	return 0
}
