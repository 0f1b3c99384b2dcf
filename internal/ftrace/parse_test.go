package ftrace

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

// Lines as the lab's 6.12 and 6.1 kernels print them with Setup's options
// (sym-offset, sym-addr, irq-info), from TestLabFunctionTracer's traces.
// (The testdata traces are such lines too; their end markers were written
// after the start markers' pattern.)
func TestParseLineReal(t *testing.T) {
	for line, want := range map[string]Record{
		// 6.12: a marker, a call in task context with its parent, a hard IRQ, a soft IRQ.
		"  00-ftrace.test-168     [000] .....    26.903229: tracing_mark_write+0xda/0x270 <ffffffff8461ce2a>: hapscope-start": {
			Kind: Marker, Task: "00-ftrace.test", PID: 168, Context: Task, Flags: ".....", Time: "26.903229", Text: "hapscope-start"},
		"  00-ftrace.test-170     [000] d..2.    26.912869: finish_task_switch.isra.0+0x0/0x2f0 <ffffffff84506610> <-__schedule+0x4f2/0xbe0 <ffffffff850c4e22>": {
			Kind: Call, Task: "00-ftrace.test", PID: 170, Context: Task, Flags: "d..2.", Time: "26.912869",
			Func:   Symbol{Name: "finish_task_switch.isra.0", Addr: 0xffffffff84506610},
			Parent: Symbol{Name: "__schedule", Offset: 0x4f2, Addr: 0xffffffff850c4e22}},
		"  00-ftrace.test-170     [000] d.h1.    26.928335: __sysvec_apic_timer_interrupt+0x4/0x100 <ffffffff84483ed4> <-sysvec_apic_timer_interrupt+0x6c/0x90 <ffffffff850be0bc>": {
			Kind: Call, Task: "00-ftrace.test", PID: 170, Context: HardIRQ, Flags: "d.h1.", Time: "26.928335",
			Func:   Symbol{Name: "__sysvec_apic_timer_interrupt", Offset: 4, Addr: 0xffffffff84483ed4},
			Parent: Symbol{Name: "sysvec_apic_timer_interrupt", Offset: 0x6c, Addr: 0xffffffff850be0bc}},
		"  00-ftrace.test-169     [000] .Ns..    13.552855: run_timer_softirq+0x4/0xf0 <ffffffffb0799234> <-handle_softirqs+0xcf/0x280 <ffffffffb06c642f>": {
			Kind: Call, Task: "00-ftrace.test", PID: 169, Context: SoftIRQ, Flags: ".Ns..", Time: "13.552855",
			Func:   Symbol{Name: "run_timer_softirq", Offset: 4, Addr: 0xffffffffb0799234},
			Parent: Symbol{Name: "handle_softirqs", Offset: 0xcf, Addr: 0xffffffffb06c642f}},
		// 6.1: the fork event, module functions in task and hard IRQ context.
		"  00-ftrace.test-124     [000] .N...     6.220009: sched_process_fork: comm=00-ftrace.test pid=124 child_comm=00-ftrace.test child_pid=128": {
			Kind: Other, Task: "00-ftrace.test", PID: 124, Context: Task, Flags: ".N...", Time: "6.220009", Text: "sched_process_fork",
			Args: "comm=00-ftrace.test pid=124 child_comm=00-ftrace.test child_pid=128"},
		"  00-ftrace.test-124     [000] .N...    16.986410: fuse_permission+0x0/0x1b0 [fuse] <ffffffffc0326a20> <-inode_permission+0x13f/0x1d0 <ffffffff88d5c3bf>": {
			Kind: Call, Task: "00-ftrace.test", PID: 124, Context: Task, Flags: ".N...", Time: "16.986410",
			Func:   Symbol{Name: "fuse_permission", Module: "fuse", Addr: 0xffffffffc0326a20},
			Parent: Symbol{Name: "inode_permission", Offset: 0x13f, Addr: 0xffffffff88d5c3bf}},
		"  00-ftrace.test-124     [000] d.h..    17.235835: vring_interrupt+0x0/0xd0 [virtio_ring] <ffffffffc02f4d70> <-__handle_irq_event_percpu+0x46/0x190 <ffffffff88b12996>": {
			Kind: Call, Task: "00-ftrace.test", PID: 124, Context: HardIRQ, Flags: "d.h..", Time: "17.235835",
			Func:   Symbol{Name: "vring_interrupt", Module: "virtio_ring", Addr: 0xffffffffc02f4d70},
			Parent: Symbol{Name: "__handle_irq_event_percpu", Offset: 0x46, Addr: 0xffffffff88b12996}},
		// 6.12: the fork event, a module function.
		"  00-ftrace.test-168     [000] .N...    11.207663: sched_process_fork: comm=00-ftrace.test pid=168 child_comm=00-ftrace.test child_pid=171": {
			Kind: Other, Task: "00-ftrace.test", PID: 168, Context: Task, Flags: ".N...", Time: "11.207663", Text: "sched_process_fork",
			Args: "comm=00-ftrace.test pid=168 child_comm=00-ftrace.test child_pid=171"},
		"  00-ftrace.test-172     [000] .....    11.501870: ovl_show_options+0x4/0x320 [overlay] <ffffffffc03d5f84> <-show_mountinfo+0x207/0x2a0 <ffffffffb0698757>": {
			Kind: Call, Task: "00-ftrace.test", PID: 172, Context: Task, Flags: ".....", Time: "11.501870",
			Func:   Symbol{Name: "ovl_show_options", Module: "overlay", Offset: 4, Addr: 0xffffffffc03d5f84},
			Parent: Symbol{Name: "show_mountinfo", Offset: 0x207, Addr: 0xffffffffb0698757}},
		// The kernel's formats of what the lab traces did not show: lost
		// events, NMI, a task name with spaces and
		// dashes, no irq-info, no sym-offset/sym-addr, an unnamed address.
		"CPU:1 [LOST 123 EVENTS]": {Kind: Lost, CPU: 1, LostN: 123},
		"           bash-1977    [001] ...1.  1234.500000: sched_process_fork: comm=bash pid=1977 child_comm=bash child_pid=2001": {
			Kind: Other, Task: "bash", PID: 1977, CPU: 1, Context: Task, Flags: "...1.", Time: "1234.500000", Text: "sched_process_fork",
			Args: "comm=bash pid=1977 child_comm=bash child_pid=2001"},
		"   perf-ex a-mple-42      [003] d.Z1.    99.000001: nmi_handle+0x4/0x10 <ffffffff81000004>": {
			Kind: Call, Task: "perf-ex a-mple", PID: 42, CPU: 3, Context: NMI, Flags: "d.Z1.", Time: "99.000001",
			Func: Symbol{Name: "nmi_handle", Offset: 4, Addr: 0xffffffff81000004}},
		"  x-7 [002]  5.5: vfs_read <-ksys_read": {
			Kind: Call, Task: "x", PID: 7, CPU: 2, Context: Unknown, Time: "5.5",
			Func: Symbol{Name: "vfs_read"}, Parent: Symbol{Name: "ksys_read"}},
		"  x-7 [002] ..s.. 5.5: 0xffffffffc0001234 <-ksys_read": {
			Kind: Call, Task: "x", PID: 7, CPU: 2, Context: SoftIRQ, Flags: "..s..", Time: "5.5",
			Func: Symbol{Addr: 0xffffffffc0001234}, Parent: Symbol{Name: "ksys_read"}},
	} {
		got, err := ParseLine(line)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", line, d)
		}
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"hello world",
		"  x-7 [002] ..q.. 5.5: vfs_read", // no such context character
		"  x-7 [002] ..... notatime: vfs_read",
		"  x [002] ..... 5.5: vfs_read",        // no pid
		"  x-7 [002] ..... 5.5: vfs_read <zz>", // bad address
		"  x-7 [002] ..... 5.5: vfs_read+0x4 <ffffffff81000004>",
		"CPU:1 [LOST many EVENTS]",
	} {
		if r, err := ParseLine(line); err == nil {
			t.Errorf("%q: accepted as %+v", line, r)
		}
	}
}

