package ftrace

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Context is the kind of code a record was written from, as the flags
// column's hardirq/softirq character says.
type Context uint8

const (
	Task    Context = iota // '.': process context (soft IRQs may be disabled, 'b' in column 1)
	SoftIRQ                // 's': serving a soft IRQ
	HardIRQ                // 'h', 'H': hard IRQ (H: inside a soft IRQ too)
	NMI                    // 'z', 'Z': NMI (Z: inside a hard IRQ too)
	Unknown                // no flags column (options/irq-info off)
)

var contextNames = [...]string{"task", "soft IRQ", "hard IRQ", "NMI", "unknown context"}

func (c Context) String() string {
	if int(c) < len(contextNames) {
		return contextNames[c]
	}
	return fmt.Sprintf("Context(%d)", c)
}

// contextOf maps the hardirq/softirq character of the flags column.
func contextOf(c byte) (Context, bool) {
	switch c {
	case '.':
		return Task, true
	case 's':
		return SoftIRQ, true
	case 'h', 'H':
		return HardIRQ, true
	case 'z', 'Z':
		return NMI, true
	}
	return Unknown, false
}

// Kind says what a trace line is.
type Kind uint8

const (
	Call   Kind = iota + 1 // a function tracer record: Func (and Parent) entered
	Marker                 // a trace_marker write: Text
	Lost                   // "CPU:N [LOST M EVENTS]": Lost events of CPU were dropped
	Other                  // another event ("sched_switch: …"); Text is the event name
)

// Symbol is a code address as the function tracer prints it with
// options/sym-offset and options/sym-addr: "name+0xOFF/0xSIZE [module]
// <address>". Parts the options turned off are zero.
type Symbol struct {
	Name   string // "" when ftrace could not name the address
	Module string // "" for vmlinux (ftrace prints [mod] only with sym-offset)
	Offset uint64 // from the symbol's start (sym-offset)
	Addr   uint64 // the traced address (sym-addr): the call site in the function, not its start
}

// Record is one line of a `function` tracer's text trace (options
// irq-info on, latency-format off).
type Record struct {
	Kind    Kind
	Task    string // comm, as the trace shows it ("<...>" when not cached)
	PID     int
	CPU     int
	Context Context
	Flags   string // the whole flags column ("d..2."), "" without irq-info
	Time    string // the timestamp as printed (seconds, clock-dependent)
	Func    Symbol // Call
	Parent  Symbol // Call, when print-parent is on
	Text    string // Marker: the message; Other: the event name
	Args    string // Other: what follows the event name
	LostN   int    // Lost
}

// ErrFormat is returned (wrapped) for a line that is not a trace record.
var ErrFormat = errors.New("not a function tracer line")

