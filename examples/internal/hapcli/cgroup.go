package hapcli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hapscope/hapscope/internal/matrix"
)

// cgroup2Magic is CGROUP2_SUPER_MAGIC, statfs's f_type of cgroup2.
const cgroup2Magic = 0x63677270

// CheckCgroup resolves path the way coverage.Tracer.AddScope does (a
// directory under the cgroup v2 mount, or a path relative to its root) and
// checks that it is an existing cgroup v2 directory, so that a typo fails
// before tens of thousands of probes are attached. It returns the directory.
func CheckCgroup(path string) (string, error) {
	root, err := matrix.Cgroup2Root()
	if err != nil {
		return "", fmt.Errorf("cgroup %s: %w", path, err)
	}
	dir := filepath.Clean(path)
	if !strings.HasPrefix(dir+"/", root+"/") {
		dir = filepath.Join(root, path)
	}
	st, err := os.Stat(dir)
	switch {
	case os.IsNotExist(err):
		if dir == filepath.Clean(path) {
			return "", fmt.Errorf("cgroup %s does not exist (the cgroup v2 hierarchy is mounted at %s)", path, root)
		}
		return "", fmt.Errorf("cgroup %s does not exist: it is not under the cgroup v2 mount %s, and %s does not exist either", path, root, dir)
	case err != nil:
		return "", fmt.Errorf("cgroup %s: %w", path, err)
	case !st.IsDir():
		return "", fmt.Errorf("cgroup %s: %s is not a directory", path, dir)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return "", fmt.Errorf("cgroup %s: %w", path, err)
	}
	if sfs.Type != cgroup2Magic {
		return "", fmt.Errorf("cgroup %s: %s is not on a cgroup v2 file system (mounted at %s)", path, dir, root)
	}
	return dir, nil
}