func TestForkPIDs(t *testing.T) {
	if p, c, ok := ForkPIDs("comm=a b pid=1 child_comm=x child_pid=22"); !ok || p != 1 || c != 22 {
		t.Errorf("got %d %d %v", p, c, ok)
	}
	if _, _, ok := ForkPIDs("comm=a pid=1"); ok {
		t.Error("no child_pid: ok")
	}
}

func FuzzParseLine(f *testing.F) {
	for _, name := range []string{"testdata/function-6.12.txt", "testdata/function-6.1.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for l := range strings.Lines(string(b)) {
			f.Add(strings.TrimRight(l, "\n"))
		}
	}
	f.Add("CPU:0 [LOST 1 EVENTS]")
	f.Add("  a-1 [0] . 1: sched_process_fork: pid=1 child_pid=2")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseLine(line)
		if err != nil {
			return
		}
		switch r.Kind {
		case Call:
			if r.Func.Name == "" && r.Func.Addr == 0 {
				t.Fatalf("a call of nothing from %q: %+v", line, r)
			}
			if r.Func.Name != "" && !strings.Contains(line, r.Func.Name) {
				t.Fatalf("name %q not in %q", r.Func.Name, line)
			}
		case Marker:
			if !strings.Contains(line, r.Text) {
				t.Fatalf("marker %q not in %q", r.Text, line)
			}
		case Lost, Other:
		default:
			t.Fatalf("kind %d from %q", r.Kind, line)
		}
		if r.Kind != Lost && (r.PID < 0 || r.Context > Unknown || (r.Flags == "") != (r.Context == Unknown)) {
			t.Fatalf("%q: pid %d, context %v, flags %q", line, r.PID, r.Context, r.Flags)
		}
	})
}

