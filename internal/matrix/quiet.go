package matrix

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// A service that answers is not yet a runtime at rest: runc's and runsc's
// start-up, dockerd's and containerd's work after a container started (Go
// garbage collection: thousands of mm lines), an interpreter's imports
// can still be running. Measured in the window, they would pass for the
// workload's steady state (an idle container under runc scored 2,653
// functions that way: its own start-up). So before the load starts, the
// scope must go quiet: its CPU time (cgroup v2 cpu.stat, kept whether or
// not the cpu controller is on) may grow by at most quietShare of one CPU
// over quietSpan. Start-up under emulation runs at a whole CPU; idle Go
// runtimes (the daemons, runc's launcher) at a percent or two, gVisor's
// idle sentry with its systrap stubs at about 7 %.
var ( // variables for the host tests' fake cgroups
	quietSpan  = 2 * time.Second
	quietShare = 0.10
	quietLimit = 20 * time.Second
)

// cpuUsage reads usage_usec from the cpu.stat of cgroup dir.
func cpuUsage(dir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUUsage(b)
}

// parseCPUUsage returns cpu.stat's usage_usec.
func parseCPUUsage(b []byte) (time.Duration, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if !ok || string(k) != "usage_usec" {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 63)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat: usage_usec %q: %w", v, err)
		}
		if n > math.MaxInt64/uint64(time.Microsecond) {
			return 0, fmt.Errorf("cpu.stat: usage_usec %d is more than %v", n, time.Duration(math.MaxInt64))
		}
		return time.Duration(n) * time.Microsecond, nil
	}
	return 0, fmt.Errorf("cpu.stat has no usage_usec line")
}

// quietness is what waitQuiet saw of a scope's CPU use.
type quietness struct {
	// Share is the scope's CPU time over the last span, in CPUs.
	Share float64
	// Low and High bound the shares over the last bandSpans spans (each
	// read over the span before it): whether a scope that never went
	// quiet was still winding down or swung about a rate of its own.
	Low, High float64
	Waited    time.Duration
	Quiet     bool // Share came to at most the share asked for
}

// bandSpans is how many spans of shares quietness.Low and High cover.
const bandSpans = 3

// waitQuiet waits until a scope whose CPU time usage reads (cpuUsage of a
// cgroup) used at most share of one CPU over the last span, sampling every
// span/8. At limit it stops waiting and returns what it saw, Quiet false:
// the caller says so.
func waitQuiet(ctx context.Context, usage func() (time.Duration, error), span time.Duration, share float64, limit time.Duration) (quietness, error) {
	type sample struct {
		at    time.Time
		usage time.Duration
	}
	type reading struct {
		at    time.Time
		share float64
	}
	start := time.Now()
	var q quietness
	var samples []sample
	var shares []reading
	for {
		u, err := usage()
		if err != nil {
			q.Waited = time.Since(start)
			return q, err
		}
		now := time.Now()
		q.Waited = now.Sub(start)
		samples = append(samples, sample{now, u})
		// The oldest sample at least span old, dropping older ones.
		for len(samples) > 2 && now.Sub(samples[1].at) >= span {
			samples = samples[1:]
		}
		if el := now.Sub(samples[0].at); el >= span {
			q.Share = float64(u-samples[0].usage) / float64(el)
			shares = append(shares, reading{now, q.Share})
			for len(shares) > 1 && now.Sub(shares[0].at) > bandSpans*span {
				shares = shares[1:]
			}
			q.Low, q.High = q.Share, q.Share
			for _, r := range shares {
				q.Low, q.High = min(q.Low, r.share), max(q.High, r.share)
			}
			if q.Share <= share {
				q.Quiet = true
				return q, nil
			}
		}
		if q.Waited >= limit {
			return q, nil
		}
		select {
		case <-ctx.Done():
			q.Waited = time.Since(start)
			return q, ctx.Err()
		case <-time.After(span / 8):
		}
	}
}

// awaitQuiet waits for cgroup dir to go quiet (waitQuiet with the
// package's span, share and limit) and logs a wait worth noting under
// what. When dir never went quiet it returns, as unquiet, the words a
// profile carries about it; the caller measures anyway.
func (e *Env) awaitQuiet(ctx context.Context, dir, what string) (unquiet string, err error) {
	usage := func() (time.Duration, error) { return cpuUsage(dir) }
	q, err := waitQuiet(ctx, usage, quietSpan, quietShare, quietLimit)
	switch {
	case err != nil:
		return "", fmt.Errorf("wait for %s to go quiet: %w", what, err)
	case !q.Quiet:
		unquiet = fmt.Sprintf("not quiet before the load: %.0f %% of a CPU (%.0f–%.0f %% over its last %s) after %s without load (the window may hold start-up)",
			100*q.Share, 100*q.Low, 100*q.High, bandSpans*quietSpan, q.Waited.Round(time.Second))
		e.logf("matrix: %s: %s; measuring anyway", what, unquiet)
	case q.Waited > 3*time.Second:
		e.logf("matrix: %s: quiet (%.1f %% of a CPU) after %s", what, 100*q.Share, q.Waited.Round(100*time.Millisecond))
	}
	return unquiet, nil
}
