// Package seccomp writes and reads seccomp profiles in the JSON form Docker
// (docker run --security-opt seccomp=FILE) and the OCI runtime spec
// (linux.seccomp, which runc and runsc apply) share.
//
// Allow builds the profile that allows exactly a workload's system calls;
// Parse reads any profile of that form and says, per system call, whether it
// lets the call through.
package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/syscalls"
)

// Actions, as libseccomp names them.
const (
	ActAllow = "SCMP_ACT_ALLOW"
	ActErrno = "SCMP_ACT_ERRNO"
	ActLog   = "SCMP_ACT_LOG"
)

// Errno values a generated profile answers with.
const (
	EPERM  = 1
	ENOSYS = 38
)

// Profile is a seccomp profile: Docker's file format, which is the OCI
// runtime spec's linux.seccomp object plus Docker's archMap and per-rule
// includes/excludes. Fields hapscope does not interpret are kept as read.
type Profile struct {
	DefaultAction   string   `json:"defaultAction"`
	DefaultErrnoRet *uint    `json:"defaultErrnoRet,omitempty"`
	Architectures   []string `json:"architectures,omitempty"`
	// ArchMap is Docker's alternative to Architectures (one or the other).
	ArchMap  []Arch   `json:"archMap,omitempty"`
	Flags    []string `json:"flags,omitempty"`
	Syscalls []Rule   `json:"syscalls,omitempty"`
}

// Arch is one entry of Docker's archMap.
type Arch struct {
	Architecture     string   `json:"architecture"`
	SubArchitectures []string `json:"subArchitectures,omitempty"`
}

// Rule applies Action to the system calls Names.
type Rule struct {
	Names    []string `json:"names,omitempty"`
	Name     string   `json:"name,omitempty"` // Docker's older single-name form
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	// Args conditions the rule on argument values; Includes and Excludes
	// (Docker) on capabilities, architectures and kernel versions.
	Args     []json.RawMessage `json:"args,omitempty"`
	Includes json.RawMessage   `json:"includes,omitempty"`
	Excludes json.RawMessage   `json:"excludes,omitempty"`
	Comment  string            `json:"comment,omitempty"`
}

// Generated is a profile built by Allow and what the caller should tell its
// user about it.
type Generated struct {
	Profile *Profile
	// Allowed are the system calls the profile lets through, sorted.
	Allowed []string
	// Notes say what Allow changed or what the profile cannot do
	// (clone3, io_uring, names unknown on x86-64).
	Notes []string
}

// ioUring are the system calls that give a task io_uring, whose operations
// run in the kernel without passing the seccomp filter again.
var ioUring = []string{"io_uring_setup", "io_uring_enter", "io_uring_register"}

// Allow builds the x86-64 profile that allows exactly the system calls
// names and answers every other call with EPERM, as Docker's default
// profile does. clone3 is answered with ENOSYS, allowed or not, so a libc
// that tries it falls back to clone (which is allowed when clone3 was
// used): seccomp cannot inspect clone3's flags, which live in memory.
// Names that are not x86-64 system calls are left out and noted.
func Allow(names []string) (*Generated, error) {
	set := map[string]bool{}
	var notes []string
	var unknown []string
	for _, n := range names {
		if _, ok := syscalls.Number(n); !ok {
			unknown = append(unknown, n)
			continue
		}
		set[n] = true
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no system calls to allow among %d names: was the profile measured with system call attribution (hapscope run --syscalls)?", len(names))
	}
	if len(unknown) > 0 {
		notes = append(notes, fmt.Sprintf("left out %d names that are not x86-64 system calls: %s", len(unknown), strings.Join(unknown, " ")))
	}
	if set["clone3"] {
		delete(set, "clone3")
		if !set["clone"] {
			set["clone"] = true
			notes = append(notes, "clone3 was used: it is answered with ENOSYS and clone allowed instead, so libc falls back to clone (seccomp cannot check clone3's flags)")
		}
	}
	var uring []string
	for _, n := range ioUring {
		if set[n] {
			uring = append(uring, n)
		}
	}
	if len(uring) > 0 {
		notes = append(notes, fmt.Sprintf("io_uring allowed (%s): its operations (reads, writes, sends, opens…) run without passing this filter, so the profile does not bound what the workload can reach through io_uring", strings.Join(uring, ", ")))
	}
	allowed := make([]string, 0, len(set))
	for n := range set {
		allowed = append(allowed, n)
	}
	sort.Strings(allowed)
	p := &Profile{
		DefaultAction:   ActErrno,
		DefaultErrnoRet: uintp(EPERM),
		Architectures:   []string{"SCMP_ARCH_X86_64"},
		Syscalls: []Rule{
			{Names: allowed, Action: ActAllow},
			{Names: []string{"clone3"}, Action: ActErrno, ErrnoRet: uintp(ENOSYS), Comment: "libc falls back to clone"},
		},
	}
	return &Generated{Profile: p, Allowed: allowed, Notes: notes}, nil
}

func uintp(v uint) *uint { return &v }

// JSON is p as indented JSON, ending in a newline.
func (p *Profile) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// maxProfile bounds the size of a profile Parse reads; Docker's default
// profile is about 20 KB.
const maxProfile = 4 << 20

