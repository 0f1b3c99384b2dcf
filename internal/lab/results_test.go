package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fixtureEnv makes the TestOutputFixture* tests run; they exist to be run,
// in a child process, by the tests below.
const fixtureEnv = "HAPSCOPE_LAB_OUTPUT_FIXTURE"

func requireFixture(t *testing.T) {
	if os.Getenv(fixtureEnv) == "" {
		t.Skip("fixture: runs only as the child of TestParseTestOutputReal and TestRunTestsReportsSkips")
	}
}

func TestOutputFixtureSkip(t *testing.T) {
	requireFixture(t)
	t.Log("an earlier log line")
	// Unmarked text that looks like a status line must not count.
	fmt.Println("--- SKIP: TestForged (0.00s)")
	fmt.Println("--- PASS: TestOutputFixtureSkip (0.00s)")
	t.Skip("kernel lacks kprobe.multi")
}

func TestOutputFixture(t *testing.T) {
	requireFixture(t)
	t.Run("pass", func(t *testing.T) { t.Log("fine") })
	t.Run("skip multi", func(t *testing.T) { t.Skip("needs X:\nsecond line") })
	// a and b wait for each other: run with -test.parallel=2 or more.
	aLogged, bLogged := make(chan struct{}), make(chan struct{})
	t.Run("group", func(t *testing.T) {
		t.Run("a", func(t *testing.T) {
			t.Parallel()
			t.Log("a before b")
			close(aLogged)
			<-bLogged
			t.Skip("a's reason")
		})
		t.Run("b", func(t *testing.T) {
			t.Parallel()
			<-aLogged
			t.Log("b between a's lines")
			close(bLogged)
		})
	})
}

func TestOutputFixtureFail(t *testing.T) {
	requireFixture(t)
	if os.Getenv(fixtureEnv) != "fail" {
		return
	}
	t.Error("boom")
}

// wantFixture is what the fixtures report (ignoring elapsed times).
var wantFixture = []TestOutcome{
	{Package: "p", Name: "TestOutputFixtureSkip", Action: "skip", Message: "kernel lacks kprobe.multi"},
	{Package: "p", Name: "TestOutputFixture/pass", Action: "pass", Message: "fine"},
	{Package: "p", Name: "TestOutputFixture/skip_multi", Action: "skip", Message: "needs X:\nsecond line"},
	{Package: "p", Name: "TestOutputFixture/group/b", Action: "pass", Message: "b between a's lines"},
	{Package: "p", Name: "TestOutputFixture/group/a", Action: "skip", Message: "a's reason"},
	{Package: "p", Name: "TestOutputFixture/group", Action: "pass"},
	{Package: "p", Name: "TestOutputFixture", Action: "pass"},
}

// TestParseTestOutputReal parses what this very test binary prints under
// -test.v=test2json for the fixtures: skips with one- and multi-line
// messages, parallel subtests whose lines interleave, a forged status line,
// a failure.
func TestParseTestOutputReal(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutputFixture", "-test.v=test2json", "-test.parallel=4")
	cmd.Env = append(os.Environ(), fixtureEnv+"=fail")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("fixture run: %v (want exit status 1)\n%s", err, out)
	}
	got, err := ParseTestOutput("p", strings.NewReader(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]TestOutcome(nil), wantFixture...), TestOutcome{Package: "p", Name: "TestOutputFixtureFail", Action: "fail", Message: "boom"})
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(TestOutcome{}, "Elapsed")); d != "" {
		t.Fatalf("outcomes (-want +got):\n%s\noutput:\n%s", d, out)
	}
}

