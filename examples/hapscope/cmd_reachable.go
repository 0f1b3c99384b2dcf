package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/matrix"
	"github.com/hapscope/hapscope/internal/reach"
	"github.com/hapscope/hapscope/internal/seccomp"
	"github.com/hapscope/hapscope/internal/sysfuzz"
)

func init() {
	register("reachable", "reachable HAP: what a system call fuzzer inside each runtime drives, guided by coverage and not", cmdReachable)
}

// reachRuntimes are the rows of the reachable-HAP table: the deployed
// runtimes, Docker without seccomp, and Docker under a profile generated
// from redis' own system calls.
var reachRuntimes = []string{"native", "docker", "docker-gvisor-systrap", "docker-gvisor-ptrace", "bubblewrap", "docker-noseccomp", "docker-redis-profile"}

func cmdReachable(args []string) int {
	fs := flag.NewFlagSet("reachable", flag.ContinueOnError)
	var sf scoreFlags
	sf.register(fs)
	out := fs.String("out", "out/reachable", "directory for reachable.json and each row's profiles (JSON)")
	root := fs.String("root", "", "directory holding the userland the runtimes run from (the lab passes /host)")
	runsc := fs.String("runsc", defaultLabCache("runsc/runsc"), "gVisor runsc binary (inside --root)")
	fuzzer := fs.String("fuzzer", "", "static sysfuzz binary (inside --root; CGO_ENABLED=0 go build ./internal/cmd/sysfuzz)")
	programs := fs.Int("programs", 300, "programs per run: the budget, the same for every row")
	seed := fs.Uint64("seed", 1, "random seed of the program stream")
	points := fs.Int("points", 10, "points of the growth curve")
	runtimes := fs.String("runtimes", strings.Join(reachRuntimes, ","), "comma-separated rows")
	guest := fs.Bool("guest", false, "this is a throwaway lab guest: make an oops, a soft lockup or a task hung for 10 min panic the kernel (which ends the lab run), and mark each program on the kernel log before it runs")
	predictFrom := fs.String("predict-from", "docker", "row whose unguided run is made once more with every call counted and attributed (no pruning: many times slower), to predict what docker-redis-profile's seccomp profile cuts; \"\" for none")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope reachable --fuzzer PATH [--programs N] [--seed S] [--runtimes R,…] [flags]")
		fmt.Fprintln(fs.Output(), "Runs the sysfuzz executor as the workload of each runtime (as nobody, driven over TCP) and")
		fmt.Fprintln(fs.Output(), "prints the host-kernel functions and lines its programs reached: unguided (the seeded stream)")
		fmt.Fprintln(fs.Output(), "and guided (programs that reached new functions mutated). docker-redis-profile runs it under")
		fmt.Fprintln(fs.Output(), "the seccomp profile generated from redis' own calls (and the fuzzer harness'); what that profile")
		fmt.Fprintln(fs.Output(), "cuts is predicted from the --predict-from row's calls and set beside what was measured under it.")
		fmt.Fprintln(fs.Output(), "`make reachable` runs it in the lab.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 || *fuzzer == "" {
		fs.Usage()
		return exitUsage
	}
	if *programs < 1 || *points < 1 {
		return usageError(fmt.Errorf("-programs %d, -points %d: both must be at least 1", *programs, *points))
	}
	if err := sf.Validate(); err != nil {
		return usageError(err)
	}
	all := map[string]matrix.Runtime{}
	for _, rt := range matrix.Study2018(*runsc) {
		all[rt.Name] = rt
	}
	var rows []string
	for _, name := range splitList(*runtimes) {
		if _, ok := all[name]; !ok && name != "docker-redis-profile" {
			return usageError(fmt.Errorf("unknown runtime %q (have %s)", name, strings.Join(reachRuntimes, ", ")))
		}
		rows = append(rows, name)
	}
	predict := *predictFrom != "" && slices.Contains(rows, "docker-redis-profile")
	if predict && !slices.Contains(rows, *predictFrom) {
		return usageError(fmt.Errorf("-predict-from %s: not among the rows %s", *predictFrom, strings.Join(rows, ",")))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(err)
	}
	env, cleanup, err := planEnv("hapscope-reachable", *root)
	if err != nil {
		return fail(err)
	}
	defer cleanup()
	fz := matrix.Fuzzer(*fuzzer, "serve")

	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	o.Coverage.Attribution = false
	sc, err := hap.NewScorer(ctx, o)
	if err != nil {
		return fail(err)
	}
	defer sc.Close()
	start := time.Now()
	before, closeLog, err := programLog(filepath.Join(*out, "programs.log"), *guest)
	if err != nil {
		return fail(err)
	}
	defer closeLog()
	ropt := reach.Options{Seed: *seed, Programs: *programs, Points: *points, Before: before,
		Progress: func(p reach.Point) {
			fmt.Fprintf(os.Stderr, "reachable: %d programs, %d functions\n", p.Programs, p.Functions)
		}}
	// The rows without Docker first, and redis' calls measured after them:
	// once a dockerd has set up its NAT chains, every connection on the
	// machine passes conntrack and NAT, and native would be "native on a
	// Docker host" (measured: 30 nf_conntrack functions in native's set).
	var plain, docker []string
	for _, name := range rows {
		if name == "docker-redis-profile" || all[name].UsesDocker() {
			docker = append(docker, name)
		} else {
			plain = append(plain, name)
		}
	}
	var res []matrix.ReachRow
	var profileNote string
	var redisProfile *seccomp.Profile
	for _, names := range [][]string{plain, docker} {
		plan := matrix.Plan{Workloads: []matrix.Workload{fz}}
		for _, name := range names {
			if name != "docker-redis-profile" {
				plan.Runtimes = append(plan.Runtimes, all[name])
				continue
			}
			rt, prof, note, rerr := redisProfileRow(ctx, env, sf, fz)
			if rerr != nil && ctx.Err() == nil {
				return fail(fmt.Errorf("docker-redis-profile: %w", rerr))
			}
			err = rerr
			plan.Runtimes, profileNote, redisProfile = append(plan.Runtimes, rt), note, prof
		}
		if err != nil {
			break // interrupted while measuring redis
		}
		if len(plan.Runtimes) == 0 {
			continue
		}
		var r []matrix.ReachRow
		r, err = plan.Reach(ctx, env, sc.Tracer(), ropt)
		res = append(res, r...)
		if err != nil {
			break
		}
	}
	// Last, the prediction's run: the predict-from row's unguided stream
	// once more, every call counted by system call, under a scorer of its
	// own.
	var pred *prediction
	if predict && err == nil && redisProfile != nil {
		pred = &prediction{from: *predictFrom, to: "docker-redis-profile", profile: redisProfile}
		pred.run, pred.sc, err = attributedRun(ctx, env, sf, fz, all[*predictFrom], ropt)
		if err != nil && ctx.Err() == nil {
			return fail(fmt.Errorf("the attributed run of %s: %w", *predictFrom, err))
		}
		if pred.sc != nil {
			defer pred.sc.Close()
		}
	}
	// Back into the order asked for.
	slices.SortStableFunc(res, func(a, b matrix.ReachRow) int {
		return slices.Index(rows, a.Runtime) - slices.Index(rows, b.Runtime)
	})
	partial := ""
	if err != nil {
		// Interrupted: the rows that finished are written, marked.
		if ctx.Err() == nil || len(res) == 0 {
			return fail(err)
		}
		partial = fmt.Sprintf("interrupted after %d of %d rows (%v)", len(res), len(rows), err)
		fmt.Fprintln(os.Stderr, "reachable:", partial)
		profileNote = strings.TrimPrefix(profileNote+"\n"+partial, "\n")
	}
	code := writeReachable(context.WithoutCancel(ctx), sc, res, *out, *programs, *points, *seed, profileNote, pred, time.Since(start))
	if partial != "" {
		return 1
	}
	return code
}

