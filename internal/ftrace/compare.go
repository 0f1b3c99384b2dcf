package ftrace

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

// Function is a kernel function told apart by its start address: clones
// (foo.isra.0), same-name statics and module functions are distinct.
type Function struct {
	Name   string
	Module string // "" for vmlinux
	Addr   uint64 // start address (kallsyms); 0 when only the name is known
}

func (f Function) String() string {
	s := f.Name
	if f.Module != "" {
		s += " [" + f.Module + "]"
	}
	if f.Addr != 0 {
		s += fmt.Sprintf(" @%#x", f.Addr)
	}
	return s
}

// Symbols resolves traced addresses to the functions that contain them.
type Symbols struct {
	syms []kallsyms.Symbol // text symbols sorted by address
}

// NewSymbols keeps the code symbols of a /proc/kallsyms listing (modules
// included): text (t, T) and weak (W, w: a __weak function such as 6.1's
// follow_huge_addr is listed so, and ftrace traces it).
func NewSymbols(all []kallsyms.Symbol) *Symbols {
	s := &Symbols{}
	for _, k := range all {
		if (kallsyms.IsText(k.Type) || k.Type == 'W' || k.Type == 'w') && k.Addr != 0 {
			s.syms = append(s.syms, k)
		}
	}
	sort.SliceStable(s.syms, func(i, j int) bool { return s.syms[i].Addr < s.syms[j].Addr })
	return s
}

// Resolve returns the function whose code holds addr: the last text symbol
// starting at or below it (of several names at one address, the first in
// kallsyms, as ftrace prints).
func (s *Symbols) Resolve(addr uint64) (Function, bool) {
	i := sort.Search(len(s.syms), func(i int) bool { return s.syms[i].Addr > addr })
	if i == 0 {
		return Function{}, false
	}
	a := s.syms[i-1].Addr
	j := sort.Search(len(s.syms), func(i int) bool { return s.syms[i].Addr >= a })
	k := s.syms[j]
	return Function{Name: k.Name, Module: k.Module, Addr: k.Addr}, true
}

// Seen counts the records of one function in a window, by context and by
// whether the task was in the traced set.
type Seen struct {
	ByContext [Unknown + 1]int // records of the traced tasks
	Others    int              // records of tasks outside the traced set
}

// Window is what one trace holds between two markers.
type Window struct {
	Start, End string // the markers
	Funcs      map[Function]*Seen
	Lines      int // lines read, the whole trace
	Records    int // call records between the markers
	Before     int // call records before the start marker
	After      int // call records after the end marker
	Lost       int // events the trace says were lost (LOST lines); a window with any is incomplete
	Forks      int // traced threads' children that joined the traced set
	// Unresolved counts calls whose address no kallsyms symbol holds;
	// Renamed, calls whose printed name differs from the symbol their
	// address resolves to (it is kept under the resolved one).
	Unresolved, Renamed int
	Samples             []string // a few of the window's call lines, as printed
}

// Task returns the functions the traced tasks entered in task context.
func (w *Window) Task() []Function {
	var out []Function
	for f, s := range w.Funcs {
		if s.ByContext[Task] > 0 {
			out = append(out, f)
		}
	}
	sortFuncs(out)
	return out
}

func sortFuncs(fs []Function) {
	slices.SortFunc(fs, func(a, b Function) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if a.Addr != b.Addr {
			if a.Addr < b.Addr {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Module, b.Module)
	})
}

