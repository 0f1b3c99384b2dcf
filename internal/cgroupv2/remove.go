package cgroupv2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Remove kills every process in cgroup dir and its descendants and removes
// them, deepest first. It writes "1" to dir's cgroup.kill (Linux 5.14+),
// which SIGKILLs the whole subtree at once, processes forked meanwhile
// included; where that file is missing (older kernels) or cannot be
// written, it sends SIGKILL to every pid in each cgroup's cgroup.procs
// instead. Killed processes take a moment to exit, so it retries for up to
// ten seconds and then says what is left. A dir that does not exist is
// not an error; the hierarchy's root is refused.
func Remove(dir string) error {
	return remove(dir, true, 10*time.Second)
}

// remove is Remove; useKill false skips cgroup.kill (the pre-5.14 path).
func remove(dir string, useKill bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var killErr error
	for {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if isRoot(dir) {
			return fmt.Errorf("remove cgroup %s: it is the cgroup v2 hierarchy's root (it has cgroup.procs but no cgroup.events); refusing to kill every process on the machine", dir)
		}
		var dirs []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		killed := false
		if useKill {
			killErr = writeExisting(filepath.Join(dir, "cgroup.kill"), "1")
			killed = killErr == nil
		}
		if !killed {
			for _, d := range dirs {
				for _, pid := range procs(d) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		var rmErr error
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				rmErr = err
			}
		}
		if rmErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			left := 0
			for _, d := range dirs {
				left += len(procs(d))
			}
			how := "cgroup.kill"
			if !killed {
				how = "SIGKILL to each pid in cgroup.procs"
				if killErr != nil {
					how += fmt.Sprintf(" (cgroup.kill: %v)", killErr)
				}
			}
			return fmt.Errorf("remove cgroup %s: %d processes still in it after %s for %v: %w; kill them and rmdir the directories by hand, deepest first", dir, left, how, timeout, rmErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeExisting writes s to the existing file path (never creates it).
func writeExisting(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isRoot reports whether dir looks like the root of a cgroup v2
// hierarchy: every cgroup has cgroup.procs, and all but the root have
// cgroup.events.
func isRoot(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "cgroup.events"))
	return errors.Is(err, fs.ErrNotExist)
}

// procs lists the pids in cgroup dir's cgroup.procs (none if unreadable).
func procs(dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
