// Command lab runs hapscope's privileged tests on real Debian kernels under
// QEMU (see package internal/lab). It is plumbing for the Makefile:
//
//	lab fetch   [-kernel all|6.12|6.1] [-dbg [-dbg-modules PATTERNS]]
//	                                             download and unpack kernels (and DWARF of vmlinux and modules)
//	lab vmlinux [-kernel 6.12]                   print the path of the vmlinux with DWARF
//	lab test    -kernel K [-run RE] [-skip RE] [-bench RE] [-timeout D] [-single-thread] [-parallel] [-out DIR] PKG...
//	lab sh      -kernel K [-timeout D] [-cpus N] SCRIPT  run a shell script in the guest
//	lab run     -kernel K [-out DIR] [-timeout D] [-cpus N] [-single-thread] -- PROGRAM ARGS...
//	                                             run a host program in the guest (lab env exported)
//
// lab test ends with a summary per kernel: tests run, passed, failed and
// skipped, and every skip with its reason. A lab test (TestLab*,
// BenchmarkLab*) that skips fails the run unless internal/lab's
// AllowedSkips lists it, with its reason, for that kernel.
//
// Exit status: 0 when everything passed, 1 on a failure, 2 on a usage error.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hapscope/hapscope/internal/lab"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lab fetch|vmlinux|test|sh [flags] (see go doc ./internal/cmd/lab)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "fetch":
		err = fetch(ctx, os.Args[2:])
	case "vmlinux":
		fs := flag.NewFlagSet("vmlinux", flag.ExitOnError)
		kernel := fs.String("kernel", "6.12", "lab kernel")
		fs.Parse(os.Args[2:])
		var p string
		if p, err = lab.DebugVmlinux(ctx, *kernel, os.Stderr); err == nil {
			fmt.Println(p)
		}
	case "test":
		err = test(ctx, os.Args[2:])
	case "sh":
		err = sh(ctx, os.Args[2:])
	case "run":
		err = run(ctx, os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "lab: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func kernels(name string) ([]lab.KernelSpec, error) {
	if name == "all" {
		return lab.Kernels, nil
	}
	var out []lab.KernelSpec
	for _, n := range strings.Split(name, ",") {
		s, err := lab.Spec(n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func fetch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	kernel := fs.String("kernel", "all", "lab kernel(s): all, 6.12, 6.1 or a comma list")
	dbg := fs.Bool("dbg", false, "also fetch the vmlinux with DWARF of kernels that have one, and the debug files of the modules lab.DebugModulePatterns names")
	refresh := fs.Bool("refresh", false, "refresh the apt lists even if recent")
	mods := fs.String("dbg-modules", strings.Join(lab.DebugModulePatterns, ","), "with -dbg: the modules (comma-separated shell patterns over module names; * for all) whose debug files to extract, with their dependencies")
	fs.Parse(args)
	lab.DebugModulePatterns = strings.Split(*mods, ",")
	specs, err := kernels(*kernel)
	if err != nil {
		return err
	}
	for _, s := range specs {
		t := time.Now()
		k, err := lab.Fetch(ctx, s, lab.FetchOptions{Log: os.Stderr, Refresh: *refresh})
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\t%s\t%s (%s)\n", s.Name, k.Release, k.Vmlinuz, s.Notes, time.Since(t).Round(time.Millisecond))
		if *dbg && s.Debug {
			p, err := lab.DebugVmlinux(ctx, s.Name, os.Stderr)
			if err != nil {
				return err
			}
			fmt.Printf("%s\tvmlinux\t%s\n", s.Name, p)
			if p, err = lab.DebugModules(ctx, s.Name, os.Stderr); err != nil {
				return err
			}
			fmt.Printf("%s\tmodule-debug\t%s\n", s.Name, p)
		}
	}
	return nil
}

func test(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("test", flag.ExitOnError)
	kernel := fs.String("kernel", "6.12", "lab kernel(s): 6.12, 6.1, all or a comma list (one boot each)")
	run := fs.String("run", "^TestLab", "tests to run (regexp)")
	bench := fs.String("bench", "", "run benchmarks matching this regexp instead of tests")
	skip := fs.String("skip", "", "leave out top-level tests matching this regexp")
	timeout := fs.Duration("timeout", 30*time.Minute, "limit for each boot")
	single := fs.Bool("single-thread", false, "run QEMU's TCG on one thread (slower; steadier under mass detach)")
	out := fs.String("out", "", "host directory shared read-write at /out ($HAPSCOPE_LAB_OUT)")
	extra := fs.String("args", "", "extra flags for each test binary, space separated (e.g. -test.count=2)")
	cpus := fs.Int("cpus", 0, "guest vCPUs (default: the lab's)")
	parallel := fs.Bool("parallel", false, "boot the kernels at once, each guest's console lines prefixed with its kernel (a guest's TCG runs on one host CPU: two kernels on two CPUs take the longer one's time)")
	var env envList
	fs.Var(&env, "env", "KEY=VALUE exported to the test binaries (repeatable)")
	fs.Parse(args)
	pkgs := fs.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	specs, err := kernels(*kernel)
	if err != nil {
		return err
	}
	var ks []*lab.Kernel
	for _, s := range specs {
		k, err := lab.Fetch(ctx, s, lab.FetchOptions{Log: os.Stderr})
		if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	type outcome struct {
		res *lab.TestResult
		err error
	}
	outs := make([]outcome, len(ks))
	one := func(i int, console io.Writer) {
		k := ks[i]
		fmt.Fprintf(console, "=== lab %s: %s, packages %s\n", k.Spec.Name, k.Release, strings.Join(pkgs, " "))
		res, err := lab.RunTests(ctx, lab.TestConfig{
			Kernel: k, Packages: pkgs, Run: *run, Bench: *bench, Skip: *skip, Timeout: *timeout,
			SingleThread: *single, Console: console, OutDir: *out, Args: strings.Fields(*extra),
			CPUs: *cpus, Env: env,
		})
		if res != nil && res.Result != nil {
			passed, nfail := 0, 0
			for _, p := range res.Packages {
				if p.ExitCode == 0 {
					passed++
				} else {
					nfail++
				}
			}
			fmt.Fprintf(console, "=== lab %s: %d packages passed, %d failed (boot %s, wall %s, %s); no lab tests in %d packages\n",
				k.Spec.Name, passed, nfail, res.Boot.Round(10*time.Millisecond), res.Wall.Round(10*time.Millisecond), res.Accel, len(res.Skipped))
		}
		outs[i] = outcome{res, err}
	}
	if *parallel && len(ks) > 1 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, k := range ks {
			console := &prefixWriter{mu: &mu, w: os.Stdout, prefix: "[" + k.Spec.Name + "] "}
			wg.Go(func() {
				one(i, console)
				console.Flush()
			})
		}
		wg.Wait()
	} else {
		for i := range ks {
			one(i, os.Stdout)
			if outs[i].err != nil {
				break
			}
		}
	}
	var (
		failed  []string
		results []*lab.TestResult
		errs    []error
	)
	for i, o := range outs {
		if o.res != nil && o.res.Result != nil {
			results = append(results, o.res)
		}
		switch {
		case o.err != nil:
			errs = append(errs, fmt.Errorf("kernel %s: %w", ks[i].Spec.Name, o.err))
		case o.res != nil && o.res.Failed():
			failed = append(failed, ks[i].Spec.Name)
		}
	}
	summary(os.Stdout, results)
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("lab tests failed on kernel %s (see the summary above)", strings.Join(failed, ", ")))
	}
	return errors.Join(errs...)
}