// predict compares what pred.profile is predicted to leave of the
// attributed run with to, the run measured under the profile; from is the
// predict-from row's own unguided profile (nil if it failed).
func predict(ctx context.Context, pred *prediction, from, to *hap.Profile, out string) (*predictionJSON, error) {
	run, err := pred.sc.Profile(ctx, pred.run.Snapshot, "sysfuzz/"+pred.from+"/unguided-attributed")
	if err != nil {
		return nil, err
	}
	if err := writeProfile(filepath.Join(out, strings.ReplaceAll(run.Label, "/", "-")+".json"), run); err != nil {
		return nil, err
	}
	pr, err := pred.profile.Predict(run)
	if err != nil {
		return nil, err
	}
	pj := &predictionJSON{From: pred.from, To: pred.to, FromLines: run.Lines.Total, PredictedLines: pr.Kept.Lines.Total,
		MeasuredLines: to.Lines.Total, CutFunctions: len(pr.Cut), Denied: pr.Denied}
	if to.Lines.Total > 0 {
		pj.ErrorPercent = 100 * float64(pj.PredictedLines-pj.MeasuredLines) / float64(pj.MeasuredLines)
	}
	if from != nil {
		pj.FromJaccard = jaccard(run, from)
	}
	return pj, nil
}

// jaccard is the Jaccard index of two profiles' function sets (by module
// and name).
func jaccard(a, b *hap.Profile) float64 {
	set := map[[2]string]int{}
	for _, f := range a.Functions {
		set[[2]string{f.Module, f.Name}] |= 1
	}
	for _, f := range b.Functions {
		set[[2]string{f.Module, f.Name}] |= 2
	}
	both := 0
	for _, v := range set {
		if v == 3 {
			both++
		}
	}
	if len(set) == 0 {
		return 1
	}
	return float64(both) / float64(len(set))
}

