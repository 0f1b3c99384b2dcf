package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hapscope/hapscope/examples/internal/hapcli"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/internal/matrix"
)

// exitWorkload is the exit code when the measured workload failed: the
// measurement is not scored.
const exitWorkload = 3

// exitInterrupted is the exit code after SIGINT or SIGTERM (128 + SIGINT).
const exitInterrupted = 130

func init() {
	register("run", "run a command in a new cgroup and score its steady state", cmdRun)
	register("score", "score an existing cgroup (or a process's cgroup) over a window", cmdScore)
}

// scoreFlags are the flags run and score share: the measurement's
// (hapcli.ScoreFlags, shared with the exporter) and the output's.
type scoreFlags struct {
	hapcli.ScoreFlags
	jsonOut bool
	out     string
	label   string
}

func (f *scoreFlags) register(fs *flag.FlagSet) {
	f.ScoreFlags = hapcli.ScoreFlags{Warmup: 5 * time.Second, Window: 10 * time.Second, Samples: 10}
	f.ScoreFlags.Register(fs)
	fs.BoolVar(&f.jsonOut, "json", false, "print the profile as JSON instead of a table")
	fs.StringVar(&f.out, "o", "", "also write the profile JSON to this file")
	fs.StringVar(&f.label, "label", "", "label of the profile (default: the command or cgroup)")
}

// options is the hap.ScoreOptions of the flags; validate them first.
func (f *scoreFlags) options() (hap.ScoreOptions, error) {
	o, err := f.ScoreFlags.Options()
	o.Label = f.label
	return o, err
}

func (f *scoreFlags) print(p *hap.Profile) int {
	if f.out != "" {
		w, err := os.Create(f.out)
		if err == nil {
			err = p.WriteJSON(w)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fail(fmt.Errorf("write %s: %w", f.out, err))
		}
	}
	var err error
	if f.jsonOut {
		err = p.WriteJSON(os.Stdout)
	} else {
		err = p.WriteText(os.Stdout)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func cmdScore(args []string) int {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	var sf scoreFlags
	sf.register(fs)
	cg := fs.String("cgroup", "", "cgroup v2 directory to measure (with its descendants)")
	pid := fs.Int("pid", 0, "measure the cgroup of this process")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope score (--cgroup DIR | --pid PID) [--window D] [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if (*cg == "") == (*pid == 0) || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if err := sf.Validate(); err != nil {
		return usageError(err)
	}
	if *pid != 0 {
		p, err := coverage.CgroupOf(*pid)
		if err != nil {
			return fail(err)
		}
		*cg = p
	}
	// Before anything is attached: a wrong path must not cost an attach of
	// the whole catalogue.
	dir, err := coverage.CgroupDir(*cg)
	if err != nil {
		return fail(err)
	}
	*cg = dir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	o.Label = firstNonEmpty(o.Label, filepath.Base(*cg))
	p, err := hap.Score(ctx, *cg, o)
	if err != nil {
		return fail(err)
	}
	return sf.print(p)
}

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var sf scoreFlags
	sf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope run [--warmup D] [--window D] [--json] [flags] -- CMD [ARG...]")
		fmt.Fprintln(fs.Output(), "Runs CMD in a new cgroup v2, measures its steady state and prints the score.")
		fmt.Fprintln(fs.Output(), "CMD still running at the end of the window is stopped (SIGTERM). A CMD that exits")
		fmt.Fprintln(fs.Output(), "non-zero, or exits before the window starts, is reported and not scored (exit status 3).")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	if err := sf.Validate(); err != nil {
		return usageError(err)
	}
	cmdline := fs.Args()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := matrix.Cgroup2Root()
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp(root, "hapscope-run-")
	if err != nil {
		return fail(fmt.Errorf("create a cgroup under %s: %w (hapscope run needs root)", root, err))
	}
	defer func() {
		if err := matrix.RemoveCgroup(dir); err != nil {
			fmt.Fprintln(os.Stderr, "hapscope:", err)
		}
	}()
	cgfd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd, Setpgid: true}

	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	o.Label = firstNonEmpty(o.Label, filepath.Base(cmdline[0]))
	wl := &hap.Workload{Command: cmdline, ExitCode: -1}
	o.Workload = wl

	// The tracer is attached before the workload starts, so start-up is
	// excluded by the warm-up, not missed, and a kernel that cannot be
	// traced is reported before anything runs.
	scorer, err := hap.NewScorer(ctx, o)
	if err != nil {
		syscall.Close(cgfd)
		return fail(err)
	}
	defer scorer.Close()
	scoreCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type result struct {
		p   *hap.Profile
		err error
	}
	started := make(chan struct{})
	res := make(chan result, 1)
	// With no warm-up the window opens before the workload starts, so its
	// start-up (exec, the dynamic loader, its set-up) is measured: what a
	// seccomp profile built from the profile must allow.
	startUp := o.Warmup == hap.NoWarmup
	opened := make(chan struct{})
	if startUp {
		scoreCtx = hap.WithScoreTrace(scoreCtx, &hap.ScoreTrace{WindowStart: func() { close(opened) }})
	}
	go func() {
		if !startUp {
			<-started
		}
		p, err := scorer.Score(scoreCtx, dir)
		res <- result{p, err}
	}()
	if startUp {
		select {
		case <-opened:
		case r := <-res:
			syscall.Close(cgfd)
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "hapscope: interrupted before the window opened; nothing ran")
				return exitInterrupted
			}
			return fail(r.err)
		}
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		syscall.Close(cgfd)
		return fail(fmt.Errorf("start %s: %w", cmdline[0], err))
	}
	syscall.Close(cgfd)
	close(started)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var r result
	select {
	case r = <-res:
		// Window over: stop the workload if it still runs.
		stopWorkload(cmd, exited, wl)
	case werr := <-exited:
		wl.ExitCode = exitCode(werr)
		if wl.ExitCode != 0 || time.Since(t0) < o.Warmup {
			why := fmt.Sprintf("exit status %d", wl.ExitCode)
			if wl.ExitCode == 0 {
				why = fmt.Sprintf("exited after %s, before the %s warm-up ended", time.Since(t0).Round(time.Millisecond), o.Warmup)
			}
			cancel(errors.New("workload ended"))
			<-res
			fmt.Fprintf(os.Stderr, "hapscope: workload %q failed (%s); not scored\n", strings.Join(cmdline, " "), why)
			return exitWorkload
		}
		r = <-res
	}
	if r.err != nil {
		if ctx.Err() != nil {
			scorer.Close()
			fmt.Fprintln(os.Stderr, "hapscope: interrupted before the window ended; workload stopped, tracer detached, nothing scored")
			return exitInterrupted
		}
		return fail(r.err)
	}
	if err := scorer.Close(); err != nil {
		return fail(err)
	}
	if wl.ExitCode > 0 {
		fmt.Fprintf(os.Stderr, "hapscope: workload %q exited with status %d during the window; not scored\n", strings.Join(cmdline, " "), wl.ExitCode)
		return exitWorkload
	}
	return sf.print(r.p)
}

