// Package hapcli is what the hapscope command and the exporter share: the
// scoring flags and their validation, and progress output.
package hapcli

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// MinInterval is the shortest time between two convergence points that
// Validate accepts (window / samples).
const MinInterval = 10 * time.Millisecond

// ScoreFlags are the flags that configure a measurement: timing, tracer and
// debug info. Set the defaults in the struct before Register.
type ScoreFlags struct {
	Warmup, Window time.Duration
	Samples        int
	Backend        string
	Interrupts     bool
	Counts         bool
	Attribution    bool
	Estimate       bool
	VMLinux        string
	ModuleDebug    string
	IndexCache     string
	Density        float64
	Quiet          bool
	// Functions is a file of function names (ParseFunctionList): only
	// those are probed. Empty: the whole catalogue.
	Functions string
}

// Register defines the flags on fs, with f's current values as defaults
// (IndexCache defaults to the lab's prebuilt cache when it is set).
func (f *ScoreFlags) Register(fs *flag.FlagSet) {
	fs.DurationVar(&f.Warmup, "warmup", f.Warmup, "time to wait before measuring (start-up is not steady state); 0: none (run: the window opens before the command starts, start-up included)")
	fs.DurationVar(&f.Window, "window", f.Window, "measured window")
	fs.IntVar(&f.Samples, "samples", f.Samples, "convergence points in the window (at least 1)")
	fs.StringVar(&f.Backend, "backend", f.Backend, "force a backend: "+backendList()+" (default: best available)")
	fs.BoolVar(&f.Interrupts, "interrupts", f.Interrupts, "also count hard-IRQ, soft-IRQ and NMI context that lands in the workload's tasks (a different measurement; lets pruning remove more probes)")
	fs.BoolVar(&f.Counts, "counts", f.Counts, "keep every probe attached and count hits exactly (default: stop probing a function once seen)")
	fs.BoolVar(&f.Attribution, "syscalls", f.Attribution, "also count each function's calls by the system call (or page fault, io_uring worker) they came from: the profile's origins; implies --counts")
	fs.BoolVar(&f.Estimate, "estimate", f.Estimate, "when no DWARF is found for the kernel or a module, estimate lines from function sizes (marked estimated); other debug-info errors still fail")
	fs.StringVar(&f.VMLinux, "vmlinux", f.VMLinux, "vmlinux with DWARF (default: distro locations, then debuginfod)")
	fs.StringVar(&f.ModuleDebug, "module-debug", cmp.Or(f.ModuleDebug, os.Getenv(labtest.EnvModuleDebug)), "`DIR` tree of kernel module .ko files with DWARF, e.g. an unpacked linux-image-<release>-dbg (default: /usr/lib/debug/lib/modules/<release>, then debuginfod; in the lab, the tree the host extracted)")
	fs.StringVar(&f.IndexCache, "index-cache", cmp.Or(f.IndexCache, os.Getenv(labtest.EnvIndexCache)), "directory of cached line indexes (default: the user cache; in the lab, the one the host prebuilt)")
	fs.Float64Var(&f.Density, "density", f.Density, fmt.Sprintf("bug density, defects per 1,000 lines (0: %.2f)", hap.DefaultDensity))
	fs.BoolVar(&f.Quiet, "q", f.Quiet, "no progress output")
	fs.StringVar(&f.Functions, "functions", f.Functions, "probe only the kernel functions named in `FILE` (one per line, # comments); every name must be in this kernel's catalogue. The profile's attached_functions says how many were probed")
}

// Validate rejects values the measurement cannot use. Its errors are usage
// errors: they name the flag and what it accepts.
func (f *ScoreFlags) Validate() error {
	var errs []error
	if f.Warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup %s: must not be negative", f.Warmup))
	}
	if f.Window <= 0 {
		errs = append(errs, fmt.Errorf("-window %s: must be positive", f.Window))
	}
	switch {
	case f.Samples < 1:
		errs = append(errs, fmt.Errorf("-samples %d: must be at least 1", f.Samples))
	case f.Window > 0 && f.Window/time.Duration(f.Samples) < MinInterval:
		errs = append(errs, fmt.Errorf("-samples %d: points would be %s apart in the %s window; at most %d",
			f.Samples, f.Window/time.Duration(f.Samples), f.Window, int(f.Window/MinInterval)))
	}
	if f.Backend != "" && !isBackend(f.Backend) {
		errs = append(errs, fmt.Errorf("-backend %q: unknown; the backends are %s", f.Backend, backendList()))
	}
	if f.Density < 0 {
		errs = append(errs, fmt.Errorf("-density %g: must not be negative", f.Density))
	}
	return errors.Join(errs...)
}

// Options turns the flags into hap.ScoreOptions. Unless Quiet, progress is
// written to stderr (see Progress). With -functions it loads the running
// kernel's catalogue and limits it to the names in the file.
func (f *ScoreFlags) Options() (hap.ScoreOptions, error) {
	cat, err := f.catalogue()
	if err != nil {
		return hap.ScoreOptions{}, err
	}
	o := hap.ScoreOptions{
		Catalogue: cat,
		Warmup:    f.Warmup, Window: f.Window, Samples: f.Samples,
		Coverage: coverage.Options{
			Backend: coverage.Backend(f.Backend), Interrupts: f.Interrupts, Counts: f.Counts, Attribution: f.Attribution,
		},
		Symbolize:     symbolize.Options{VMLinux: f.VMLinux, CacheDir: f.IndexCache},
		ModuleDebug:   f.ModuleDebug,
		AllowEstimate: f.Estimate, Density: f.Density,
	}
	if o.Warmup == 0 {
		// hap.ScoreOptions reads 0 as "the default warm-up"; the flag's 0
		// means none.
		o.Warmup = hap.NoWarmup
	}
	if !f.Quiet {
		p := NewProgress(os.Stderr, "hapscope: ")
		o.Coverage.Progress = p.Coverage
		o.Symbolize.Progress = p.Index
	}
	return o, nil
}

// ProbeMode is the coverage mode the flags select: "counts" or "pruned".
func (f *ScoreFlags) ProbeMode() coverage.Mode {
	if f.Counts || f.Attribution {
		return coverage.Counts
	}
	return coverage.Pruned
}

func isBackend(s string) bool {
	for _, b := range coverage.Backends {
		if string(b) == s {
			return true
		}
	}
	return false
}

func backendList() string {
	names := make([]string, len(coverage.Backends))
	for i, b := range coverage.Backends {
		names[i] = string(b)
	}
	return strings.Join(names, ", ")
}