// ParseLine parses one line of /sys/kernel/tracing/trace written by the
// function tracer. Comment lines ('#') and blank lines are not records:
// the caller skips them. The format is
//
//	TASK-PID [CPU] FLAGS TIMESTAMP: BODY
//
// where TASK may hold spaces and dashes, FLAGS (irq-info) is five columns
// on 6.1 and 6.12 (irqs-off/BH-disabled, need-resched, hardirq/softirq,
// preempt-depth, migrate-disable), and BODY is "SYM <-SYM" for a call,
// "tracing_mark_write: TEXT" for a marker (its name printed as a SYM), or
// "event: ARGS" (sched_process_fork: comm=a pid=1 child_comm=a child_pid=2).
func ParseLine(line string) (Record, error) {
	var r Record
	if strings.HasPrefix(line, "CPU:") {
		// CPU:1 [LOST 123 EVENTS]
		var cpu, n int
		if _, err := fmt.Sscanf(line, "CPU:%d [LOST %d EVENTS]", &cpu, &n); err != nil {
			return r, fmt.Errorf("%w: %q", ErrFormat, line)
		}
		return Record{Kind: Lost, CPU: cpu, LostN: n}, nil
	}
	open, cpuEnd := cpuColumn(line)
	if open < 0 {
		return r, fmt.Errorf("%w: no [CPU] column: %q", ErrFormat, line)
	}
	head := strings.TrimLeft(line[:open], " ")
	dash := strings.LastIndexByte(head, '-')
	if dash < 0 {
		return r, fmt.Errorf("%w: no TASK-PID: %q", ErrFormat, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(head[dash+1:]))
	if err != nil || pid < 0 {
		return r, fmt.Errorf("%w: pid in %q", ErrFormat, line)
	}
	r.Task, r.PID = head[:dash], pid
	r.CPU, _ = strconv.Atoi(line[open+1 : cpuEnd])
	rest := strings.TrimLeft(line[cpuEnd+1:], " ")
	// FLAGS (optional) then TIMESTAMP ending in ':'.
	f, after, ok := strings.Cut(rest, " ")
	if !ok {
		return r, fmt.Errorf("%w: nothing after [CPU]: %q", ErrFormat, line)
	}
	if !strings.HasSuffix(f, ":") {
		r.Flags = f
		if len(f) < 3 {
			return r, fmt.Errorf("%w: flags %q", ErrFormat, f)
		}
		if r.Context, ok = contextOf(f[2]); !ok {
			return r, fmt.Errorf("%w: flags %q: hardirq/softirq column %q", ErrFormat, f, f[2])
		}
		f, after, ok = strings.Cut(strings.TrimLeft(after, " "), " ")
		if !ok || !strings.HasSuffix(f, ":") {
			return r, fmt.Errorf("%w: no timestamp: %q", ErrFormat, line)
		}
	} else {
		r.Context = Unknown
	}
	r.Time = strings.TrimSuffix(f, ":")
	if _, err := strconv.ParseFloat(r.Time, 64); err != nil {
		return r, fmt.Errorf("%w: timestamp %q", ErrFormat, r.Time)
	}
	body := strings.TrimLeft(after, " ")
	// Calls print no ": "; markers and other events do, after the event
	// name, which sym-offset and sym-addr print as a symbol
	// ("tracing_mark_write+0xda/0x270 <ffffffff8461ce2a>: text").
	if ev, msg, ok := strings.Cut(body, ": "); ok {
		sym, err := parseSymbol(ev)
		if err != nil || sym.Name == "" {
			return r, fmt.Errorf("%w: event %q: %q", ErrFormat, ev, line)
		}
		if sym.Name == "tracing_mark_write" {
			r.Kind, r.Text = Marker, msg
		} else {
			r.Kind, r.Text, r.Args = Other, sym.Name, msg
		}
		return r, nil
	}
	fn, parent, hasParent := strings.Cut(body, " <-")
	if r.Func, err = parseSymbol(fn); err != nil {
		return r, fmt.Errorf("%w: %v: %q", ErrFormat, err, line)
	}
	if hasParent {
		if r.Parent, err = parseSymbol(parent); err != nil {
			return r, fmt.Errorf("%w: parent: %v: %q", ErrFormat, err, line)
		}
	}
	r.Kind = Call
	return r, nil
}

// cpuColumn finds " [DIGITS]" followed by a space: the CPU column. The
// first one whose text before it ends in "-PID" is taken (a comm may
// itself hold brackets).
func cpuColumn(line string) (open, end int) {
	for from := 0; ; {
		i := strings.Index(line[from:], " [")
		if i < 0 {
			return -1, -1
		}
		open = from + i + 1
		j := open + 1
		for j < len(line) && line[j] >= '0' && line[j] <= '9' {
			j++
		}
		if j > open+1 && j+1 < len(line) && line[j] == ']' && line[j+1] == ' ' {
			head := strings.TrimRight(line[:open], " ")
			k := len(head)
			for k > 0 && head[k-1] >= '0' && head[k-1] <= '9' {
				k--
			}
			if k < len(head) && k > 0 && head[k-1] == '-' {
				return open, j
			}
		}
		from = open + 1
	}
}

// parseSymbol reads "name+0xOFF/0xSIZE [mod] <addr>" with every part but
// the first optional; an unnamed address prints as "0x…" in the name's
// place.
func parseSymbol(s string) (Symbol, error) {
	var sym Symbol
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		a, err := strconv.ParseUint(s[i+1:len(s)-1], 16, 64)
		if err != nil {
			return sym, fmt.Errorf("address %q", s[i:])
		}
		sym.Addr = a
		s = strings.TrimSpace(s[:i])
	}
	if i := strings.LastIndexByte(s, '['); i >= 0 && strings.HasSuffix(s, "]") {
		sym.Module = s[i+1 : len(s)-1]
		s = strings.TrimSpace(s[:i])
		if sym.Module == "" {
			return sym, errors.New("empty [module]")
		}
	}
	if s == "" || strings.ContainsAny(s, " \t") {
		return sym, fmt.Errorf("symbol %q", s)
	}
	if strings.HasPrefix(s, "0x") {
		a, err := strconv.ParseUint(s[2:], 16, 64)
		if err != nil {
			return sym, fmt.Errorf("unnamed address %q", s)
		}
		if sym.Addr == 0 {
			sym.Addr = a
		}
		if sym.Addr == 0 {
			return sym, errors.New("address 0")
		}
		return sym, nil
	}
	name, off, hasOff := strings.Cut(s, "+")
	if hasOff {
		o, _, ok := strings.Cut(off, "/")
		if !ok {
			return sym, fmt.Errorf("offset %q", off)
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(o, "0x"), 16, 64)
		if err != nil {
			return sym, fmt.Errorf("offset %q", off)
		}
		sym.Offset = v
	}
	if name == "" {
		return sym, fmt.Errorf("symbol %q", s)
	}
	sym.Name = name
	return sym, nil
}

