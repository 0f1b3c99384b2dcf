package matrix

import (
	"fmt"
	"path/filepath"
	"strings"
)

// gVisor runs a container as two host processes in the container's one
// cgroup: the sentry (runsc's "boot": the sandbox's kernel, with the
// platform's stub processes, which run the application's threads and
// whose system calls the sentry serves) and the gofer (runsc's "gofer":
// the file proxy). splitSandbox gives each its child cgroup of the
// container's (splitProcs), so their host-kernel code is told apart.

// runscRole tells a runsc process's role from its command line (the NUL-
// separated /proc/PID/cmdline): runsc starts the sandbox as
// "runsc-sandbox … boot …" and the gofer as "runsc-gofer … gofer …"; the
// platform's stub processes are forks of the sentry and carry its command
// line. "" for anything else.
func runscRole(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || args[0] == "" {
		return ""
	}
	switch filepath.Base(args[0]) {
	case "runsc-sandbox":
		return "sentry"
	case "runsc-gofer":
		return "gofer"
	}
	if !strings.Contains(filepath.Base(args[0]), "runsc") && filepath.Base(args[0]) != "exe" {
		return ""
	}
	for _, a := range args[1:] {
		switch a {
		case "boot":
			return "sentry"
		case "gofer":
			return "gofer"
		}
	}
	return ""
}

// splitSandbox moves the processes of gVisor container cgroup ctr into
// ctr/sentry, ctr/stubs and ctr/gofer by their role (runscRole; a stub is
// a child of the sentry or of a stub, its command line gone with the
// address space the platform replaced). The sentry must be there; a gofer
// may not be (runsc configurations without one), which the split says.
func splitSandbox(ctr string) (procSplit, func() error, error) {
	s, undo, err := splitProcs(ctr, []string{"sentry", "stubs", "gofer"}, func(p proc) string {
		role := runscRole(p.cmdline)
		if role == "" && (p.parentRole == "sentry" || p.parentRole == "stubs") {
			role = "stubs"
		}
		return role
	})
	if err != nil {
		return s, nil, fmt.Errorf("split the gVisor container: %w", err)
	}
	if len(s.moved["sentry"]) == 0 {
		undo()
		return s, nil, fmt.Errorf("no gVisor sentry (runsc boot) in the container's cgroup %s (%s)", ctr, s)
	}
	return s, undo, nil
}
