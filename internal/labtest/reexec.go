package labtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Cgroup makes the cgroup v2 directory /sys/fs/cgroup/name for the test
// and removes it when the test ends, once its processes are gone (the test
// stops them in its own cleanups, which run first).
func Cgroup(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("cgroup %s still has processes", dir)
	})
	return dir
}

// Reexec returns a command that runs this test binary again, in cgroup
// dir cg, with env added: a test's fixture, which the binary's init runs
// instead of the tests when it finds its variable in env. Start it before
// the test ends.
func Reexec(t testing.TB, cg string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(cg, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd
}
