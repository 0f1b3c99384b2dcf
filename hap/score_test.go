package hap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/symbolize"
)

// A window never sampled has no snapshot: FromSnapshot says so instead of
// dereferencing nil.
func TestFromSnapshotNil(t *testing.T) {
	ix, err := symbolize.Estimate([]symbolize.Symbol{{Addr: 0x1000, Name: "vfs_read"}, {Addr: 0x1100, Name: "ksys_read"}, {Addr: 0x1200, Name: "_etext"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*symbolize.Index{ix, nil} {
		p, err := func() (p *Profile, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return FromSnapshot(nil, x, symbolize.Kernel{}, Meta{}, Options{})
		}()
		if err == nil || p != nil || strings.HasPrefix(err.Error(), "panic") {
			t.Errorf("FromSnapshot(nil, index %v): %v, %v; want an error", x != nil, p, err)
		}
	}
	// The same index scores a real snapshot.
	snap := &coverage.Snapshot{Mode: coverage.Pruned, Hits: []coverage.Hit{{Function: coverage.Function{Name: "vfs_read", Addr: 0x1000}, Count: 1}}}
	if p, err := FromSnapshot(snap, ix, symbolize.Kernel{}, Meta{}, Options{}); err != nil || len(p.Functions) != 1 {
		t.Errorf("FromSnapshot of one hit: %v, %v", p, err)
	}
}

// The profile says how the tracer probed, so that a reader (and the CLI's
// lab tests) can tell a pruned profile, whose hit counts are 0, from one
// that counted every call.
func TestFromSnapshotProbes(t *testing.T) {
	ix, err := symbolize.Estimate([]symbolize.Symbol{{Addr: 0x1000, Name: "vfs_read"}, {Addr: 0x1100, Name: "_etext"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode coverage.Mode
		hits uint64
	}{{coverage.Pruned, 0}, {coverage.Counts, 7}} {
		snap := &coverage.Snapshot{Mode: tc.mode, Attached: 2, Hits: []coverage.Hit{{Function: coverage.Function{Name: "vfs_read", Addr: 0x1000}, Count: 7}}}
		p, err := FromSnapshot(snap, ix, symbolize.Kernel{}, Meta{}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Attached != 2 {
			t.Errorf("%s: %d functions attached, want the snapshot's 2", tc.mode, p.Attached)
		}
		if p.Probes != string(tc.mode) || p.Functions[0].Hits != tc.hits || !strings.Contains(p.Summary(), string(tc.mode)) {
			t.Errorf("%s: probes %q, hits %d, summary %q; want %q, %d", tc.mode, p.Probes, p.Functions[0].Hits, p.Summary(), tc.mode, tc.hits)
		}
	}
}

// Options that cannot give a window fail before anything is attached
// (--samples -1 reached Converge, whose nil snapshot FromSnapshot took).
func TestNewScorerBadOptions(t *testing.T) {
	for _, o := range []ScoreOptions{{Samples: -1}, {Window: -time.Second}, {Warmup: -time.Second}} {
		o.Coverage.Progress = func(coverage.Progress) { t.Errorf("%+v: the tracer attached", o) }
		s, err := NewScorer(context.Background(), o)
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "want at least 1 sample") {
			t.Errorf("NewScorer(samples %d, window %v, warm-up %v): %v; want an error about the options", o.Samples, o.Window, o.Warmup, err)
		}
	}
}

// Score of a cgroup that does not exist fails at once, naming it, before
// loading debug info or attaching ~38,800 functions.
func TestScoreMissingCgroup(t *testing.T) {
	if _, err := coverage.CgroupOf(os.Getpid()); err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	const cg = "/hapscope-no-such-cgroup"
	start := time.Now()
	_, err := Score(context.Background(), cg, ScoreOptions{
		Coverage: coverage.Options{Progress: func(coverage.Progress) { t.Error("the tracer attached") }},
	})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), cg) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Score(%s): %v; want an error saying the cgroup does not exist", cg, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Score of a missing cgroup took %v before failing", d)
	}
	// A file of the cgroup hierarchy is not a cgroup either.
	own, _ := coverage.CgroupOf(os.Getpid())
	if _, err := Score(context.Background(), filepath.Join(own, "cgroup.procs"), ScoreOptions{}); err == nil || !strings.Contains(err.Error(), "not a cgroup directory") {
		t.Errorf("Score of cgroup.procs: %v", err)
	}
}

func TestEstimateInstead(t *testing.T) {
	noDebug := fmt.Errorf("no vmlinux with debug info for kernel %q: %w", "6.12", symbolize.ErrNoDebugInfo)
	mismatch := fmt.Errorf("vmlinux has build-id 1 but the running kernel has 2: %w", symbolize.ErrBuildIDMismatch)
	for _, c := range []struct {
		err     error
		allowed bool
		want    bool
	}{
		{noDebug, true, true},
		{noDebug, false, false},
		{mismatch, true, false},
		{errors.New("open vmlinux /etc/passwd: bad magic number"), true, false},
		{fmt.Errorf("%w", errors.Join(mismatch, noDebug)), true, true}, // both: none found that fits
	} {
		if got := estimateInstead(c.err, c.allowed); got != c.want {
			t.Errorf("estimateInstead(%v, allowed %v) = %v, want %v", c.err, c.allowed, got, c.want)
		}
	}
}

// --estimate must not turn debug info of another build into estimated
// lines: a vmlinux whose build-id is not the kernel's is an error.
func TestEstimateRefusesMismatchedVmlinux(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc to build an ELF with DWARF and a build-id")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "k.c")
	if err := os.WriteFile(src, []byte("int vfs_read(int x) { return x + 1; }\nint main(void) { return vfs_read(0); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	elf := filepath.Join(dir, "vmlinux")
	if out, err := exec.Command(gcc, "-g", "-O1", "-Wl,--build-id=sha1", "-o", elf, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	opt := ScoreOptions{AllowEstimate: true, Symbolize: symbolize.Options{
		VMLinux:  elf,
		Kernel:   symbolize.Kernel{Release: "6.12.0-test", BuildID: strings.Repeat("ab", 20)},
		CacheDir: filepath.Join(dir, "cache"),
	}}
	ix, _, err := openIndex(context.Background(), opt)
	if err == nil {
		t.Fatalf("a mismatched vmlinux with --estimate gave an index of build-id %q; want an error", ix.BuildID())
	}
	if !strings.Contains(err.Error(), "build-id") {
		t.Errorf("error does not name the build-id mismatch: %v", err)
	}
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-3,5": 5, "0,2,4-5": 4, "": 0, "3-1": 0, "x": 0, "0-": 0, "0-99999999": 0} {
		if got := countCPUList(in); got != want {
			t.Errorf("countCPUList(%q) = %d, want %d", in, got, want)
		}
	}
}

func FuzzCountCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3", "0-3,5", "", "1-0", "0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := countCPUList(s)
		if n < 0 || n > len(s)*(1<<16+1) {
			t.Fatalf("countCPUList(%q) = %d", s, n)
		}
		if n > 0 && countCPUList(s+","+s) != 2*n {
			t.Fatalf("countCPUList(%q) = %d but twice the list counts %d", s, n, countCPUList(s+","+s))
		}
	})
}
