package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/symbolize"
)

func init() {
	register("doctor", "say what this kernel allows hapscope to measure, and what to do about each no", cmdDoctor)
}

// exitUnprivileged is doctor's exit status when it lacks the privileges to
// find out whether the kernel can be traced.
const exitUnprivileged = 4

// Capabilities hapscope's tracer needs when not root (bits of CapEff).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// cmdDoctor exits 0 when at least one exact backend works here, 1 when none
// does (each reason printed), 4 when it cannot tell because it lacks the
// privileges to try, 2 on a usage error.
func cmdDoctor(args []string) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	quiet := fs.Bool("q", false, "print nothing; only the exit status says whether this kernel can be traced")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope doctor [-q]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	out := os.Stdout
	if *quiet {
		out, _ = os.Open(os.DevNull)
	}
	say := func(ok bool, what, detail string) {
		mark := "ok "
		if !ok {
			mark = "NO "
		}
		fmt.Fprintf(out, "%s %-14s %s\n", mark, what, detail)
	}
	euid, caps := os.Geteuid(), effectiveCaps()
	privileged := privileged(euid, caps)
	if privileged {
		say(true, "privileges", fmt.Sprintf("euid %d", euid))
	} else {
		say(false, "privileges", fmt.Sprintf("euid %d without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: the checks below cannot succeed", euid))
	}
	k, err := symbolize.RunningKernel()
	if err != nil {
		say(false, "kernel", err.Error())
	} else {
		say(true, "kernel", fmt.Sprintf("%s, build-id %s", k.Release, k.BuildID))
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		say(false, "BTF", "/sys/kernel/btf/vmlinux missing: fentry needs a kernel built with CONFIG_DEBUG_INFO_BTF")
	} else {
		say(true, "BTF", "/sys/kernel/btf/vmlinux")
	}
	cat, err := coverage.LoadCatalogue()
	var probes []coverage.Probe
	if err != nil {
		say(false, "catalogue", err.Error())
	} else {
		say(true, "catalogue", strings.ReplaceAll(cat.String(), "\n", "\n                   "))
		probes = coverage.ProbeBackends(cat)
		for _, p := range probes {
			if p.Err == nil {
				say(true, string(p.Backend), "works")
			} else {
				say(false, string(p.Backend), p.Err.Error())
			}
		}
	}
	if path, _ := symbolize.DebugInfoPath(k.Release); path != "" {
		say(true, "debug info", path)
	} else if os.Getenv("DEBUGINFOD_URLS") != "" {
		say(true, "debug info", "none on disk; will ask debuginfod ("+os.Getenv("DEBUGINFOD_URLS")+") by build-id")
	} else {
		say(false, "debug info", fmt.Sprintf("no vmlinux with DWARF for %s: install the distro's debug package (Debian: linux-image-%s-dbg), pass --vmlinux, set DEBUGINFOD_URLS, or score with --estimate", k.Release, k.Release))
	}
	code, verdict := doctorVerdict(privileged, probes)
	if verdict != "" {
		fmt.Fprintln(out, "\n"+verdict)
	}
	return code
}

// doctorVerdict is doctor's conclusion from the backend probes: exit 0
// when one works; exitUnprivileged when none does and the cause may be the
// caller's privileges (not privileged, or a probe refused with
// coverage.ErrPermission), since then nothing is known about the kernel; 1
// when the kernel refused them all.
func doctorVerdict(privileged bool, probes []coverage.Probe) (code int, verdict string) {
	denied := !privileged
	for _, p := range probes {
		if p.Err == nil {
			return 0, ""
		}
		if errors.Is(p.Err, coverage.ErrPermission) {
			denied = true
		}
	}
	if denied {
		return exitUnprivileged, "Run as root (or with CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN): hapscope cannot tell whether this kernel can be traced."
	}
	return exitFailed, "This kernel cannot be traced exactly; hapscope's lab boots a traceable Debian kernel under QEMU: make demo, make lab-test."
}

// privileged reports whether a process with this effective uid and these
// effective capabilities may load and attach hapscope's tracer.
func privileged(euid int, capEff uint64) bool {
	const need = 1<<capSysAdmin | 1<<capPerfmon | 1<<capBPF
	return euid == 0 || capEff&need == need
}

// effectiveCaps returns the CapEff mask of this process (0 if unreadable).
func effectiveCaps() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return parseCapEff(string(data))
}

// parseCapEff reads the CapEff line of a /proc/PID/status text; 0 when it
// has none or it is malformed (no capability is assumed).
func parseCapEff(status string) uint64 {
	for _, line := range strings.Split(status, "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				return 0
			}
			return v
		}
	}
	return 0
}
