package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/symbolize"
)

func init() {
	register("doctor", "say what this kernel allows hapscope to measure, and what to do about each no", cmdDoctor)
}

// cmdDoctor exits 0 when at least one exact backend works here, 1 when none
// does (each reason printed), 2 on a usage error.
func cmdDoctor(args []string) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	quiet := fs.Bool("q", false, "print nothing; only the exit status says whether this kernel can be traced")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope doctor [-q]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fs.Usage()
		return 2
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
	usable := 0
	if err != nil {
		say(false, "catalogue", err.Error())
	} else {
		say(true, "catalogue", strings.ReplaceAll(cat.String(), "\n", "\n                   "))
		for _, p := range coverage.ProbeBackends(cat) {
			if p.Err == nil {
				usable++
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
	if usable == 0 {
		fmt.Fprintln(out, "\nThis kernel cannot be traced exactly; hapscope's lab boots a traceable Debian kernel under QEMU: make demo, make lab-test.")
		return 1
	}
	return 0
}
