package matrix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// gVisor runs a container as two host processes in the container's one
// cgroup: the sentry (runsc's "boot": the sandbox's kernel, with the
// platform's stub processes, which run the application's threads and
// whose system calls the sentry serves) and the gofer (runsc's "gofer":
// the file proxy). To tell their host-kernel code apart, the
// matrix moves each into a child cgroup of the container's: a cgroup is
// already a scope of the tracer, so the split needs no per-process
// dimension in the BPF counter (and no per-hit lookup), and the
// container's part, a subtree, stays their union. Processes the sentry
// forks later start in its cgroup.

// sandboxSplit is where a gVisor container's processes went.
type sandboxSplit struct {
	ctr                         string
	sentry, stubs, gofer, other []string // "pid comm"; other: left in ctr
}

// parts returns the cgroups of the split, by part name.
func (s sandboxSplit) parts() map[string]string {
	p := map[string]string{"sentry": filepath.Join(s.ctr, "sentry")}
	if len(s.stubs) > 0 {
		p["stubs"] = filepath.Join(s.ctr, "stubs")
	}
	if len(s.gofer) > 0 {
		p["gofer"] = filepath.Join(s.ctr, "gofer")
	}
	return p
}

func (s sandboxSplit) String() string {
	list := func(x []string) string {
		if len(x) == 0 {
			return "none"
		}
		return strings.Join(x, ", ")
	}
	return fmt.Sprintf("gVisor's processes in cgroups of their own under the container's: sentry %s; platform stubs %s; gofer %s; left in the container's: %s",
		list(s.sentry), list(s.stubs), list(s.gofer), list(s.other))
}

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
// undo moves them back and removes the child cgroups, as runsc removes
// only the container's own cgroup.
func splitSandbox(ctr string) (sandboxSplit, func() error, error) {
	s := sandboxSplit{ctr: ctr}
	dirs := map[string]string{"sentry": filepath.Join(ctr, "sentry"), "stubs": filepath.Join(ctr, "stubs"), "gofer": filepath.Join(ctr, "gofer")}
	undo := func() error {
		var errs []error
		for _, d := range []string{dirs["sentry"], dirs["stubs"], dirs["gofer"]} {
			if _, err := os.Stat(d); err != nil {
				continue
			}
			if err := moveProcs(d, ctr); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := os.Remove(d); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			undo()
			return s, nil, fmt.Errorf("split the gVisor container: %w", err)
		}
	}
	// Until a pass moves nothing new: a process forked by one not yet
	// moved starts where its parent was.
	moved := map[string]string{} // pid → role
	for range 6 {
		b, err := os.ReadFile(filepath.Join(ctr, "cgroup.procs"))
		if err != nil {
			undo()
			return s, nil, fmt.Errorf("split the gVisor container: %w", err)
		}
		s.other = s.other[:0]
		again := false
		for _, pid := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			who := pid + " " + strings.TrimSpace(string(comm))
			role := runscRole(cmdline)
			_, parent, _ := procStat(pid)
			if r := moved[parent]; role == "" && (r == "sentry" || r == "stubs") {
				role = "stubs"
			}
			if role == "" {
				if !zombie(pid) {
					s.other = append(s.other, who)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join(dirs[role], "cgroup.procs"), []byte(pid), 0o644); err != nil {
				if zombie(pid) {
					continue
				}
				undo()
				return s, nil, fmt.Errorf("move gVisor's %s (pid %s) into %s: %w", role, pid, dirs[role], err)
			}
			if moved[pid] == "" {
				moved[pid] = role
				again = true
				switch role {
				case "sentry":
					s.sentry = append(s.sentry, who)
				case "stubs":
					s.stubs = append(s.stubs, who)
				default:
					s.gofer = append(s.gofer, who)
				}
			}
		}
		if !again {
			break
		}
	}
	if len(s.sentry) == 0 {
		undo()
		return s, nil, fmt.Errorf("no gVisor sentry (runsc boot) in the container's cgroup %s (%s)", ctr, s)
	}
	if len(s.gofer) == 0 {
		os.Remove(dirs["gofer"])
	}
	if len(s.stubs) == 0 {
		os.Remove(dirs["stubs"])
	}
	return s, undo, nil
}
