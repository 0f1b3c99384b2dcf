package ftrace

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is where tracefs is mounted in the lab guest.
const DefaultDir = "/sys/kernel/tracing"

// Tracer is an ftrace tracer a Session installs.
type Tracer string

const (
	// FunctionTracer records one line per function entry, with the address
	// (sym-addr), symbol offset and module (sym-offset) and the flags
	// column (irq-info) that ParseLine reads.
	FunctionTracer Tracer = "function"
	// FunctionGraph records entries and exits with the process
	// (funcgraph-proc) and the latency column (latency-format) ParseGraph
	// reads; interrupt handlers are not graphed (funcgraph-irqs off), the
	// 2018 measurement's rule. It prints names only, no addresses.
	FunctionGraph Tracer = "function_graph"
)

// Options configure Setup.
type Options struct {
	Dir    string // tracefs; DefaultDir if ""
	Tracer Tracer
	// PIDs are the thread ids to trace (set_ftrace_pid). ftrace has no
	// cgroup filter for its function tracers, so a cgroup's scope is its
	// threads when tracing starts, plus (Fork) every task they create
	// after; Setup refuses an empty list.
	PIDs []int
	// Fork traces the tasks the traced threads create (function-fork) and
	// records their creation (the sched_process_fork event) so that
	// Collect can follow them.
	Fork bool
	// BufferKB is the ring buffer per CPU (buffer_size_kb); 0: 65536.
	BufferKB int
}

// Session is ftrace set up by Setup. Only one can exist at a time (tracefs
// is global); Close puts ftrace back as the kernel booted it.
type Session struct {
	dir string
	o   Options
}

// Setup installs the tracer with tracing off: Start turns it on. The trace
// clock is "global", so that the markers and records of different CPUs
// are in one order when the trace file merges them.
func Setup(o Options) (*Session, error) {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.BufferKB <= 0 {
		o.BufferKB = 65536
	}
	if len(o.PIDs) == 0 {
		return nil, fmt.Errorf("ftrace: no thread to trace (an empty set_ftrace_pid would trace every task)")
	}
	pids := make([]string, len(o.PIDs))
	for i, p := range o.PIDs {
		pids[i] = strconv.Itoa(p)
	}
	s := &Session{dir: o.Dir, o: o}
	steps := [][2]string{
		{"tracing_on", "0"}, {"current_tracer", "nop"}, {"trace", ""}, {"trace_clock", "global"},
		{"buffer_size_kb", strconv.Itoa(o.BufferKB)}, {"set_ftrace_pid", strings.Join(pids, " ")},
		{"options/function-fork", bit(o.Fork)}, {"events/sched/sched_process_fork/enable", bit(o.Fork)},
	}
	switch o.Tracer {
	case FunctionTracer:
		steps = append(steps, [][2]string{{"options/irq-info", "1"}, {"options/latency-format", "0"},
			{"options/sym-addr", "1"}, {"options/sym-offset", "1"}, {"options/print-parent", "1"}}...)
	case FunctionGraph:
		steps = append(steps, [][2]string{{"options/funcgraph-proc", "1"}, {"options/funcgraph-irqs", "0"},
			{"options/latency-format", "1"}}...)
	default:
		return nil, fmt.Errorf("ftrace: unknown tracer %q (want %q or %q)", o.Tracer, FunctionTracer, FunctionGraph)
	}
	steps = append(steps, [2]string{"current_tracer", string(o.Tracer)})
	for _, st := range steps {
		if err := s.write(st[0], st[1]); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (s *Session) write(name, val string) error {
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(val), 0o644); err != nil {
		return fmt.Errorf("ftrace: write %q to %s: %w (needs root, tracefs at %s and CONFIG_FUNCTION_TRACER / CONFIG_FUNCTION_GRAPH_TRACER)", val, name, err, s.dir)
	}
	return nil
}

// Start turns recording on (tracing_on 1).
func (s *Session) Start() error { return s.write("tracing_on", "1") }

// Stop turns recording off (tracing_on 0); the trace stays readable.
func (s *Session) Stop() error { return s.write("tracing_on", "0") }

// Mark writes msg into the trace (trace_marker), between the records
// written before and after it. Collect's window is the records between
// two marks.
func (s *Session) Mark(msg string) error {
	if strings.ContainsAny(msg, "\n") {
		return fmt.Errorf("ftrace: marker %q holds a newline", msg)
	}
	return s.write("trace_marker", msg)
}

// PIDs returns the threads given to Setup.
func (s *Session) PIDs() []int { return s.o.PIDs }

// Stats are the ring buffer's counters summed over CPUs.
type Stats struct {
	Entries int64 // events in the buffer
	Overrun int64 // events overwritten because the buffer was full
}

// Stats sums the per-CPU ring buffer statistics.
func (s *Session) Stats() (Stats, error) {
	var st Stats
	files, err := filepath.Glob(filepath.Join(s.dir, "per_cpu/cpu*/stats"))
	if err != nil || len(files) == 0 {
		return st, fmt.Errorf("ftrace: no per-CPU ring buffer statistics under %s: %v", s.dir, err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return st, fmt.Errorf("ftrace: %w", err)
		}
		e, o := ParseRingStats(string(data))
		st.Entries += e
		st.Overrun += o
	}
	return st, nil
}

// ParseRingStats reads the entries and overrun counters of one
// per_cpu/cpuN/stats file.
func ParseRingStats(s string) (entries, overrun int64) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "entries":
			entries = n
		case "overrun":
			overrun = n
		}
	}
	return entries, overrun
}

// Trace opens the trace text (tracefs "trace": reading does not consume
// it). The caller closes it.
func (s *Session) Trace() (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(s.dir, "trace"))
	if err != nil {
		return nil, fmt.Errorf("ftrace: %w", err)
	}
	return f, nil
}

// Close leaves ftrace as the kernel booted it: tracer nop, no pid filter,
// options and clock back to their defaults, the buffer emptied and shrunk.
// It returns the first error but tries every step.
func (s *Session) Close() error {
	var first error
	for _, st := range [][2]string{
		{"tracing_on", "0"}, {"current_tracer", "nop"}, {"set_ftrace_pid", ""}, {"options/function-fork", "0"},
		{"events/sched/sched_process_fork/enable", "0"},
		{"options/sym-addr", "0"}, {"options/sym-offset", "0"}, {"options/latency-format", "0"},
		{"options/funcgraph-irqs", "1"}, {"options/funcgraph-proc", "0"}, {"trace_clock", "local"},
		{"trace", ""}, {"buffer_size_kb", "1408"}, {"tracing_on", "1"},
	} {
		if err := s.write(st[0], st[1]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Threads lists the thread ids of process pid (/proc/PID/task).
func Threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("ftrace: threads of %d: %w", pid, err)
	}
	var out []int
	for _, e := range ents {
		if t, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// CgroupThreads lists the thread ids in the cgroup v2 directory dir and its
// descendants (cgroup.threads: set_ftrace_pid matches threads, and
// cgroup.procs would name only thread-group leaders).
func CgroupThreads(dir string) ([]int, error) {
	var out []int
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.threads"))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			t, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s/cgroup.threads holds %q", p, f)
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ftrace: threads of cgroup %s: %w", dir, err)
	}
	return out, nil
}
