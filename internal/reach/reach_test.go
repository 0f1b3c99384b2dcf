package reach

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/sysfuzz"
)

// fake is a fuzzer that runs nothing: it answers each program as the
// protocol says and records the programs; coverage grows by one function
// for each program for which grows says so.
type fake struct {
	programs []string
	hits     []coverage.Hit
	grows    func(i int, text string) bool
	answer   func(i int) string // the line for program i; nil: "done i 3 1"
}

// start returns the fuzzer's ends and a snapshot function.
func (fk *fake) start(t *testing.T) (Fuzzer, func() (*coverage.Snapshot, error)) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() {
		defer outW.Close()
		sc := bufio.NewScanner(inR)
		sc.Buffer(nil, 1<<20)
		var prog strings.Builder
		for sc.Scan() {
			if sc.Text() != "" {
				prog.WriteString(sc.Text() + "\n")
				continue
			}
			i := len(fk.programs)
			fk.programs = append(fk.programs, prog.String())
			if fk.grows(i, prog.String()) {
				fk.hits = append(fk.hits, coverage.Hit{Function: coverage.Function{Name: fmt.Sprint("f", i)}, Count: 1})
			}
			prog.Reset()
			line := fmt.Sprintf("done %d 3 1", i)
			if fk.answer != nil {
				line = fk.answer(i)
			}
			if line == "" {
				return // the fuzzer died
			}
			fmt.Fprintln(outW, line)
		}
	}()
	t.Cleanup(func() { inW.Close(); inR.Close() })
	return Fuzzer{In: inW, Out: outR}, func() (*coverage.Snapshot, error) {
		return &coverage.Snapshot{Hits: slices.Clone(fk.hits)}, nil
	}
}

// Unguided, the programs are sysfuzz's Stream for the seed, and nothing
// about coverage changes them; guided, programs that found new functions
// make the corpus and the curve follows the snapshot.
func TestRun(t *testing.T) {
	ctx := context.Background()
	fk := &fake{grows: func(i int, _ string) bool { return i%10 == 0 }}
	f, snap := fk.start(t)
	res, err := Run(ctx, snap, f, Options{Seed: 7, Programs: 50, Points: 5})
	if err != nil {
		t.Fatal(err)
	}
	s := sysfuzz.NewStream(7, sysfuzz.DefaultCalls)
	for i, got := range fk.programs {
		if want := s.Next().String(); got != want {
			t.Fatalf("unguided program %d:\n%s\nwant sysfuzz's stream:\n%s", i, got, want)
		}
	}
	if len(fk.programs) != 50 || res.Calls != 150 || res.Errors != 50 || res.Refused != 0 {
		t.Errorf("%d programs, %d calls, %d errors, %d refused", len(fk.programs), res.Calls, res.Errors, res.Refused)
	}
	wantCurve := []Point{{10, 1}, {20, 2}, {30, 3}, {40, 4}, {50, 5}}
	if !slices.Equal(res.Curve, wantCurve) {
		t.Errorf("curve %v, want %v", res.Curve, wantCurve)
	}
	if len(res.Corpus) != 5 || res.Corpus[1] != fk.programs[10] || len(res.Snapshot.Hits) != 5 {
		t.Errorf("corpus %d programs (second %q), snapshot %d functions", len(res.Corpus), res.Corpus[1], len(res.Snapshot.Hits))
	}

	// Guided: mutations of the corpus appear; with no new function ever,
	// nothing is mutated, and the stream is the seed's fresh programs.
	guided := func(grows func(int, string) bool) []string {
		fk := &fake{grows: grows}
		f, snap := fk.start(t)
		if _, err := Run(ctx, snap, f, Options{Seed: 7, Programs: 60, Guided: true}); err != nil {
			t.Fatal(err)
		}
		return fk.programs
	}
	never := guided(func(int, string) bool { return false })
	r := sysfuzz.NewRand(7)
	for i, got := range never {
		if want := sysfuzz.Generate(r, sysfuzz.DefaultCalls).String(); got != want {
			t.Fatalf("guided program %d without feedback is not the seed's fresh program", i)
		}
	}
	first := guided(func(i int, _ string) bool { return i == 0 })
	if slices.Equal(first, never) {
		t.Error("a program that found a new function changed nothing in the guided stream")
	}
	if again := guided(func(i int, _ string) bool { return i == 0 }); !slices.Equal(again, first) {
		t.Error("the guided stream differs between two runs with the same seed and feedback")
	}
}