// Collect reads a function tracer trace (ParseLine's format) and keeps the
// calls between the marker lines start and end. Each call is keyed by the
// function its address (sym-addr) resolves to in syms; without an address
// (or without syms) by its printed name and module. pids, when not nil, are
// the threads traced from the start; the children that sched_process_fork
// events in the trace show them creating join them (Setup enables that
// event with Fork). Calls of other tasks are counted in Seen.Others: with
// set_ftrace_pid they are the context-switch code that runs as the
// previous task after the filter has switched to the next. A missing
// marker or a line ParseLine rejects is an error.
func Collect(r io.Reader, syms *Symbols, start, end string, pids []int) (*Window, error) {
	w := &Window{Start: start, End: end, Funcs: map[Function]*Seen{}}
	var traced map[int]bool
	if pids != nil {
		traced = map[int]bool{}
		for _, p := range pids {
			traced[p] = true
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	state := 0 // 0 before start, 1 inside, 2 after end
	for sc.Scan() {
		w.Lines++
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		rec, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("trace line %d: %w", w.Lines, err)
		}
		switch rec.Kind {
		case Marker:
			switch {
			case state == 0 && rec.Text == start:
				state = 1
			case state == 1 && rec.Text == end:
				state = 2
			}
			continue
		case Lost:
			w.Lost += rec.LostN
			continue
		case Other:
			if rec.Text == "sched_process_fork" && traced != nil {
				if p, c, ok := ForkPIDs(rec.Args); ok && traced[p] {
					traced[c] = true
					w.Forks++
				}
			}
			continue
		}
		switch state {
		case 0:
			w.Before++
			continue
		case 2:
			w.After++
			continue
		}
		w.Records++
		f := Function{Name: rec.Func.Name, Module: rec.Func.Module}
		if rec.Func.Addr != 0 && syms != nil {
			if g, ok := syms.Resolve(rec.Func.Addr); ok {
				if f.Name != "" && g.Name != f.Name {
					w.Renamed++
				}
				f = g
			} else {
				w.Unresolved++
				f.Addr = rec.Func.Addr
			}
		}
		s := w.Funcs[f]
		if s == nil {
			s = &Seen{}
			w.Funcs[f] = s
		}
		if traced != nil && !traced[rec.PID] {
			s.Others++
		} else {
			s.ByContext[rec.Context]++
		}
		if len(w.Samples) < 8 {
			w.Samples = append(w.Samples, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the trace: %w", err)
	}
	switch state {
	case 0:
		return nil, fmt.Errorf("ftrace: the trace has no start marker %q (was tracing on when it was written, or did the ring buffer overwrite it? see Session.Stats)", start)
	case 1:
		return nil, fmt.Errorf("ftrace: the trace has no end marker %q after %q", end, start)
	}
	return w, nil
}

// ParseGraph reads a function_graph trace (FunctionGraph's options). A call
// line is "[cpu)] [proc-pid] | [lat] | [duration] | indent name() {" or "…
// name();", where lat (latency-format) is irqs-off, need-resched,
// hardirq/softirq, preempt-depth… ("d.s1."). Comment lines start with
// '#'; context-switch and interrupt markers (=>, ------) carry no "()".
func ParseGraph(r io.Reader) (GraphTrace, error) {
	g := GraphTrace{Funcs: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		g.Lines++
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		name := graphCallName(line)
		if name == "" {
			continue
		}
		if ctx, ok := graphContext(line); ok {
			g.Context = true
			if ctx != '.' {
				g.IRQCalls++
				continue
			}
		}
		g.Funcs[BaseName(name)] = true
	}
	if err := sc.Err(); err != nil {
		return g, fmt.Errorf("read the trace: %w", err)
	}
	return g, nil
}

// Reason says why the other tracer did not report a function ftrace
// recorded.
type Reason string

const (
	InCatalogue  Reason = "in the catalogue, not reported"
	Module       Reason = "module function not attached (module loaded after the catalogue was read?)"
	Clone        Reason = "compiler clone (.isra/.constprop/.part/.cold) not attached"
	NoBTF        Reason = "no BTF FUNC"
	Denied       Reason = "deny list"
	NotTraceable Reason = "not in available_filter_functions"
	Excluded     Reason = "left out of the catalogue otherwise (alias, ambiguous name, attach failure)"
)

// Catalogue says what the compared tracer could report. Attached is
// required; the others refine the reason of a miss outside it (nil: not
// known).
type Catalogue struct {
	Attached  func(Function) bool // probed for the whole window
	BTF       func(name string) bool
	Denied    func(name string) bool
	Traceable func(Function) bool
}

// Why returns why f would not be reported: InCatalogue if it is probed.
func (c *Catalogue) Why(f Function) Reason {
	switch {
	case c.Attached(f):
		return InCatalogue
	case f.Module != "":
		return Module
	case c.Denied != nil && c.Denied(f.Name):
		return Denied
	case strings.Contains(f.Name, "."):
		return Clone
	case c.BTF != nil && !c.BTF(f.Name):
		return NoBTF
	case c.Traceable != nil && !c.Traceable(f):
		return NotTraceable
	}
	return Excluded
}

// Miss is a function ftrace recorded in task context and the other tracer
// did not report.
type Miss struct {
	Function
	Reason Reason
	Calls  int // task-context records of it in the window
}

// Addition is a function the other tracer reported and ftrace did not
// record in task context of the traced tasks; Context says what ftrace
// did record of it in the window.
type Addition struct {
	Function
	Context string
}

// Report compares the two tracers over one window, both directions.
type Report struct {
	// Denominator is every distinct function ftrace recorded in task
	// context of the traced tasks in the window: Shared + Missed + Denied.
	Denominator int
	Shared      []Function
	Missed      []Miss     // every reason but Denied, InCatalogue first
	Denied      []Function // deny-listed: shown apart, still in Denominator
	Added       []Addition
	Reported    int // functions the other tracer reported
}

// MissedBy returns the misses of one reason.
func (r *Report) MissedBy(why Reason) []Miss {
	var out []Miss
	for _, m := range r.Missed {
		if m.Reason == why {
			out = append(out, m)
		}
	}
	return out
}

// Comparable is what both tracers could see: Shared plus the misses of
// functions in the catalogue.
func (r *Report) Comparable() int { return len(r.Shared) + len(r.MissedBy(InCatalogue)) }

// Recall is Shared over Comparable (1 when there is nothing to compare).
func (r *Report) Recall() float64 {
	if r.Comparable() == 0 {
		return 1
	}
	return float64(len(r.Shared)) / float64(r.Comparable())
}

// Coverage is Shared over Denominator: the share of everything ftrace
// recorded in task context that the other tracer reported, deny-listed
// functions and whatever its catalogue left out included (1 when ftrace
// recorded nothing).
func (r *Report) Coverage() float64 {
	if r.Denominator == 0 {
		return 1
	}
	return float64(len(r.Shared)) / float64(r.Denominator)
}

// JaccardAll is Shared over Denominator + Added: both directions over
// everything ftrace recorded in task context.
func (r *Report) JaccardAll() float64 {
	u := r.Denominator + len(r.Added)
	if u == 0 {
		return 1
	}
	return float64(len(r.Shared)) / float64(u)
}

// Jaccard is Shared over Comparable + Added: both directions over the
// catalogue.
func (r *Report) Jaccard() float64 {
	u := r.Comparable() + len(r.Added)
	if u == 0 {
		return 1
	}
	return float64(len(r.Shared)) / float64(u)
}

// Compare matches the other tracer's functions (reported, by start address,
// or by name where Addr is 0 on both sides) with the window's task-context
// functions, both directions.
func Compare(w *Window, reported []Function, cat *Catalogue) *Report {
	r := &Report{Reported: len(reported)}
	ours := map[Function]bool{}
	for _, f := range reported {
		ours[f] = true
	}
	task := w.Task()
	r.Denominator = len(task)
	inTask := map[Function]bool{}
	for _, f := range task {
		inTask[f] = true
		switch why := cat.Why(f); {
		case ours[f]:
			r.Shared = append(r.Shared, f)
		case why == Denied:
			r.Denied = append(r.Denied, f)
		default:
			r.Missed = append(r.Missed, Miss{Function: f, Reason: why, Calls: w.Funcs[f].ByContext[Task]})
		}
	}
	slices.SortStableFunc(r.Missed, func(a, b Miss) int {
		if (a.Reason == InCatalogue) != (b.Reason == InCatalogue) {
			if a.Reason == InCatalogue {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.Reason), string(b.Reason))
	})
	for _, f := range reported {
		if inTask[f] {
			continue
		}
		r.Added = append(r.Added, Addition{Function: f, Context: w.describe(f)})
	}
	slices.SortFunc(r.Added, func(a, b Addition) int { return strings.Compare(a.Name, b.Name) })
	return r
}

// describe says what the window holds of f outside the traced tasks' task
// context.
func (w *Window) describe(f Function) string {
	s := w.Funcs[f]
	if s == nil {
		return "not recorded"
	}
	var parts []string
	for c := SoftIRQ; c <= Unknown; c++ {
		if n := s.ByContext[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d in %s", n, c))
		}
	}
	if s.Others > 0 {
		parts = append(parts, fmt.Sprintf("%d by other tasks", s.Others))
	}
	return strings.Join(parts, ", ")
}

// String summarises the report: figures, then every miss and addition.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ftrace task context: %d functions (denominator); shared %d, missed %d (%d of them in the catalogue), deny-listed %d; other tracer reported %d, added %d; recall over the catalogue %.4f, Jaccard %.4f; over everything ftrace recorded: coverage %.4f, Jaccard %.4f",
		r.Denominator, len(r.Shared), len(r.Missed), len(r.MissedBy(InCatalogue)), len(r.Denied), r.Reported, len(r.Added), r.Recall(), r.Jaccard(), r.Coverage(), r.JaccardAll())
	byReason := map[Reason][]string{}
	var reasons []Reason
	for _, m := range r.Missed {
		if byReason[m.Reason] == nil {
			reasons = append(reasons, m.Reason)
		}
		byReason[m.Reason] = append(byReason[m.Reason], fmt.Sprintf("%s (%d calls)", m.Function, m.Calls))
	}
	for _, why := range reasons {
		fmt.Fprintf(&b, "\nmissed, %s: %d: %s", why, len(byReason[why]), strings.Join(byReason[why], ", "))
	}
	if len(r.Denied) > 0 {
		names := make([]string, len(r.Denied))
		for i, f := range r.Denied {
			names[i] = f.String()
		}
		fmt.Fprintf(&b, "\ndeny-listed (in the denominator, never probed): %d: %s", len(r.Denied), strings.Join(names, ", "))
	}
	if len(r.Added) > 0 {
		adds := make([]string, len(r.Added))
		for i, a := range r.Added {
			adds[i] = fmt.Sprintf("%s (%s)", a.Function, a.Context)
		}
		fmt.Fprintf(&b, "\nadded: %d: %s", len(r.Added), strings.Join(adds, ", "))
	}
	return b.String()
}

// NameReport compares two function-name sets over a catalogue, for traces
// without addresses (function_graph prints names only).
type NameReport struct {
	Outside    int // ftrace names outside the catalogue (not compared)
	Shared     int
	Jaccard    float64  // Shared over the union, within the catalogue
	OnlyOther  []string // reported by the other tracer, not by ftrace
	OnlyFtrace []string // ftrace's, in the catalogue, not reported by the other
}

// CompareNames compares other with the names of ftraceNames that
// inCatalogue accepts; both sets should be BaseName'd alike.
func CompareNames(ftraceNames, other map[string]bool, inCatalogue func(string) bool) NameReport {
	var r NameReport
	in := map[string]bool{}
	for f := range ftraceNames {
		if inCatalogue(f) {
			in[f] = true
		} else {
			r.Outside++
		}
	}
	for f := range other {
		if in[f] {
			r.Shared++
		} else {
			r.OnlyOther = append(r.OnlyOther, f)
		}
	}
	for f := range in {
		if !other[f] {
			r.OnlyFtrace = append(r.OnlyFtrace, f)
		}
	}
	slices.Sort(r.OnlyOther)
	slices.Sort(r.OnlyFtrace)
	if u := len(in) + len(other) - r.Shared; u > 0 {
		r.Jaccard = float64(r.Shared) / float64(u)
	}
	return r
}
