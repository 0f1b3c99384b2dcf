package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/seccomp"
)

func init() {
	register("seccomp", "write the seccomp profile that allows exactly the system calls a measured workload made", cmdSeccomp)
}

func cmdSeccomp(args []string) int {
	fs := flag.NewFlagSet("seccomp", flag.ContinueOnError)
	out := fs.String("o", "", "write the seccomp profile to this file instead of stdout")
	steady := fs.Bool("steady-state", false, "accept a profile that did not measure the workload's start-up (its start-up calls will be denied)")
	emptyStart := fs.Bool("empty-start", false, "the profile scored a cgroup that was empty when its window opened (hapscope score --warmup 0 --cgroup DIR, then docker run --cgroup-parent DIR): its start-up was measured")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope seccomp [-o FILE] [--steady-state] PROFILE.json")
		fmt.Fprintln(fs.Output(), "Writes the seccomp profile (Docker's --security-opt seccomp=FILE, the OCI spec's linux.seccomp)")
		fmt.Fprintln(fs.Output(), "that allows exactly the system calls of PROFILE.json and answers the others with EPERM;")
		fmt.Fprintln(fs.Output(), "clone3 gets ENOSYS, so libc falls back to clone. Measure PROFILE.json from the workload's start:")
		fmt.Fprintln(fs.Output(), "  hapscope run --syscalls --warmup 0 --window D -o PROFILE.json -- CMD [ARG...]")
		fmt.Fprintln(fs.Output(), "with the whole catalogue (every system call enters a probed function, its __x64_sys_ entry")
		fmt.Fprintln(fs.Output(), "point) and a window that covers all the workload does: a call it makes later is denied.")
		fmt.Fprintln(fs.Output(), "For a container, measure it as its runtime starts it: the OCI runtime (runc init) makes calls")
		fmt.Fprintln(fs.Output(), "after it installs the filter, which a native run does not. With Docker: score an empty cgroup")
		fmt.Fprintln(fs.Output(), "and start the container into it, then pass --empty-start:")
		fmt.Fprintln(fs.Output(), "  mkdir /sys/fs/cgroup/app; hapscope score --syscalls --warmup 0 --window D --cgroup /sys/fs/cgroup/app -o PROFILE.json &")
		fmt.Fprintln(fs.Output(), "  docker run --cgroup-parent /app …")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	p, err := hap.ReadJSON(f)
	f.Close()
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	names, err := syscallsOf(p, *steady, *emptyStart)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	g, err := seccomp.Allow(names)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
	}
	b, err := g.Profile.JSON()
	if err != nil {
		return fail(err)
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		return fail(err)
	}
	for _, n := range g.Notes {
		fmt.Fprintln(os.Stderr, "hapscope: note:", n)
	}
	fmt.Fprintf(os.Stderr, "hapscope: %d system calls allowed, every other one answered with EPERM (x86-64 only)\n", len(g.Allowed))
	return 0
}

// syscallsOf returns the system calls p's tasks made, refusing a profile
// that cannot list them all: measured without attribution, with origins
// lost, or (unless steady) without the workload's start-up; emptyStart
// says a scored cgroup was empty when the window opened.
func syscallsOf(p *hap.Profile, steady, emptyStart bool) ([]string, error) {
	if len(p.Origins) == 0 {
		return nil, errors.New("no system call origins: measure it with --syscalls (hapscope run --syscalls --warmup 0 …)")
	}
	if p.OriginsDropped > 0 {
		return nil, fmt.Errorf("the origins of %d calls were not recorded (the tracer's origin table was full or busy): a system call may be missing from it; measure again over a shorter window", p.OriginsDropped)
	}
	if !steady {
		switch {
		case p.Warmup > 0:
			return nil, fmt.Errorf("its first %s (the warm-up) were not measured: the workload's start-up calls would be denied; measure with --warmup 0, or pass --steady-state", p.Warmup.Round(time.Millisecond))
		case p.Workload == nil && !emptyStart:
			return nil, errors.New("it scored an existing cgroup, whose tasks' start-up hapscope cannot vouch for: measure with hapscope run --warmup 0; or, if the cgroup was empty when the window opened (a container started into it), pass --empty-start; or pass --steady-state")
		}
	}
	return seccomp.Syscalls(p)
}
