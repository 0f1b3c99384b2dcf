package lab

import (
	"fmt"
	"strings"
)

// AllowedSkip is a lab test (TestLab*, BenchmarkLab*, or one of their
// subtests by full name) that may skip on one lab kernel, and why. Any other
// lab test that skips in the lab fails the run: a skip is not a pass.
type AllowedSkip struct {
	Test   string // full test name, e.g. "TestLabGroundTruth" or "TestLabX/sub"
	Kernel string // lab kernel name: "6.12" or "6.1"
	Reason string // why the test cannot run there
}

// AllowedSkips lists every skip the lab accepts. Add an entry only for a
// test that cannot mean anything on that kernel (a missing kernel feature),
// never for one that is slow, flaky or broken there.
var AllowedSkips = []AllowedSkip{
	{"TestLabGroundTruth", "6.1",
		"traces one execution with kprobe.multi and ftrace at once; kprobe.multi needs CONFIG_FPROBE, off in 6.1: 6.12 only"},
	{"BenchmarkLabKprobeMultiAttach", "6.1",
		"benchmarks kprobe.multi attach; kprobe.multi needs CONFIG_FPROBE, off in 6.1: 6.12 only"},
	{"BenchmarkLabModuleAttach", "6.1",
		"benchmarks kprobe.multi attach over vmlinux and modules; kprobe.multi needs CONFIG_FPROBE, off in 6.1: 6.12 only"},
	{"BenchmarkLabNetPathThroughput", "6.1",
		"measures the netpath under kprobe.multi over the whole catalogue; kprobe.multi needs CONFIG_FPROBE, off in 6.1: 6.12 only"},
}

// Skip is a test that skipped in the lab.
type Skip struct {
	Kernel, Package, Test string
	Message               string // what the test said when it skipped
	Listed                bool   // on the allowed list for this kernel
	Reason                string // the list's reason, when Listed
	Lab                   bool   // a lab test (TestLab*/BenchmarkLab*): an unlisted skip fails
}

// Fails reports whether the skip fails the run: a lab test that skipped
// without being listed for this kernel.
func (s Skip) Fails() bool { return s.Lab && !s.Listed }

func (s Skip) String() string {
	msg := s.Message
	if msg == "" {
		msg = "(no message)"
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	switch {
	case s.Listed:
		return fmt.Sprintf("SKIP %s %s on %s (allowed: %s); test said: %s", s.Package, s.Test, s.Kernel, s.Reason, msg)
	case s.Lab:
		return fmt.Sprintf("SKIP %s %s on %s NOT ALLOWED (a lab test must run, or be listed in internal/lab AllowedSkips with its reason); test said: %s", s.Package, s.Test, s.Kernel, msg)
	default:
		return fmt.Sprintf("SKIP %s %s on %s (not a lab test); test said: %s", s.Package, s.Test, s.Kernel, msg)
	}
}

// isLabTest reports whether name (a test or subtest) belongs to a lab test.
func isLabTest(name string) bool {
	top, _, _ := strings.Cut(name, "/")
	return strings.HasPrefix(top, "TestLab") || strings.HasPrefix(top, "BenchmarkLab")
}

// ClassifySkips returns the skips among outcomes of a run on kernel, each
// checked against allowed.
func ClassifySkips(kernel string, outcomes []TestOutcome, allowed []AllowedSkip) []Skip {
	var out []Skip
	for _, o := range outcomes {
		if o.Action != "skip" {
			continue
		}
		s := Skip{Kernel: kernel, Package: o.Package, Test: o.Name, Message: o.Message, Lab: isLabTest(o.Name)}
		for _, a := range allowed {
			if a.Test == o.Name && a.Kernel == kernel {
				s.Listed, s.Reason = true, a.Reason
				break
			}
		}
		out = append(out, s)
	}
	return out
}

// StaleSkips returns the allowed skips for kernel whose test ran in
// outcomes and did not skip: entries the list no longer needs.
func StaleSkips(kernel string, outcomes []TestOutcome, allowed []AllowedSkip) []AllowedSkip {
	ran := map[string]bool{}
	for _, o := range outcomes {
		if o.Action == "skip" {
			ran[o.Name] = false
		} else if _, seen := ran[o.Name]; !seen {
			ran[o.Name] = true
		}
	}
	var out []AllowedSkip
	for _, a := range allowed {
		if a.Kernel == kernel && ran[a.Test] {
			out = append(out, a)
		}
	}
	return out
}

// Tally counts top-level tests (and benchmarks that reported an outcome).
type Tally struct{ Ran, Passed, Failed, Skipped int }

// Count tallies the top-level outcomes; subtests are counted through their
// parent (a subtest's skip is still listed by ClassifySkips).
func Count(outcomes []TestOutcome) Tally {
	var t Tally
	for _, o := range outcomes {
		if strings.Contains(o.Name, "/") {
			continue
		}
		t.Ran++
		switch o.Action {
		case "pass":
			t.Passed++
		case "fail":
			t.Failed++
		case "skip":
			t.Skipped++
		}
	}
	return t
}

func (t Tally) String() string {
	return fmt.Sprintf("%d ran: %d passed, %d failed, %d skipped", t.Ran, t.Passed, t.Failed, t.Skipped)
}
