package coverage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// CgroupDir checks path as AddScope does, without a Tracer: it must name a
// directory of the cgroup v2 hierarchy, given as a path under its mount or
// relative to its root ("/system.slice"). It returns the directory. Callers
// that attach a tracer first (which can take seconds) check the cgroup
// with it beforehand, so that a mistyped path fails at once.
func CgroupDir(path string) (string, error) {
	dir, _, _, err := scopeDir(path)
	return dir, err
}

// scopeDir resolves a scope's cgroup v2 directory to its id and depth.
func scopeDir(path string) (dir string, id uint64, level int, err error) {
	dir, id, level, err = cgroupInfo(path)
	if errors.Is(err, fs.ErrNotExist) {
		where := "under the cgroup v2 mount"
		if root, rerr := cgroupRoot(); rerr == nil {
			where = "under the cgroup v2 mount " + root
		}
		return "", 0, 0, fmt.Errorf("cgroup %s does not exist %s: create it, or pass the cgroup of a running process (see CgroupOf): %w", path, where, err)
	}
	if err != nil {
		return "", 0, 0, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", 0, 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if !fi.IsDir() {
		return "", 0, 0, fmt.Errorf("cgroup %s: %s is a file, not a cgroup directory", path, dir)
	}
	return dir, id, level, nil
}
