package cgroupv2

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startIn starts argv inside cgroup dir and returns a channel that
// receives its exit.
func startIn(t *testing.T, dir string, argv ...string) <-chan error {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	c := exec.Command(argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := c.Start(); err != nil {
		t.Fatalf("start %v in %s: %v", argv, dir, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	return done
}

// TestRemove fills a cgroup subtree with processes, one of them forking
// new ones all the time, and checks that both kill paths empty and remove
// the whole subtree.
func TestRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups and moves processes into them")
	}
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		useKill bool
	}{{"cgroup.kill", true}, {"SIGKILL each pid", false}} {
		t.Run(c.name, func(t *testing.T) {
			if c.useKill {
				if _, err := os.Stat(filepath.Join(root, "cgroup.kill")); err == nil {
					t.Fatal("the root cgroup has cgroup.kill: Root() is not the hierarchy's root")
				}
			}
			dir, err := os.MkdirTemp(root, "hapscope-cgroupv2-test-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { remove(dir, true, 10*time.Second) })
			deep := filepath.Join(dir, "a", "b")
			if err := os.MkdirAll(deep, 0o755); err != nil {
				t.Fatal(err)
			}
			if c.useKill {
				if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
					t.Fatalf("this kernel has no cgroup.kill (Linux 5.14+): %v", err)
				}
			}
			exits := []<-chan error{
				startIn(t, dir, "sleep", "1000"),
				startIn(t, deep, "sleep", "1000"),
				// Forks a new sleep every 10 ms until killed.
				startIn(t, filepath.Join(dir, "a"), "sh", "-c", "while :; do sleep 1000 & sleep 0.01; done"),
			}
			time.Sleep(200 * time.Millisecond)
			if n := len(procs(filepath.Join(dir, "a"))); n < 3 {
				t.Fatalf("%d processes in %s/a, want the shell and its sleeps", n, dir)
			}
			if err := remove(dir, c.useKill, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("%s still there after remove: %v", dir, err)
			}
			for i, ch := range exits {
				select {
				case err := <-ch:
					if ws, ok := exitStatus(err); !ok || ws.Signal() != syscall.SIGKILL {
						t.Errorf("process %d ended with %v, want SIGKILL", i, err)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("process %d still running after its cgroup was removed", i)
				}
			}
			// Removing what is gone is not an error.
			if err := remove(dir, c.useKill, time.Second); err != nil {
				t.Errorf("second remove: %v", err)
			}
		})
	}
}

func exitStatus(err error) (syscall.WaitStatus, bool) {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ws, ok
}

// TestRemoveRefusesRoot gives Remove a directory shaped like a hierarchy's
// root (cgroup.procs, no cgroup.events) that lists a live process: it must
// refuse, and the process must live on.
func TestRemoveRefusesRoot(t *testing.T) {
	c := exec.Command("sleep", "1000")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = c.Wait(); close(done) }()
	t.Cleanup(func() { c.Process.Kill(); <-done })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, useKill := range []bool{true, false} {
		err := remove(dir, useKill, 100*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "root") {
			t.Errorf("remove(root-like dir, cgroup.kill %v) = %v, want a refusal", useKill, err)
		}
	}
	select {
	case <-done:
		t.Fatalf("the listed process was killed: %v", waitErr)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the root-like dir was removed: %v", err)
	}
}