// prefixWriter writes whole lines to w, each after prefix, under mu: two
// guests' consoles interleave line by line, never inside a line.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		_, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

// Flush writes a last line without its newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.Write([]byte("\n"))
	}
}

// summary prints, per kernel, how many tests ran, passed, failed and
// skipped, then every skip with its reason, every test that reported no
// outcome, and every allowed skip that did not happen.
func summary(w io.Writer, results []*lab.TestResult) {
	if len(results) == 0 {
		return
	}
	var per []string
	for _, r := range results {
		t := r.Tally()
		line := fmt.Sprintf("%s: %s", r.Kernel, t)
		var bad int
		for _, s := range r.Skips {
			if s.Fails() {
				bad++
			}
		}
		if bad > 0 {
			line += fmt.Sprintf(" (%d not allowed)", bad)
		}
		if len(r.Missing) > 0 {
			line += fmt.Sprintf(", %d without an outcome", len(r.Missing))
		}
		per = append(per, line)
	}
	fmt.Fprintf(w, "=== lab summary: %s\n", strings.Join(per, "; "))
	for _, r := range results {
		for _, o := range r.Tests {
			if o.Action == "fail" {
				fmt.Fprintf(w, "    FAIL %s %s on %s\n", o.Package, o.Name, r.Kernel)
			}
		}
		for _, s := range r.Skips {
			fmt.Fprintf(w, "    %s\n", s)
		}
		for _, m := range r.Missing {
			fmt.Fprintf(w, "    NO OUTCOME %s on %s (the test binary died or its output was lost)\n", m, r.Kernel)
		}
		for _, a := range r.Stale {
			fmt.Fprintf(w, "    note: %s ran on %s without skipping; remove it from internal/lab AllowedSkips\n", a.Test, a.Kernel)
		}
	}
}

