package coverage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupDir(t *testing.T) {
	own, err := CgroupOf(os.Getpid())
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	root, err := cgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	if dir, err := CgroupDir(own); err != nil || dir != own {
		t.Errorf("CgroupDir(%s) = %q, %v", own, dir, err)
	}
	rel := strings.TrimPrefix(own, root)
	if rel == "" {
		rel = "/"
	}
	if dir, err := CgroupDir(rel); err != nil || dir != own {
		t.Errorf("CgroupDir(%s) (relative to the root) = %q, %v; want %s", rel, dir, err, own)
	}
	_, err = CgroupDir("/hapscope-no-such-cgroup")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), root) {
		t.Errorf("a missing cgroup: %v; want ErrNotExist naming the cgroup v2 mount %s", err, root)
	}
	if _, err := CgroupDir(filepath.Join(own, "cgroup.procs")); err == nil || !strings.Contains(err.Error(), "not a cgroup directory") {
		t.Errorf("a cgroup file: %v; want an error", err)
	}
	if _, err := CgroupDir("/proc"); err == nil {
		t.Error("CgroupDir accepted /proc")
	}
}