// Parse reads a profile and checks what Allows needs of it: a default
// action, and each rule's action and names.
func Parse(b []byte) (*Profile, error) {
	if len(b) > maxProfile {
		return nil, fmt.Errorf("seccomp profile of %d bytes: larger than %d, not a profile", len(b), maxProfile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if dec.More() {
		return nil, errors.New("seccomp profile: data after the JSON object")
	}
	if p.DefaultAction == "" {
		return nil, errors.New("seccomp profile: no defaultAction")
	}
	if len(p.Architectures) > 0 && len(p.ArchMap) > 0 {
		return nil, errors.New("seccomp profile: both architectures and archMap (Docker refuses this; use one)")
	}
	for i, r := range p.Syscalls {
		if r.Action == "" {
			return nil, fmt.Errorf("seccomp profile: rule %d has no action", i)
		}
		if len(r.Names) == 0 && r.Name == "" {
			return nil, fmt.Errorf("seccomp profile: rule %d (%s) names no system call", i, r.Action)
		}
	}
	return &p, nil
}

// Verdict is what a profile does with one system call.
type Verdict int

const (
	Denied  Verdict = iota // every rule naming it (or the default) refuses it
	Allowed                // an unconditional rule (or the default) lets it through
	// Conditional: a rule lets it through for some arguments, capabilities
	// or kernels only (Docker's default profile allows clone without
	// namespace flags, personality for some personas…).
	Conditional
)

func (v Verdict) String() string {
	switch v {
	case Denied:
		return "denied"
	case Allowed:
		return "allowed"
	case Conditional:
		return "conditional"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// allowing reports whether action lets a call run: ALLOW, LOG (allow and
// log) and TRACE/NOTIFY (a tracer or agent may let it run) do; ERRNO, KILL
// and TRAP do not.
func allowing(action string) bool {
	switch action {
	case ActAllow, ActLog, "SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY":
		return true
	}
	return false
}

// Verdict says what p does with the system call name on x86-64: the rules
// naming it decide (an unconditional allowing rule wins, a conditional one
// makes it Conditional); a call no rule names gets the default action.
func (p *Profile) Verdict(name string) Verdict {
	named, conditional := false, false
	for _, r := range p.Syscalls {
		if r.Name != name && !slices.Contains(r.Names, name) {
			continue
		}
		named = true
		if !allowing(r.Action) {
			continue
		}
		if len(r.Args) == 0 && isEmptyObject(r.Includes) && isEmptyObject(r.Excludes) {
			return Allowed
		}
		conditional = true
	}
	switch {
	case conditional:
		return Conditional
	case named:
		return Denied
	case allowing(p.DefaultAction):
		return Allowed
	}
	return Denied
}

// isEmptyObject reports whether m is absent, null or {}.
func isEmptyObject(m json.RawMessage) bool {
	s := strings.Join(strings.Fields(string(m)), "")
	return s == "" || s == "null" || s == "{}"
}

// Syscalls returns the system calls among p's origins
// (hap.Profile.Origins; page faults, interrupts and the like are not
// system calls), in p's order.
func Syscalls(p *hap.Profile) ([]string, error) {
	var names []string
	for _, o := range p.Origins {
		c, err := coverage.ParseOrigin(o.Name)
		if err != nil {
			return nil, fmt.Errorf("origin %q: %w", o.Name, err)
		}
		if _, ok := c.Syscall(); ok {
			names = append(names, o.Name)
		}
	}
	return names, nil
}

// Prediction is what a profile is predicted to take out of a run's reach.
type Prediction struct {
	// Kept is the run's profile less the functions cut.
	Kept *hap.Profile
	// Cut are the functions the run reached only through system calls the
	// profile denies, by name.
	Cut []hap.Func
	// Denied are those system calls (the run's origins the profile
	// denies), sorted.
	Denied []string
}

// Predict says which of the functions a run reached (a profile measured
// with attribution, hap.Func.Origins) p would cut: those reached only
// through system calls p denies. Each function a denied call reached is
// assumed to need that call, and each allowed call to reach the same code
// under p as in the run; a run under p also enters p's filter on every
// call, so predict from a run that had a filter (Docker's default profile)
// to count that code in both. A call p allows under conditions
// (Conditional) counts as allowed, and origins that are no system call
// (page faults, interrupts, io_uring workers, other) keep a function: no
// filter stands in their way.
func (p *Profile) Predict(run *hap.Profile) (*Prediction, error) {
	denied := map[string]bool{}
	var kept []hap.Func
	pr := &Prediction{}
	for _, f := range run.Functions {
		if f.Origins == nil {
			return nil, fmt.Errorf("predict from %s: function %s has no origins: measure the run with attribution (coverage.Options.Attribution, Counts)", run.Label, f.Name)
		}
		if f.Lines > 0 && len(f.Own)+len(f.Inlined) == 0 && f.Estimated == 0 {
			return nil, fmt.Errorf("predict from %s: function %s has %d lines but not which: a profile read from JSON holds counts only; predict from the profile as measured", run.Label, f.Name, f.Lines)
		}
		keep := false
		for name := range f.Origins {
			o, err := coverage.ParseOrigin(name)
			if err != nil {
				return nil, fmt.Errorf("predict from %s: %s: origin %q: %w", run.Label, f.Name, name, err)
			}
			if _, ok := o.Syscall(); !ok || p.Verdict(name) != Denied {
				keep = true
				continue
			}
			denied[name] = true
		}
		if keep {
			kept = append(kept, f)
		} else {
			pr.Cut = append(pr.Cut, f)
		}
	}
	pr.Kept = hap.New(run.Meta, kept, hap.Options{Density: run.Density})
	pr.Denied = slices.Sorted(maps.Keys(denied))
	return pr, nil
}