// kallsymsOf is a kallsyms listing for the testdata traces (the 6.12 lines'
// addresses; a module symbol).
func symsOf(t testing.TB, text string) *Symbols {
	t.Helper()
	all, err := kallsyms.Parse(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewSymbols(all)
}

func TestResolve(t *testing.T) {
	s := symsOf(t, `ffffffff81000000 T _text
ffffffff81000100 t foo.isra.0
ffffffff81000100 t foo_alias
ffffffff81000200 T bar
ffffffff81000300 d some_data
ffffffff81000400 W weak_fn
ffffffffc0000000 t modfn	[mymod]
`)
	for addr, want := range map[uint64]Function{
		0xffffffff81000104: {Name: "foo.isra.0", Addr: 0xffffffff81000100},
		0xffffffff81000200: {Name: "bar", Addr: 0xffffffff81000200},
		0xffffffff81000304: {Name: "bar", Addr: 0xffffffff81000200}, // data symbols are not code
		0xffffffff81000400: {Name: "weak_fn", Addr: 0xffffffff81000400},
		0xffffffffc0000004: {Name: "modfn", Module: "mymod", Addr: 0xffffffffc0000000},
	} {
		if got, ok := s.Resolve(addr); !ok || got != want {
			t.Errorf("%#x: %v %v, want %v", addr, got, ok, want)
		}
	}
	if f, ok := s.Resolve(0x1000); ok {
		t.Errorf("below every symbol: %v", f)
	}
}

func TestParseRingStats(t *testing.T) {
	const stats = "entries: 123456\noverrun: 789\ncommit overrun: 0\nbytes: 1048576\noldest event ts:  1234.567890\nnow ts:  1240.000000\ndropped events: 0\nread events: 0\n"
	e, o := ParseRingStats(stats)
	if e != 123456 || o != 789 {
		t.Fatalf("entries %d overrun %d, want 123456 789 (commit overrun is another counter)", e, o)
	}
}

func FuzzParseRingStats(f *testing.F) {
	f.Add("entries: 1\noverrun: 2\n")
	f.Add("entries: -1\noverrun:x\n")
	f.Fuzz(func(t *testing.T, s string) {
		e, o := ParseRingStats(s)
		if (e != 0 && !strings.Contains(s, "entries")) || (o != 0 && !strings.Contains(s, "overrun")) {
			t.Fatalf("counters %d, %d from %q", e, o, s)
		}
	})
}
