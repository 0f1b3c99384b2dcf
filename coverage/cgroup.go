package coverage

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hapscope/hapscope/internal/cgroupv2"
)

// cgroupRoot returns where the cgroup v2 hierarchy's root is mounted.
func cgroupRoot() (string, error) { return cgroupv2.Root() }

// CgroupOf returns the cgroup v2 directory of process pid, for AddScope.
func CgroupOf(pid int) (string, error) {
	text, err := readSmall("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	p, ok, err := parseProcCgroup(text)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	if !ok {
		return "", fmt.Errorf("cgroup of pid %d: the process is in no cgroup v2 hierarchy (v1-only system?)", pid)
	}
	root, err := cgroupRoot()
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return filepath.Join(root, p), nil
}

// cgroupInfo resolves a cgroup v2 directory, or a path relative to the
// cgroup2 root ("/a/b" when that is not a directory itself), to its id and
// depth.
func cgroupInfo(path string) (dir string, id uint64, level int, err error) {
	root, err := cgroupRoot()
	if err != nil {
		return "", 0, 0, err
	}
	dir = filepath.Clean(path)
	if !strings.HasPrefix(dir+"/", root+"/") {
		dir = filepath.Join(root, path)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return "", 0, 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return "", 0, 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	const cgroup2Magic = 0x63677270
	if sfs.Type != cgroup2Magic {
		return "", 0, 0, fmt.Errorf("cgroup %s: %s is not on a cgroup2 file system", path, dir)
	}
	rel, _ := filepath.Rel(root, dir)
	if rel != "." {
		level = strings.Count(rel, "/") + 1
	}
	return dir, st.Ino, level, nil
}

// cgroupByID finds the directory of the cgroup v2 with the given id.
func cgroupByID(id uint64) (string, error) {
	root, err := cgroupRoot()
	if err != nil {
		return "", err
	}
	found := ""
	errFound := errors.New("found")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Ino == id {
			found = p
			return errFound
		}
		return nil
	})
	if found == "" {
		if err != nil && err != errFound {
			return "", err
		}
		return "", fmt.Errorf("no cgroup v2 with id %d under %s", id, root)
	}
	return found, nil
}