func TestRunFailures(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		answer func(int) string
		opt    Options
		want   string
	}{
		"refused":   {answer: func(i int) string { return fmt.Sprintf("done %d 0 -1", i) }, want: ""},
		"lost":      {answer: func(i int) string { return fmt.Sprintf("done %d 3 0", i+1) }, want: "answered as 1"},
		"garbage":   {answer: func(int) string { return "panic: oops" }, want: "not a protocol line"},
		"died":      {answer: func(int) string { return "" }, want: "output ended"},
		"wedged":    {answer: func(int) string { time.Sleep(time.Second); return "done 0 1 0" }, opt: Options{Timeout: 50 * time.Millisecond}, want: "no answer in 50ms"},
		"no budget": {opt: Options{Programs: -1}, want: "budget"},
	} {
		t.Run(name, func(t *testing.T) {
			fk := &fake{grows: func(int, string) bool { return false }, answer: tc.answer}
			f, snap := fk.start(t)
			opt := tc.opt
			if opt.Programs == 0 {
				opt.Programs = 3
			}
			res, err := Run(ctx, snap, f, opt)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "":
				if res.Refused != 3 || res.Calls != 0 {
					t.Errorf("refused %d, calls %d; want 3 refused, no calls", res.Refused, res.Calls)
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestParseAnswer(t *testing.T) {
	for line, want := range map[string]answer{
		"done 0 20 3":  {0, 20, 3, nil},
		"done 7 0 -1":  {7, 0, -1, nil},
		"done 1 2 3":   {err: errSentinel},
		"done -1 2 0":  {err: errSentinel},
		"done 1 2":     {err: errSentinel},
		"ready 1 2 3":  {err: errSentinel},
		"done x 2 3":   {err: errSentinel},
		"done 1 2 -2":  {err: errSentinel},
		"  done 3 4 0": {3, 4, 0, nil},
	} {
		got := parseAnswer(line)
		if (got.err != nil) != (want.err != nil) || (want.err == nil && got != want) {
			t.Errorf("parseAnswer(%q) = %+v, want %+v", line, got, want)
		}
	}
}

var errSentinel = fmt.Errorf("any error")

func FuzzParseAnswer(f *testing.F) {
	f.Add("done 0 20 3")
	f.Add("done 7 0 -1")
	f.Fuzz(func(t *testing.T, line string) {
		a := parseAnswer(line)
		if a.err == nil && (a.id < 0 || a.calls < 0 || a.errors < -1 || a.errors > a.calls) {
			t.Errorf("parseAnswer(%q) = %+v, out of range", line, a)
		}
	})
}

// Options.Before sees each program before the fuzzer does, and its error
// ends the run before that program is sent.
func TestRunBefore(t *testing.T) {
	fk := &fake{grows: func(int, string) bool { return false }}
	f, snap := fk.start(t)
	var before []string
	stop := errors.New("the log is full")
	_, err := Run(context.Background(), snap, f, Options{Seed: 3, Programs: 10, Before: func(i int, text string) error {
		if len(fk.programs) != i {
			t.Errorf("Before(%d) after the fuzzer got %d programs", i, len(fk.programs))
		}
		if i == 6 {
			return stop
		}
		before = append(before, text)
		return nil
	}})
	if !errors.Is(err, stop) {
		t.Errorf("Run = %v, want Before's error", err)
	}
	if len(fk.programs) != 6 || !slices.Equal(before, fk.programs) {
		t.Errorf("the fuzzer got %d programs, Before saw %d (same: %v)", len(fk.programs), len(before), slices.Equal(before, fk.programs))
	}
}
