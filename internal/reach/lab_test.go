package reach

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/internal/sysfuzz"
)

// serveEnv makes this test binary a sysfuzz executor serving the driver
// protocol in the work dir it names (TestLabReach's fuzzer).
const serveEnv = "HAPSCOPE_SYSFUZZ_SERVE"

func init() {
	if dir := os.Getenv(serveEnv); dir != "" {
		err := sysfuzz.Serve(&sysfuzz.Executor{Dir: dir}, os.Stdin, os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sysfuzz:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// TestLabReach runs the fuzzer natively in a cgroup of its own under the
// tracer, unguided and guided (twice) for the same budget, and checks the
// loop: every program answered and none refused, growth curves that end at
// the run's function set, a corpus of programs that found functions; and
// that two guided runs of one seed reach nearly the same functions
// (Jaccard ≥ 0.9, the reproducibility the reachable-HAP table needs).
func TestLabReach(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	if labtest.Kernel() != "6.12" {
		// fentry on 6.1 attaches one program per function: the system
		// call entry points say which calls the fuzzer reached.
		cat = cat.Subset(func(f coverage.Function) bool { return strings.HasPrefix(f.Name, "__x64_sys_") })
	}
	t.Logf("catalogue: %d functions", len(cat.Functions))
	tr, err := coverage.Open(ctx, cat, coverage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const budget = 200 // 300 programs: 235 s for the three runs on 6.12
	run := func(name string, guided bool) *Result {
		t.Helper()
		cg := labtest.Cgroup(t, "hap-reach-"+name)
		scope, err := tr.AddScope(cg)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.RemoveScope(scope)
		cmd := labtest.Reexec(t, cg, serveEnv+"="+t.TempDir())
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		res, err := Run(ctx, func() (*coverage.Snapshot, error) { return tr.Snapshot(scope) },
			Fuzzer{In: in, Out: out}, Options{Seed: 1, Programs: budget, Guided: guided, Points: 10})
		in.Close()
		io.Copy(io.Discard, out)
		if werr := cmd.Wait(); werr != nil || stderr.Len() > 0 {
			t.Errorf("%s: the fuzzer: %v\n%s", name, werr, stderr.String())
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d functions; curve %v; %d calls (%d failed), %d programs refused, corpus %d",
			name, len(res.Snapshot.Hits), res.Curve, res.Calls, res.Errors, res.Refused, len(res.Corpus))
		if res.Refused != 0 {
			t.Errorf("%s: the fuzzer refused %d generated programs", name, res.Refused)
		}
		last := res.Curve[len(res.Curve)-1]
		if last.Programs != budget || last.Functions != len(res.Snapshot.Hits) {
			t.Errorf("%s: the curve ends at %+v, the run at %d programs and %d functions", name, last, budget, len(res.Snapshot.Hits))
		}
		for i := 1; i < len(res.Curve); i++ {
			if res.Curve[i].Functions < res.Curve[i-1].Functions {
				t.Errorf("%s: the curve falls: %v", name, res.Curve)
			}
		}
		if len(res.Corpus) == 0 {
			t.Errorf("%s: no program found a function", name)
		}
		return res
	}
	unguided := run("unguided", false)
	a := run("guided-a", true)
	b := run("guided-b", true)
	j := jaccard(a.Snapshot, b.Snapshot)
	t.Logf("guided %d and %d functions (Jaccard %.3f), unguided %d, for %d programs each",
		len(a.Snapshot.Hits), len(b.Snapshot.Hits), j, len(unguided.Snapshot.Hits), budget)
	if j < 0.9 {
		t.Errorf("two guided runs of seed 1 reached function sets with Jaccard %.3f, want >= 0.9", j)
	}
}

func jaccard(a, b *coverage.Snapshot) float64 {
	in := map[string]bool{}
	for _, h := range a.Hits {
		in[h.Name] = true
	}
	both, union := 0, len(in)
	for _, h := range b.Hits {
		if in[h.Name] {
			both++
		} else {
			union++
		}
	}
	if union == 0 {
		return 1
	}
	return float64(both) / float64(union)
}