// stopWorkload ends a workload still running at the end of the window and
// records how it ended.
func stopWorkload(cmd *exec.Cmd, exited chan error, wl *hap.Workload) {
	select {
	case werr := <-exited:
		wl.ExitCode = exitCode(werr)
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	wl.ExitCode = -1
	wl.Error = "still running at the end of the window; stopped by hapscope"
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// planEnv prepares a matrix environment named name (its scope cgroup and
// scratch directory) under root, and returns a cleanup function.
func planEnv(name, root string) (*matrix.Env, func(), error) {
	cgRoot, err := matrix.Cgroup2Root()
	if err != nil {
		return nil, nil, err
	}
	env := &matrix.Env{Root: root, Cgroup: filepath.Join(cgRoot, name), Log: os.Stderr, Work: "/tmp/" + name,
		// In the lab: its scratch disk (ext4) and its non-loopback address.
		Data: os.Getenv(labtest.EnvScratch), Host: os.Getenv(labtest.EnvAddr)}
	if err := os.MkdirAll(filepath.Join(root, env.Work), 0o755); err != nil {
		return nil, nil, err
	}
	return env, func() {
		os.RemoveAll(filepath.Join(root, env.Work))
		os.Remove(env.Cgroup)
	}, nil
}

// runPlan attaches one tracer, runs every cell of plan with it and detaches,
// logging both steps under the name what.
func runPlan(ctx context.Context, what string, env *matrix.Env, o hap.ScoreOptions, plan matrix.Plan) ([]matrix.Cell, error) {
	start := time.Now()
	fmt.Fprintf(os.Stderr, "%s: attaching the tracer to every traceable kernel function …\n", what)
	scorer, err := hap.NewScorer(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "%s: attached in %s\n", what, time.Since(start).Round(time.Millisecond))
	cells, err := plan.Run(ctx, env, scorer)
	t0 := time.Now()
	if cerr := scorer.Close(); cerr != nil && err == nil {
		err = cerr
	}
	fmt.Fprintf(os.Stderr, "%s: detached in %s\n", what, time.Since(t0).Round(time.Millisecond))
	return cells, err
}