// guestSysctls make a wedged lab guest panic, which the lab's kernel
// command line (panic=-1) turns into the end of the run with the console
// saved: an oops, a soft lockup, or a task blocked for 10 minutes (an
// emulated guest under full tracing stalls for seconds, never minutes).
var guestSysctls = [][2]string{
	{"kernel/panic_on_oops", "1"},
	{"kernel/softlockup_panic", "1"},
	{"kernel/hung_task_timeout_secs", "600"},
	{"kernel/hung_task_panic", "1"},
}

// programLog returns the reach runs' Before: it appends each program to
// the file name and syncs it before the program runs, so that a program
// that crashes the kernel is on record. In a guest it also sets
// guestSysctls and writes a line per program to the kernel log (the lab's
// serial console): the last one before a crash names the program.
func programLog(name string, guest bool) (before func(int, string) error, closeLog func(), err error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	var kmsg *os.File
	if guest {
		for _, kv := range guestSysctls {
			if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("--guest: set %s: %w", kv[0], err)
			}
		}
		if kmsg, err = os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("--guest: %w", err)
		}
	}
	before = func(i int, text string) error {
		head, _, _ := strings.Cut(text, "\n")
		if _, err := fmt.Fprintf(f, "# program %d\n%s\n", i, text); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if kmsg != nil {
			// One record per write; the console shows it at the default level.
			fmt.Fprintf(kmsg, "hapscope reachable: program %d of %s (%s)\n", i, strings.TrimPrefix(head, "# "), name)
		}
		return nil
	}
	return before, func() {
		f.Close()
		if kmsg != nil {
			kmsg.Close()
		}
	}, nil
}