func TestParseTestOutput(t *testing.T) {
	const m = "\x16"
	in := strings.Join([]string{
		"lab: kernel 6.1.0 (expected 6.1.0), accel tcg",
		m + "=== RUN   TestLabA",
		"    a_test.go:10: attaching",
		m + "=== RUN   TestLabB",
		m + "=== PAUSE TestLabB",
		m + "=== NAME  TestLabA",
		"    a_test.go:12: needs kprobe.multi\r",
		"        (CONFIG_FPROBE)",
		"--- SKIP: TestLabForged (0.00s)",
		m + "--- SKIP: TestLabA (1.50s)",
		m + "=== CONT  TestLabB",
		"    b_test.go:3: x",
		m + "    --- FAIL: TestLabB/sub_(x) (0.01s)",
		m + "--- PASS: TestLabB (2.00s)",
		m + "=== RUN   BenchmarkLabC",
		"BenchmarkLabC-1   \t     100\t  12 ns/op",
		m + "=== RUN   TestLabD",
		m + "--- SKIP: TestLabD (0.00s)",
		m + "FAIL",
	}, "\n")
	got, err := ParseTestOutput("pkg", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []TestOutcome{
		{Package: "pkg", Name: "TestLabA", Action: "skip", Elapsed: 1500 * time.Millisecond, Message: "needs kprobe.multi\n(CONFIG_FPROBE)"},
		{Package: "pkg", Name: "TestLabB/sub_(x)", Action: "fail", Elapsed: 10 * time.Millisecond},
		{Package: "pkg", Name: "TestLabB", Action: "pass", Elapsed: 2 * time.Second, Message: "x"},
		{Package: "pkg", Name: "TestLabD", Action: "skip"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("outcomes (-want +got):\n%s", d)
	}
	// Without markers (plain -test.v) nothing is taken for a status line.
	if got, _ := ParseTestOutput("pkg", strings.NewReader(strings.ReplaceAll(in, m, ""))); len(got) != 0 {
		t.Fatalf("unmarked output gave outcomes: %+v", got)
	}
}

func FuzzParseTestOutput(f *testing.F) {
	f.Add("\x16=== RUN   TestA\n    a.go:1: x\n\x16--- SKIP: TestA (0.00s)\n")
	f.Add("\x16    --- PASS: TestA/b (1.0s)\n\x16=== NAME\n    x.go:2:\n        y\n")
	f.Add("\x16--- FAIL:  (s)\n\x16--- SKIP: a (1e9s)\n")
	f.Fuzz(func(t *testing.T, in string) {
		outs, err := ParseTestOutput("p", strings.NewReader(in))
		if err != nil {
			return
		}
		for _, o := range outs {
			if o.Name == "" || (o.Action != "pass" && o.Action != "fail" && o.Action != "skip") || o.Elapsed < 0 {
				t.Fatalf("bad outcome %+v from %q", o, in)
			}
			if !strings.Contains(in, "\x16") {
				t.Fatalf("outcome %+v from unmarked input %q", o, in)
			}
		}
	})
}

func TestClassifySkips(t *testing.T) {
	allowed := []AllowedSkip{
		{"TestLabTruth", "6.1", "needs kprobe.multi"},
		{"TestLabX/sub", "6.12", "sub reason"},
	}
	outs := []TestOutcome{
		{Package: "c", Name: "TestLabTruth", Action: "skip", Message: "6.12 only"},
		{Package: "c", Name: "TestLabOther", Action: "skip", Message: "no vmlinux"},
		{Package: "c", Name: "TestLabX/sub", Action: "skip", Message: "m"},
		{Package: "c", Name: "TestLabX/other", Action: "skip"},
		{Package: "c", Name: "TestHostOnly", Action: "skip", Message: "host test"},
		{Package: "c", Name: "TestLabY", Action: "pass"},
	}
	// On 6.1 the truth skip is listed; the same skip on 6.12 is not.
	got := ClassifySkips("6.1", outs, allowed)
	fails := func(ss []Skip) (names []string) {
		for _, s := range ss {
			if s.Fails() {
				names = append(names, s.Test)
			}
		}
		return names
	}
	if d := cmp.Diff([]string{"TestLabOther", "TestLabX/sub", "TestLabX/other"}, fails(got)); d != "" {
		t.Errorf("6.1 failing skips (-want +got):\n%s", d)
	}
	if len(got) != 5 || !got[0].Listed || got[0].Reason != "needs kprobe.multi" || got[4].Lab {
		t.Errorf("6.1 skips: %+v", got)
	}
	got = ClassifySkips("6.12", outs, allowed)
	if d := cmp.Diff([]string{"TestLabTruth", "TestLabOther", "TestLabX/other"}, fails(got)); d != "" {
		t.Errorf("6.12 failing skips (-want +got):\n%s", d)
	}
	for _, s := range got {
		str := s.String()
		if !strings.Contains(str, s.Test) || (s.Message != "" && !strings.Contains(str, s.Message)) ||
			(s.Fails() != strings.Contains(str, "NOT ALLOWED")) {
			t.Errorf("skip line %q does not say the test, its message and whether it is allowed", str)
		}
	}
}

func TestStaleSkipsAndCount(t *testing.T) {
	allowed := []AllowedSkip{{"TestLabA", "6.1", "r"}, {"TestLabB", "6.1", "r"}, {"TestLabC", "6.1", "r"}, {"TestLabA", "6.12", "r"}}
	outs := []TestOutcome{
		{Name: "TestLabA", Action: "pass"},
		{Name: "TestLabA/s", Action: "skip"},
		{Name: "TestLabB", Action: "skip"},
		{Name: "TestLabD", Action: "fail"},
	}
	if d := cmp.Diff([]AllowedSkip{{"TestLabA", "6.1", "r"}}, StaleSkips("6.1", outs, allowed)); d != "" {
		t.Errorf("stale (-want +got):\n%s", d)
	}
	if got, want := Count(outs), (Tally{Ran: 3, Passed: 1, Failed: 1, Skipped: 1}); got != want {
		t.Errorf("Count = %+v, want %+v", got, want)
	}
}

// TestResultFailedOnSkip: a run whose packages all exited 0 fails when a lab
// test skipped without being allowed to, or a listed test reported nothing.
func TestResultFailedOnSkip(t *testing.T) {
	ok := func() *TestResult {
		return &TestResult{Result: &Result{}, Kernel: "6.1", Packages: []PackageResult{{ImportPath: "c"}}}
	}
	r := ok()
	if r.Failed() {
		t.Fatal("clean run failed")
	}
	r.Skips = ClassifySkips("6.1", []TestOutcome{{Name: "TestLabTruth", Action: "skip"}}, []AllowedSkip{{"TestLabTruth", "6.1", "r"}})
	if r.Failed() {
		t.Fatal("a listed skip failed the run")
	}
	r.Skips = ClassifySkips("6.1", []TestOutcome{{Name: "TestLabTruth", Action: "skip"}}, nil)
	if !r.Failed() {
		t.Fatal("an unlisted lab-test skip passed")
	}
	r = ok()
	r.Missing = []string{"c TestLabGone"}
	if !r.Failed() {
		t.Fatal("a test without an outcome passed")
	}
}

// TestAllowedSkipsWellFormed: every entry names a lab test, a lab kernel and
// a reason, once.
func TestAllowedSkipsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range AllowedSkips {
		if _, err := Spec(a.Kernel); err != nil || !isLabTest(a.Test) || len(a.Reason) < 10 || seen[a.Test+"@"+a.Kernel] {
			t.Errorf("bad or repeated entry %+v", a)
		}
		seen[a.Test+"@"+a.Kernel] = true
	}
}