func sh(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sh", flag.ExitOnError)
	kernel := fs.String("kernel", "6.12", "lab kernel")
	timeout := fs.Duration("timeout", 10*time.Minute, "limit for the boot")
	single := fs.Bool("single-thread", false, "run QEMU's TCG on one thread")
	cpus := fs.Int("cpus", 0, "guest vCPUs (default: the lab's)")
	fs.Parse(args)
	k, err := fetchOne(ctx, *kernel)
	if err != nil {
		return err
	}
	res, err := lab.Run(ctx, lab.Config{Kernel: k, Script: strings.Join(fs.Args(), " "), Timeout: *timeout,
		Console: os.Stdout, SingleThread: *single, CPUs: *cpus})
	return exitWith(res, err)
}

// fetchOne returns the lab kernel called name.
func fetchOne(ctx context.Context, name string) (*lab.Kernel, error) {
	s, err := lab.Spec(name)
	if err != nil {
		return nil, err
	}
	return lab.Fetch(ctx, s, lab.FetchOptions{Log: os.Stderr})
}

// exitWith reports a guest run and exits with its status when non-zero.
func exitWith(res *lab.Result, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lab: exit %d (boot %s, wall %s, %s)\n", res.ExitCode, res.Boot.Round(10*time.Millisecond), res.Wall.Round(10*time.Millisecond), res.Accel)
	if res.ExitCode != 0 {
		os.Exit(res.ExitCode)
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	kernel := fs.String("kernel", "6.12", "lab kernel")
	timeout := fs.Duration("timeout", 15*time.Minute, "limit for the boot")
	single := fs.Bool("single-thread", false, "run QEMU's TCG on one thread")
	out := fs.String("out", "", "host directory shared read-write at /out")
	cpus := fs.Int("cpus", 0, "guest vCPUs (default: the lab's, 1)")
	fs.Parse(args)
	if fs.NArg() == 0 {
		return fmt.Errorf("run: no program given")
	}
	k, err := fetchOne(ctx, *kernel)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "lab: booting %s (QEMU software emulation) to run %s\n", k.Release, strings.Join(fs.Args(), " "))
	res, err := lab.Command(ctx, k, fs.Args(), lab.Config{Timeout: *timeout, Console: os.Stdout, SingleThread: *single, OutDir: *out, CPUs: *cpus})
	return exitWith(res, err)
}

// envList collects repeated -env flags.
type envList []string

func (e *envList) String() string     { return strings.Join(*e, " ") }
func (e *envList) Set(v string) error { *e = append(*e, v); return nil }