// attributedRun runs the fuzzer's unguided stream under rt with every call
// counted and attributed to its system call, under a scorer of its own
// (returned open: its Profile symbolizes the run).
func attributedRun(ctx context.Context, env *matrix.Env, sf scoreFlags, fz matrix.Workload, rt matrix.Runtime, ropt reach.Options) (*reach.Result, *hap.Scorer, error) {
	o, err := sf.options()
	if err != nil {
		return nil, nil, err
	}
	o.Coverage.Attribution, o.Coverage.Counts = true, true
	sc, err := hap.NewScorer(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	rows, err := matrix.Plan{Workloads: []matrix.Workload{fz}, Runtimes: []matrix.Runtime{rt}}.ReachUnguided(ctx, env, sc.Tracer(), ropt)
	switch {
	case err != nil:
	case len(rows) != 1:
		err = fmt.Errorf("%d rows, want 1", len(rows))
	case rows[0].Unguided == nil:
		err = fmt.Errorf("no run (skipped %q, error %v)", cmp.Or(rows[0].Skipped, "-"), rows[0].Err)
	}
	if err != nil {
		sc.Close()
		return nil, nil, err
	}
	return rows[0].Unguided, sc, nil
}

// redisProfileRow measures redis' system calls and the fuzzer harness' from
// their start under Docker (FromStart), and returns the Docker row whose
// seccomp profile allows exactly those.
func redisProfileRow(ctx context.Context, env *matrix.Env, sf scoreFlags, fz matrix.Workload) (matrix.Runtime, *seccomp.Profile, string, error) {
	fail := func(err error) (matrix.Runtime, *seccomp.Profile, string, error) {
		return matrix.Runtime{}, nil, "", err
	}
	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	// The calls alone: the system call entry points, which the container
	// starts under quickly enough for a 40 s window from its creation.
	cat := o.Catalogue
	if cat == nil {
		if cat, err = coverage.LoadCatalogue(); err != nil {
			return fail(err)
		}
	}
	o.Catalogue = matrix.SyscallEntries(cat)
	o.Warmup, o.Window, o.Samples = hap.NoWarmup, 40*time.Second, 4
	o.Coverage.Attribution, o.Coverage.Counts = true, true
	sc, err := hap.NewScorer(ctx, o)
	if err != nil {
		return fail(err)
	}
	defer sc.Close()
	// Both as Docker runs them, from runc init's joining the container's
	// cgroup: runc's own calls after it installs the filter must pass too.
	docker := matrix.Docker("docker", matrix.DockerOptions{})
	redis, err := matrix.Syscalls(ctx, env, sc, matrix.Redis("set"), docker)
	if err != nil {
		return fail(err)
	}
	harness, err := matrix.Syscalls(ctx, env, sc, fz, docker)
	if err != nil {
		return fail(err)
	}
	g, extra, err := matrix.HarnessProfile(redis, harness)
	if err != nil {
		return fail(err)
	}
	b, err := g.Profile.JSON()
	if err != nil {
		return fail(err)
	}
	note := fmt.Sprintf("docker-redis-profile: %d system calls allowed: redis-server's %d (from runc init to a SET load, under Docker) and %d of the fuzzer's harness redis does not make (%s)",
		len(g.Allowed), len(redis), len(extra), strings.Join(extra, " "))
	rt := matrix.Docker("docker-redis-profile", matrix.DockerOptions{SecurityOpt: []string{"seccomp=" + string(b)}})
	rt.Variant = "Docker under the seccomp profile hapscope seccomp generates from redis-server's own calls: what a compromised redis could reach"
	return rt, g.Profile, note, nil
}

// reachJSON is reachable.json.
type reachJSON struct {
	Programs int            `json:"programs"`
	Seed     uint64         `json:"seed"`
	Took     string         `json:"took"`
	Note     string         `json:"note,omitempty"`
	Rows     []reachRowJSON `json:"rows"`
	Calls    []string       `json:"calls"` // the fuzzer's system calls
	Kernel   string         `json:"kernel"`
	CPUs     int            `json:"cpus"` // online in the machine measured (hap.Meta.CPUs)
	// Predictions set what a seccomp profile was predicted to cut, from
	// another row's attributed run, beside what was measured under it.
	Predictions []predictionJSON `json:"predictions,omitempty"`
}

// prediction is what writeReachable predicts: profile's cut, from run (row
// from's unguided stream, attributed by sc), for row to's unguided run.
type prediction struct {
	from, to string
	profile  *seccomp.Profile
	run      *reach.Result
	sc       *hap.Scorer
}

type predictionJSON struct {
	From string `json:"from"` // the row whose unguided stream was attributed
	To   string `json:"to"`   // the row run under the profile (its unguided run)
	// FromJaccard compares the attributed run's function set with the
	// from row's own unguided run: the same stream, counted and pruned.
	FromJaccard float64 `json:"from_jaccard"`
	// FromLines is the attributed run's lines; PredictedLines what the
	// profile was predicted to leave of them, MeasuredLines what the run
	// under the profile reached; ErrorPercent their difference over
	// MeasuredLines.
	FromLines      int      `json:"from_lines"`
	PredictedLines int      `json:"predicted_lines"`
	MeasuredLines  int      `json:"measured_lines"`
	ErrorPercent   float64  `json:"error_percent"`
	CutFunctions   int      `json:"cut_functions"`
	Denied         []string `json:"denied_calls"` // the attributed run's calls the profile denies
}

type reachRowJSON struct {
	Runtime  string        `json:"runtime"`
	Variant  string        `json:"variant,omitempty"`
	Describe string        `json:"describe,omitempty"`
	Skipped  string        `json:"skipped,omitempty"`
	Error    string        `json:"error,omitempty"`
	Unguided *reachRunJSON `json:"unguided,omitempty"`
	Guided   *reachRunJSON `json:"guided,omitempty"`
}

type reachRunJSON struct {
	Functions int           `json:"functions"`
	Lines     int           `json:"lines"`
	Calls     int           `json:"calls"`
	Errors    int           `json:"failed_calls"`
	Curve     []reach.Point `json:"curve"`
	Corpus    int           `json:"corpus"`
}

func writeReachable(ctx context.Context, sc *hap.Scorer, rows []matrix.ReachRow, out string, programs, points int, seed uint64, note string, pred *prediction, took time.Duration) int {
	doc := reachJSON{Programs: programs, Seed: seed, Took: took.Round(time.Second).String(), Note: note}
	for _, c := range sysfuzz.Syscalls {
		doc.Calls = append(doc.Calls, c.Name)
	}
	failed := 0
	profiles := map[string][2]*hap.Profile{} // each row's unguided and guided
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "runtime\tunguided functions\tlines\tguided functions\tlines\tguided curve (functions every %d programs)\t\n", max(programs/points, 1))
	for _, r := range rows {
		row := reachRowJSON{Runtime: r.Runtime, Variant: r.Variant, Describe: r.Describe, Skipped: r.Skipped}
		if r.Err != nil {
			row.Error = r.Err.Error()
			failed++
		}
		label := r.Runtime
		if r.Variant != "" {
			label += " (variant)"
		}
		var cols []string
		for i, res := range []*reach.Result{r.Unguided, r.Guided} {
			if res == nil {
				cols = append(cols, "-", "-")
				continue
			}
			p, err := sc.Profile(ctx, res.Snapshot, fmt.Sprintf("sysfuzz/%s/%s", r.Runtime, map[int]string{0: "unguided", 1: "guided"}[i]))
			if err != nil {
				fmt.Fprintln(os.Stderr, "hapscope:", err)
				if row.Error == "" {
					row.Error = err.Error()
				}
				failed++
				cols = append(cols, "-", "-")
				continue
			}
			doc.Kernel, doc.CPUs = p.Release, p.CPUs
			ps := profiles[r.Runtime]
			ps[i] = p
			profiles[r.Runtime] = ps
			run := &reachRunJSON{Functions: len(p.Functions), Lines: p.Lines.Total, Calls: res.Calls, Errors: res.Errors, Curve: res.Curve, Corpus: len(res.Corpus)}
			if i == 0 {
				row.Unguided = run
			} else {
				row.Guided = run
			}
			name := filepath.Join(out, strings.ReplaceAll(p.Label, "/", "-")+".json")
			if err := writeProfile(name, p); err != nil {
				fmt.Fprintln(os.Stderr, "hapscope:", err)
			}
			cols = append(cols, fmt.Sprint(len(p.Functions)), fmt.Sprint(p.Lines.Total))
		}
		curve := ""
		switch {
		case r.Skipped != "":
			curve = "skipped: " + r.Skipped
		case r.Err != nil:
			curve = "FAILED: " + r.Err.Error()
		case r.Guided != nil:
			var pts []string
			for _, pt := range r.Guided.Curve {
				pts = append(pts, fmt.Sprint(pt.Functions))
			}
			curve = strings.Join(pts, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", label, strings.Join(cols, "\t"), curve)
		doc.Rows = append(doc.Rows, row)
	}
	if err := tw.Flush(); err != nil {
		return fail(err)
	}
	if note != "" {
		fmt.Println("\n" + note)
	}
	if pred != nil && pred.run != nil && profiles[pred.to][0] != nil {
		if pj, err := predict(ctx, pred, profiles[pred.from][0], profiles[pred.to][0], out); err != nil {
			fmt.Fprintln(os.Stderr, "hapscope:", err)
			failed++
		} else {
			doc.Predictions = append(doc.Predictions, *pj)
			fmt.Printf("%s unguided: predicted from %s's attributed run %d lines (%d of %d cut: %d functions reached only through the %d calls the profile denies), measured %d: %+.1f %% (the attributed run's functions vs %s's own: Jaccard %.3f)\n",
				pred.to, pred.from, pj.PredictedLines, pj.FromLines-pj.PredictedLines, pj.FromLines, pj.CutFunctions, len(pj.Denied), pj.MeasuredLines, pj.ErrorPercent, pred.from, pj.FromJaccard)
		}
	}
	if err := writeJSONFile(filepath.Join(out, "reachable.json"), doc); err != nil {
		return fail(err)
	}
	fmt.Printf("\n%d programs per run, seed %d, kernel %s on %d CPUs; reachable.json and the profiles: %s (took %s)\n", programs, seed, doc.Kernel, doc.CPUs, out, took.Round(time.Second))
	if failed > 0 {
		return fail(errors.New("some rows failed; see the table"))
	}
	return 0
}
