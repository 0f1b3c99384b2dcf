package matrix

import (
	"context"
	"errors"
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
// said to be not quiet. The fake scope's CPU time is a function of the
// clock, read when sampled, so a stalled test goroutine cannot fake a
// quiet spell.
func TestWaitQuiet(t *testing.T) {
	start := time.Now()
	var busyFor atomic.Int64 // ns after start; busy at half a CPU until then
	busyFor.Store(int64(400 * time.Millisecond))
	usage := func() (time.Duration, error) {
		return min(time.Since(start), time.Duration(busyFor.Load())) / 2, nil
	}
	q, err := waitQuiet(context.Background(), usage, 200*time.Millisecond, 0.02, 5*time.Second)
	if err != nil || !q.Quiet {
		t.Fatalf("waitQuiet = %+v, %v; want quiet", q, err)
	}
	if q.Waited < 400*time.Millisecond || q.Share > 0.02 {
		t.Errorf("quiet after %v at %.3f of a CPU: want after the busy 400 ms, at ≤ 0.02", q.Waited, q.Share)
	}

	// Busy at a steady half CPU: not quiet, but steady.
	busyFor.Store(int64(time.Hour))
	q, err = waitQuiet(context.Background(), usage, 100*time.Millisecond, 0.02, 500*time.Millisecond)
	if err != nil || q.Quiet || q.Share < 0.4 || q.Share > 0.6 || q.Waited < 500*time.Millisecond {
		t.Errorf("busy scope: waitQuiet = %+v, %v; want not quiet at 0.5 after the 500 ms limit", q, err)
	}
	if q.High-q.Low > 0.05 {
		t.Errorf("busy scope at a constant half CPU: shares %.3f–%.3f, want a band within 0.05", q.Low, q.High)
	}

	// Winding down from a whole CPU: not quiet, its band wide.
	down := time.Now()
	slowing := func() (time.Duration, error) {
		x := time.Since(down).Seconds() // share 1 - x: from a CPU to none over a second
		return time.Duration((x - x*x/2) * float64(time.Second)), nil
	}
	q, err = waitQuiet(context.Background(), slowing, 100*time.Millisecond, 0.02, 500*time.Millisecond)
	if err != nil || q.Quiet || q.High-q.Low < 0.2 {
		t.Errorf("a start-up winding down: waitQuiet = %+v, %v; want not quiet, its shares falling by ~0.3 over 3 spans", q, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if q, err := waitQuiet(ctx, usage, 100*time.Millisecond, 0.02, time.Second); q.Quiet || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: waitQuiet = %+v, %v; want context.Canceled", q, err)
	}

	gone := func() (time.Duration, error) { return cpuUsage(filepath.Join(t.TempDir(), "gone")) }
	if _, err := waitQuiet(context.Background(), gone, time.Second, 0.02, time.Second); err == nil {
		t.Error("waitQuiet on a missing cgroup succeeded")
	}
}
