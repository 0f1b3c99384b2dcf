package matrix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A cgroup is already a scope of the tracer, so telling apart the host
// processes that share one (gVisor's sentry and gofer in the container's,
// Docker's daemons in the cell's runtime cgroup) needs no per-process
// dimension in the BPF counter and no per-hit lookup: the matrix moves
// each process into a child cgroup named after its role, and scores each
// child as a part of the cell. The parent, a subtree, stays their union.
// Processes forked later start in their parent's child cgroup.

// proc is what splitProcs knows of a process when it asks for its role.
type proc struct {
	comm       string
	cmdline    []byte // NUL-separated, as /proc/PID/cmdline
	parentRole string // the role of its parent, "" when not moved
}

// procSplit is where the processes of a cgroup went.
type procSplit struct {
	dir   string
	roles []string            // the child cgroups, in order
	moved map[string][]string // role → "pid comm" moved there
	other []string            // "pid comm" left in dir
}

// parts returns the child cgroups that got a process, by role.
func (s procSplit) parts() map[string]string {
	p := map[string]string{}
	for role, procs := range s.moved {
		if len(procs) > 0 {
			p[role] = filepath.Join(s.dir, role)
		}
	}
	return p
}

// String lists the processes of each role, and those left in the parent.
func (s procSplit) String() string {
	list := func(x []string) string {
		if len(x) == 0 {
			return "none"
		}
		return strings.Join(x, ", ")
	}
	var b strings.Builder
	for _, r := range s.roles {
		fmt.Fprintf(&b, "%s %s; ", r, list(s.moved[r]))
	}
	fmt.Fprintf(&b, "left in %s: %s", filepath.Base(s.dir), list(s.other))
	return b.String()
}

// splitProcs moves the processes of cgroup dir into dir/ROLE for each of
// roles, by role(p) ("" leaves a process in dir). It passes over dir until
// a pass moves nothing new: a process forked by one not yet moved starts
// where its parent was. Child cgroups that got no process are removed.
// undo moves the processes back and removes the child cgroups (a runtime
// removes only the cgroups it made).
func splitProcs(dir string, roles []string, role func(p proc) string) (procSplit, func() error, error) {
	s := procSplit{dir: dir, roles: roles, moved: map[string][]string{}}
	undo := func() error {
		var errs []error
		for _, r := range roles {
			d := filepath.Join(dir, r)
			if _, err := os.Stat(d); err != nil {
				continue
			}
			if err := moveProcs(d, dir); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := os.Remove(d); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (procSplit, func() error, error) {
		undo()
		return s, nil, err
	}
	for _, r := range roles {
		if err := os.Mkdir(filepath.Join(dir, r), 0o755); err != nil && !os.IsExist(err) {
			return fail(err)
		}
	}
	moved := map[string]string{} // pid → role
	for range 6 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return fail(err)
		}
		s.other = s.other[:0]
		again := false
		for _, pid := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			p := proc{comm: strings.TrimSpace(string(comm)), cmdline: cmdline}
			_, parent, _ := procStat(pid)
			p.parentRole = moved[parent]
			who := pid + " " + p.comm
			r := role(p)
			if r == "" {
				if !zombie(pid) {
					s.other = append(s.other, who)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, r, "cgroup.procs"), []byte(pid), 0o644); err != nil {
				if zombie(pid) {
					continue
				}
				return fail(fmt.Errorf("move %s (pid %s) into %s: %w", r, pid, filepath.Join(dir, r), err))
			}
			if moved[pid] == "" {
				moved[pid] = r
				s.moved[r] = append(s.moved[r], who)
				again = true
			}
		}
		if !again {
			break
		}
	}
	for _, r := range roles {
		if len(s.moved[r]) == 0 {
			os.Remove(filepath.Join(dir, r))
		}
	}
	return s, undo, nil
}

// daemonRoles are the parts of a Docker cell's runtime cgroup: each daemon
// the runtime keeps running for a container.
var daemonRoles = []string{"dockerd", "containerd", "shim", "proxy"}

// daemonRole tells a Docker runtime process's role (daemonRoles) from its
// comm: dockerd, containerd, a containerd-shim-* (runc's or runsc's; comm
// holds its first 15 bytes), docker-proxy (the userland proxy of a
// published port); anything else takes its parent's role.
func daemonRole(p proc) string {
	switch {
	case p.comm == "dockerd":
		return "dockerd"
	case p.comm == "containerd":
		return "containerd"
	case strings.HasPrefix(p.comm, "containerd-shim"):
		return "shim"
	case p.comm == "docker-proxy":
		return "proxy"
	}
	return p.parentRole
}

// splitDaemons moves the processes of a Docker cell's runtime cgroup into
// dir/dockerd, dir/containerd, dir/shim and dir/proxy (daemonRole). The
// runtime's part is what varies most between a Docker cell's runs (2–16 k
// lines: Go's garbage collection and thread creation in some windows
// only); the split says in which daemon.
func splitDaemons(dir string) (procSplit, func() error, error) {
	s, undo, err := splitProcs(dir, daemonRoles, daemonRole)
	if err != nil {
		return s, nil, fmt.Errorf("split the Docker daemons: %w", err)
	}
	return s, undo, nil
}
