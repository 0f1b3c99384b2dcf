package coverage

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hapscope/hapscope/internal/cgroupv2"
)

// TestCgroupInfoPaths resolves a nested cgroup given as a directory and as
// a path relative to the hierarchy's root, and checks its id and depth
// against the file system.
func TestCgroupInfoPaths(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	root, err := cgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	top, err := os.MkdirTemp(root, "hapscope-coverage-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cgroupv2.Remove(top); err != nil {
			t.Error(err)
		}
	})
	sub := filepath.Join(top, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sub, &st); err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(sub, root) // "/hapscope-coverage-test-…/a/b"
	for _, p := range []string{sub, rel, sub + "/"} {
		dir, id, level, err := cgroupInfo(p)
		if err != nil {
			t.Fatalf("cgroupInfo(%s): %v", p, err)
		}
		if dir != sub || id != st.Ino || level != 3 {
			t.Errorf("cgroupInfo(%s) = %s, id %d, level %d; want %s, id %d, level 3", p, dir, id, level, sub, st.Ino)
		}
	}
	if dir, _, level, err := cgroupInfo(root); err != nil || dir != root || level != 0 {
		t.Errorf("cgroupInfo(root %s) = %s, level %d, %v; want level 0", root, dir, level, err)
	}
	if back, err := cgroupByID(st.Ino); err != nil || back != sub {
		t.Errorf("cgroupByID(%d) = %q, %v; want %s", st.Ino, back, err, sub)
	}
	if _, _, _, err := cgroupInfo(rel + "/missing"); err == nil {
		t.Error("cgroupInfo accepted a cgroup that does not exist")
	}
}
