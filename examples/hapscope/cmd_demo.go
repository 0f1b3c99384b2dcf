package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/matrix"
)

func init() {
	register("demo", "score built-in workloads (redis SET/GET, native and under Docker) on this kernel", cmdDemo)
}

func cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var sf scoreFlags
	sf.register(fs)
	out := fs.String("out", "out/demo", "directory for the profiles (JSON) and report.html")
	root := fs.String("root", "", "directory holding the userland the workloads run from (the lab passes /host)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope demo [--out DIR] [--window D] [flags]")
		fmt.Fprintln(fs.Output(), "Needs root, redis-server, redis-tools and Docker (docker.io). `make demo` runs it in the lab where this kernel cannot be traced.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	demoDefaults(fs, &sf)
	if err := sf.Validate(); err != nil {
		return usageError(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fail(err)
	}
	env, cleanup, err := planEnv("hapscope-demo", *root)
	if err != nil {
		return fail(err)
	}
	defer cleanup()
	start := time.Now()
	plan := matrix.Plan{
		Workloads: []matrix.Workload{matrix.Redis("set"), matrix.Redis("get")},
		Runtimes:  []matrix.Runtime{matrix.Native(), matrix.Docker("docker", matrix.DockerOptions{})},
	}
	o, err := sf.options()
	if err != nil {
		return fail(err)
	}
	cells, err := runPlan(ctx, "demo", env, o, plan)
	if err != nil {
		return fail(err)
	}
	return writeCells(cells, *out, time.Since(start))
}

// demoDefaults sets what demo and matrix measure unless the flags say
// otherwise: a 2 s warm-up, a 5 s window, and (demo only: matrix has
// --prune) counts mode. Every probe stays attached, like the matrix: pruning
// pays off over minutes; in a 5 s window its link replacements cost more than
// they save (measured in the lab, see coverage).
func demoDefaults(fs *flag.FlagSet, sf *scoreFlags) {
	if !isFlagSet(fs, "warmup") {
		sf.Warmup = 2 * time.Second
	}
	if !isFlagSet(fs, "window") {
		sf.Window = 5 * time.Second
	}
	if !isFlagSet(fs, "counts") && fs.Lookup("prune") == nil {
		sf.Counts = true
	}
}

// writeCells prints the score table, writes each profile and the report,
// and returns 1 when a cell failed.
func writeCells(cells []matrix.Cell, out string, took time.Duration) int {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\truntime\tfunctions\tlines\town\tinlined\tlatent bugs\treq/s (traced)\tstatus")
	var profiles []*hap.Profile
	failed := 0
	for _, c := range cells {
		switch {
		case c.Skipped != "":
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\tskipped: %s\n", c.Workload, c.Runtime, c.Skipped)
		case c.Err != nil:
			failed++
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%.0f\tFAILED: %v\n", c.Workload, c.Runtime, c.Load.RPS(), c.Err)
		default:
			p := c.Profile
			profiles = append(profiles, p)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.2f\t%.0f\tok (%s, %s)\n", c.Workload, c.Runtime, len(p.Functions), p.Lines.Total,
				p.Lines.Own, p.Lines.Inlined, p.Bugs, c.Load.RPS(), p.Backend, p.Mode)
			name := filepath.Join(out, c.Workload+"-"+c.Runtime+".json")
			if err := writeProfile(name, p); err != nil {
				fmt.Fprintln(os.Stderr, "hapscope:", err)
			}
			for _, part := range slices.Sorted(maps.Keys(c.Parts)) {
				pp := c.Parts[part]
				if err := writeProfile(filepath.Join(out, c.Workload+"-"+c.Runtime+"-"+part+".json"), pp); err != nil {
					fmt.Fprintln(os.Stderr, "hapscope:", err)
				}
				fmt.Fprintf(tw, "\t  %s part\t%d\t%d\t%d\t%d\t%.2f\t\t\n", part, len(pp.Functions), pp.Lines.Total, pp.Lines.Own, pp.Lines.Inlined, pp.Bugs)
			}
		}
	}
	tw.Flush()
	if len(profiles) > 0 {
		report := filepath.Join(out, "report.html")
		f, err := os.Create(report)
		if err != nil {
			return fail(err)
		}
		err = hap.WriteHTML(f, profiles...)
		f.Close()
		if err != nil {
			return fail(err)
		}
		fmt.Printf("\nprofiles (JSON) and report: %s (took %s)\n", report, took.Round(time.Second))
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "hapscope: %d cells failed; their workloads are not scored\n", failed)
		return 1
	}
	return 0
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