// GraphTrace is what ParseGraph found in a function_graph trace.
type GraphTrace struct {
	Funcs map[string]bool // entered in task context, clone suffixes stripped (BaseName)
	Lines int
	// IRQCalls counts call lines left out because their context column
	// (options/latency-format) says hard IRQ, soft IRQ being served or
	// NMI; Context is false when no line had that column, so nothing
	// could be left out.
	IRQCalls int
	Context  bool
}

// graphCallName returns the function a function_graph call line enters,
// or "". (A regular expression made parsing millions of lines in the
// emulated guest take minutes.)
func graphCallName(line []byte) string {
	s := bytes.TrimRight(line, " \t")
	if len(s) == 0 || (s[len(s)-1] != '{' && s[len(s)-1] != ';') {
		return ""
	}
	s = bytes.TrimRight(s[:len(s)-1], " \t")
	if !bytes.HasSuffix(s, []byte("()")) {
		return ""
	}
	s = s[:len(s)-2]
	i := len(s)
	for i > 0 && isIdent(s[i-1]) {
		i--
	}
	name := s[i:]
	if len(name) == 0 || name[0] == '.' || (name[0] >= '0' && name[0] <= '9') {
		return ""
	}
	if rest := bytes.TrimRight(s[:i], " \t"); len(rest) == 0 || rest[len(rest)-1] != '|' {
		return ""
	}
	return string(name)
}

func isIdent(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// graphContext returns the hardirq/softirq character of a line's latency
// column ('.' for task context; h, H, s, z, Z otherwise), if it has one.
func graphContext(line []byte) (byte, bool) {
	for f := range bytes.SplitSeq(line, []byte("|")) {
		f = bytes.TrimSpace(f)
		if len(f) < 4 || len(f) > 6 {
			continue
		}
		ok := true
		for _, c := range f {
			if !(c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				ok = false
				break
			}
		}
		if ok && bytes.IndexByte([]byte(".hHszZ"), f[2]) >= 0 && bytes.IndexByte(f, '.') >= 0 {
			return f[2], true
		}
	}
	return 0, false
}

// BaseName strips compiler clone suffixes (.isra.0, .constprop.0, .part.0,
// .cold) so that tracers that name functions differently compare alike.
func BaseName(s string) string {
	if i := strings.IndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}

// ForkPIDs returns the parent and child pid of a sched_process_fork event's
// arguments ("comm=a pid=1 child_comm=a child_pid=2").
func ForkPIDs(args string) (parent, child int, ok bool) {
	parent, child = -1, -1
	for _, f := range strings.Fields(args) {
		if v, found := strings.CutPrefix(f, "pid="); found {
			if n, err := strconv.Atoi(v); err == nil {
				parent = n
			}
		} else if v, found := strings.CutPrefix(f, "child_pid="); found {
			if n, err := strconv.Atoi(v); err == nil {
				child = n
			}
		}
	}
	return parent, child, parent >= 0 && child >= 0
}
