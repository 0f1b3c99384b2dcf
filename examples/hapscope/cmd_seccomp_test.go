package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/seccomp"
	"github.com/hapscope/hapscope/symbolize"
)

// originProfile writes a profile of functions entered from origins to a
// file and returns its path.
func originProfile(t *testing.T, meta hap.Meta, origins ...map[string]uint64) string {
	t.Helper()
	var funcs []hap.Func
	for i, o := range origins {
		funcs = append(funcs, hap.Func{Name: "f" + string(rune('a'+i)), File: "fs/x.c",
			Own: []symbolize.Line{{File: "fs/x.c", Line: i + 1}}, Origins: o})
	}
	p := hap.New(meta, funcs, hap.Options{})
	path := filepath.Join(t.TempDir(), "p.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteJSON(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSeccompCommand(t *testing.T) {
	run := hap.Meta{Label: "w", Window: time.Second, Workload: &hap.Workload{Command: []string{"w"}}}
	good := originProfile(t, run,
		map[string]uint64{"read": 3, "page fault": 1},
		map[string]uint64{"write": 1, "clone3": 1},
		map[string]uint64{"io_uring worker": 2})
	r := cli(t, "seccomp", good)
	if r.code != 0 {
		t.Fatalf("hapscope seccomp: exit %d, stderr %q", r.code, r.stderr)
	}
	p, err := seccomp.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("output is not a seccomp profile: %v\n%s", err, r.stdout)
	}
	var allowed []string
	for _, name := range []string{"read", "write", "clone", "clone3", "mmap", "openat"} {
		if p.Verdict(name) == seccomp.Allowed {
			allowed = append(allowed, name)
		}
	}
	if want := []string{"read", "write", "clone"}; !slices.Equal(allowed, want) {
		t.Errorf("allowed %v, want %v", allowed, want)
	}
	if !strings.Contains(r.stderr, "clone3 was used") || !strings.Contains(r.stderr, "3 system calls allowed") {
		t.Errorf("stderr %q: want the clone3 note and the count", r.stderr)
	}
	out := filepath.Join(t.TempDir(), "s.json")
	if r := cli(t, "seccomp", "-o", out, good); r.code != 0 || r.stdout != "" {
		t.Errorf("seccomp -o: exit %d, stdout %q", r.code, r.stdout)
	} else if b, err := os.ReadFile(out); err != nil || string(b) != cli(t, "seccomp", good).stdout {
		t.Errorf("seccomp -o wrote %q (%v), not what stdout gets", b, err)
	}

	warm := run
	warm.Warmup = 5 * time.Second
	scored := run
	scored.Workload = nil
	dropped := run
	dropped.OriginsDropped = 7
	for _, tc := range []struct {
		name string
		path string
		args []string
		code int
		want string
	}{
		{"no origins", originProfile(t, run, nil), nil, 1, "--syscalls"},
		{"warm-up", originProfile(t, warm, map[string]uint64{"read": 1}), nil, 1, "first 5s (the warm-up) were not measured"},
		{"warm-up accepted", originProfile(t, warm, map[string]uint64{"read": 1}), []string{"--steady-state"}, 0, "1 system calls allowed"},
		{"existing cgroup", originProfile(t, scored, map[string]uint64{"read": 1}), nil, 1, "--empty-start"},
		{"empty at start", originProfile(t, scored, map[string]uint64{"read": 1}), []string{"--empty-start"}, 0, "1 system calls allowed"},
		{"origins lost", originProfile(t, dropped, map[string]uint64{"read": 1}), []string{"--steady-state"}, 1, "7 calls were not recorded"},
		{"only faults", originProfile(t, run, map[string]uint64{"page fault": 1}), nil, 1, "no system calls to allow"},
	} {
		r := cli(t, append(append([]string{"seccomp"}, tc.args...), tc.path)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, r.code, r.stderr, tc.code, tc.want)
		}
	}
	if r := cli(t, "seccomp"); r.code != exitUsage {
		t.Errorf("seccomp without a profile: exit %d, want %d", r.code, exitUsage)
	}
}
