package matrix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCPUUsage(t *testing.T) {
	got, err := parseCPUUsage([]byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n"))
	if err != nil || got != 1234567*time.Microsecond {
		t.Errorf("parseCPUUsage = %v, %v; want 1.234567s", got, err)
	}
	for _, bad := range []string{"", "user_usec 5\n", "usage_usec x\n", "usage_usec -1\n", "usage_usec 99999999999999999999\n", "usage_usec 10000000000000000\n"} {
		if _, err := parseCPUUsage([]byte(bad)); err == nil {
			t.Errorf("parseCPUUsage(%q) succeeded", bad)
		}
	}
}

func FuzzParseCPUUsage(f *testing.F) {
	f.Add([]byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n"))
	f.Add([]byte("usage_usec 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseCPUUsage(b)
		if err == nil && d < 0 {
			t.Errorf("negative usage %v from %q", d, b)
		}
	})
}

// A scope busy for a while (a runtime starting) is waited for until its
// CPU use drops; one that stays busy is given up on at the limit, and
// said to be not quiet.
func TestWaitQuiet(t *testing.T) {
	dir := t.TempDir()
	var usage atomic.Int64 // µs
	busy := atomic.Bool{}
	busy.Store(true)
	write := func() { // whole, as the kernel's file reads
		tmp := filepath.Join(dir, "cpu.stat.new")
		os.WriteFile(tmp, fmt.Appendf(nil, "usage_usec %d\nuser_usec 0\n", usage.Load()), 0o644)
		os.Rename(tmp, filepath.Join(dir, "cpu.stat"))
	}
	write()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if busy.Load() {
				usage.Add(5000) // half a CPU
			}
			write()
		}
	}()
	time.AfterFunc(400*time.Millisecond, func() { busy.Store(false) })
	share, waited, ok, err := waitQuiet(context.Background(), dir, 200*time.Millisecond, 0.02, 5*time.Second)
	if err != nil || !ok {
		t.Fatalf("waitQuiet = %v, %v, %v, %v; want quiet", share, waited, ok, err)
	}
	if waited < 400*time.Millisecond || share > 0.02 {
		t.Errorf("quiet after %v at %.3f of a CPU: want after the busy 400 ms, at ≤ 0.02", waited, share)
	}

	busy.Store(true)
	share, waited, ok, err = waitQuiet(context.Background(), dir, 100*time.Millisecond, 0.02, 500*time.Millisecond)
	if err != nil || ok || share < 0.1 || waited < 500*time.Millisecond {
		t.Errorf("busy scope: waitQuiet = %.3f, %v, %v, %v; want not quiet at about 0.5 after the 500 ms limit", share, waited, ok, err)
	}

	if _, _, _, err := waitQuiet(context.Background(), filepath.Join(dir, "gone"), time.Second, 0.02, time.Second); err == nil {
		t.Error("waitQuiet on a missing cgroup succeeded")
	}
}
