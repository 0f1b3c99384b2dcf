package hapcli

import (
	"bufio"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
)

// TestProgressPipe: on a pipe (not a terminal), each stage is one start
// line and one end line with its count and time, and no carriage return.
func TestProgressPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := NewProgress(w, "hapscope: ")
	if p.tty {
		t.Fatal("a pipe was taken for a terminal")
	}
	clock := time.Unix(0, 0)
	p.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	for _, stage := range []string{"attach", "detach"} {
		for done := 0; done <= 1000; done += 100 {
			p.Coverage(coverage.Progress{Stage: stage, Backend: coverage.KprobeMulti, Done: done, Total: 1000})
		}
	}
	for done := 0; done <= 30; done += 16 {
		p.Index(done, 40)
	}
	p.Index(40, 40)
	// A stage that never finishes is ended by the next one.
	p.Coverage(coverage.Progress{Stage: "attach", Backend: coverage.Fentry, Done: 0, Total: 10})
	p.Coverage(coverage.Progress{Stage: "attach", Backend: coverage.Fentry, Done: 3, Total: 10})
	p.Coverage(coverage.Progress{Stage: "detach", Backend: coverage.Fentry, Done: 3, Total: 3})
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsRune(string(out), '\r') {
		t.Errorf("carriage return in piped progress:\n%q", out)
	}
	var lines []string
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	want := []string{
		"hapscope: attach kprobe.multi: 1000 functions …",
		"hapscope: attach kprobe.multi: 1000 functions in ",
		"hapscope: detach kprobe.multi: 1000 links …",
		"hapscope: detach kprobe.multi: 1000 links in ",
		"hapscope: index DWARF: 40 compile units …",
		"hapscope: index DWARF: 40 compile units in ",
		"hapscope: attach fentry: 10 functions …",
		"hapscope: attach fentry: stopped after 3 of 10 functions, ",
		"hapscope: detach fentry: 3 links in ",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d: %q, want prefix %q", i, lines[i], want[i])
		}
	}
	// The test clock advances a second per reading: start, then end.
	if !strings.HasSuffix(lines[1], "in 1s") {
		t.Errorf("attach end line %q: want the stage's time (1s on the test clock)", lines[1])
	}
}

func TestValidate(t *testing.T) {
	ok := ScoreFlags{Warmup: 0, Window: time.Second, Samples: 100, Backend: "fentry"}
	if err := ok.Validate(); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
	for _, tc := range []struct {
		f    ScoreFlags
		want string
	}{
		{ScoreFlags{Window: time.Second, Samples: -1}, "-samples -1"},
		{ScoreFlags{Window: time.Second, Samples: 0}, "-samples 0"},
		{ScoreFlags{Window: time.Second, Samples: 101}, "at most 100"},
		{ScoreFlags{Window: -time.Second, Samples: 1}, "-window -1s"},
		{ScoreFlags{Warmup: -1, Window: time.Second, Samples: 1}, "-warmup"},
		{ScoreFlags{Window: time.Second, Samples: 1, Backend: "ftrace"}, "kprobe.multi, fentry, kprobe"},
		{ScoreFlags{Window: time.Second, Samples: 1, Density: -0.1}, "-density"},
	} {
		err := tc.f.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.f, err, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f := ScoreFlags{Window: time.Second, Samples: 5}
	f.Register(fs)
	if err := fs.Parse([]string{"-counts", "-interrupts", "-backend", "fentry", "-vmlinux", "/v", "-module-debug", "/m", "-index-cache", "/c", "-estimate", "-q"}); err != nil {
		t.Fatal(err)
	}
	o, err := f.Options()
	if err != nil {
		t.Fatal(err)
	}
	c := o.Coverage
	if !c.Counts || !c.Interrupts || c.Backend != coverage.Fentry || o.Symbolize.VMLinux != "/v" || o.ModuleDebug != "/m" ||
		o.Symbolize.CacheDir != "/c" || !o.AllowEstimate || c.Progress != nil || o.Samples != 5 || o.Window != time.Second {
		t.Errorf("options %+v do not carry the flags", o)
	}
	if f.ProbeMode() != coverage.Counts {
		t.Errorf("ProbeMode = %s with -counts", f.ProbeMode())
	}
	// --syscalls implies counts (pruning would keep only a function's first origin).
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	f = ScoreFlags{}
	f.Register(fs)
	if err := fs.Parse([]string{"-syscalls"}); err != nil {
		t.Fatal(err)
	}
	if o, err := f.Options(); err != nil || !o.Coverage.Attribution || f.ProbeMode() != coverage.Counts {
		t.Errorf("-syscalls: options %+v, %v, probe mode %s", o.Coverage, err, f.ProbeMode())
	}
}
