package ftrace

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A window of the 6.1 testdata trace: module code, interrupts, a task not
// traced, a child that joins through a fork event, and calls outside the
// markers.
const window = `# tracer: function
  t-1 [000] ..... 1.0: vfs_read+0x0/0x10 <ffffffff81000200> <-x <ffffffff81000000>
  t-1 [000] ..... 1.1: tracing_mark_write+0xdd/0x240 <ffffffff81000f00>: start
  t-1 [000] ..... 1.2: vfs_read+0x0/0x10 <ffffffff81000200> <-x <ffffffff81000000>
  t-1 [000] ..... 1.3: foo.isra.0+0x4/0x10 <ffffffff81000104> <-x <ffffffff81000000>
  t-1 [000] ..... 1.3: foo.isra.0+0x4/0x10 <ffffffff81000104> <-x <ffffffff81000000>
  t-1 [000] .N... 1.4: modfn+0x4/0x10 [mymod] <ffffffffc0000004> <-x <ffffffff81000000>
  t-1 [000] ..s.. 1.5: softfn+0x0/0x10 <ffffffff81000400> <-x <ffffffff81000000>
  t-1 [000] d.h.. 1.5: hardfn+0x0/0x10 <ffffffff81000500> <-x <ffffffff81000000>
  t-1 [000] ..... 1.5: rcu_note+0x0/0x10 <ffffffff81000600> <-x <ffffffff81000000>
  u-9 [000] d..2. 1.6: switchfn+0x0/0x10 <ffffffff81000700> <-x <ffffffff81000000>
  t-1 [000] ..... 1.7: sched_process_fork: comm=t pid=1 child_comm=t child_pid=5
  t-5 [000] ..... 1.8: childfn+0x0/0x10 <ffffffff81000800> <-x <ffffffff81000000>
  t-1 [000] ..... 1.9: tracing_mark_write+0xdd/0x240 <ffffffff81000f00>: end
  t-1 [000] ..... 2.0: late+0x0/0x10 <ffffffff81000900> <-x <ffffffff81000000>
`

const windowSyms = `ffffffff81000000 T x
ffffffff81000100 t foo.isra.0
ffffffff81000200 T vfs_read
ffffffff81000400 t softfn
ffffffff81000500 t hardfn
ffffffff81000600 t rcu_note
ffffffff81000700 t switchfn
ffffffff81000800 t childfn
ffffffff81000900 t late
ffffffff81000f00 t tracing_mark_write
ffffffffc0000000 t modfn	[mymod]
`

func fn(name string, addr uint64) Function { return Function{Name: name, Addr: addr} }

func TestCollectAndCompare(t *testing.T) {
	syms := symsOf(t, windowSyms)
	w, err := Collect(strings.NewReader(window), syms, "start", "end", []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if w.Before != 1 || w.After != 1 || w.Records != 9 || w.Forks != 1 || w.Renamed != 0 || w.Unresolved != 0 {
		t.Errorf("window: %+v", w)
	}
	wantTask := []Function{fn("childfn", 0xffffffff81000800), fn("foo.isra.0", 0xffffffff81000100),
		{Name: "modfn", Module: "mymod", Addr: 0xffffffffc0000000}, fn("rcu_note", 0xffffffff81000600), fn("vfs_read", 0xffffffff81000200)}
	if d := cmp.Diff(wantTask, w.Task()); d != "" {
		t.Errorf("task functions (-want +got):\n%s", d)
	}
	attached := map[uint64]bool{0xffffffff81000200: true, 0xffffffff81000800: true, 0xffffffff81000400: true, 0xffffffff81000700: true, 0xffffffff81000a00: true}
	cat := &Catalogue{
		Attached: func(f Function) bool { return attached[f.Addr] },
		Denied:   func(n string) bool { return strings.HasPrefix(n, "rcu_") },
		BTF:      func(n string) bool { return !strings.Contains(n, ".") },
	}
	// The other tracer saw vfs_read (shared), missed childfn, and added
	// softfn (a soft IRQ), switchfn (another task) and one nobody recorded.
	r := Compare(w, []Function{fn("vfs_read", 0xffffffff81000200), fn("softfn", 0xffffffff81000400),
		fn("switchfn", 0xffffffff81000700), fn("quiet", 0xffffffff81000a00)}, cat)
	if r.Denominator != 5 || len(r.Shared) != 1 || r.Reported != 4 {
		t.Errorf("denominator %d, shared %v, reported %d", r.Denominator, r.Shared, r.Reported)
	}
	wantMissed := []Miss{
		{Function: fn("childfn", 0xffffffff81000800), Reason: InCatalogue, Calls: 1},
		{Function: fn("foo.isra.0", 0xffffffff81000100), Reason: Clone, Calls: 2},
		{Function: Function{Name: "modfn", Module: "mymod", Addr: 0xffffffffc0000000}, Reason: Module, Calls: 1},
	}
	if d := cmp.Diff(wantMissed, r.Missed); d != "" {
		t.Errorf("missed (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Function{fn("rcu_note", 0xffffffff81000600)}, r.Denied); d != "" {
		t.Errorf("denied (-want +got):\n%s", d)
	}
	wantAdded := []Addition{
		{Function: fn("quiet", 0xffffffff81000a00), Context: "not recorded"},
		{Function: fn("softfn", 0xffffffff81000400), Context: "1 in soft IRQ"},
		{Function: fn("switchfn", 0xffffffff81000700), Context: "1 by other tasks"},
	}
	if d := cmp.Diff(wantAdded, r.Added); d != "" {
		t.Errorf("added (-want +got):\n%s", d)
	}
	if r.Comparable() != 2 || r.Recall() != 0.5 || r.Jaccard() != 0.2 {
		t.Errorf("comparable %d, recall %v, Jaccard %v; want 2, 0.5, 0.2", r.Comparable(), r.Recall(), r.Jaccard())
	}
	// Over everything ftrace recorded: 1 shared of 5, and 3 added.
	if r.Coverage() != 0.2 || r.JaccardAll() != 0.125 {
		t.Errorf("coverage %v, Jaccard over all %v; want 0.2, 0.125", r.Coverage(), r.JaccardAll())
	}
	for _, want := range []string{"5 functions (denominator)", "deny-listed (in the denominator, never probed): 1: rcu_note", "missed, in the catalogue, not reported: 1: childfn"} {
		if !strings.Contains(r.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
}

func TestCollectNeedsMarkers(t *testing.T) {
	for _, tc := range []struct{ start, end string }{{"nope", "end"}, {"start", "nope"}, {"end", "start"}} {
		if _, err := Collect(strings.NewReader(window), nil, tc.start, tc.end, nil); err == nil {
			t.Errorf("markers %q … %q: no error", tc.start, tc.end)
		}
	}
	if _, err := Collect(strings.NewReader(window+"garbage\n"), nil, "start", "end", nil); err == nil {
		t.Error("a line that is no record: no error")
	}
}

// Both testdata traces parse whole, their markers bound a window, and
// without a pid filter or symbols every call is keyed by its printed name.
func TestCollectTestdata(t *testing.T) {
	for _, name := range []string{"testdata/function-6.12.txt", "testdata/function-6.1.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Collect(strings.NewReader(string(b)), nil, "hapscope-start", "hapscope-end", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w.Records != strings.Count(string(b), " <-") {
			t.Errorf("%s: %d calls, want %d", name, w.Records, strings.Count(string(b), " <-"))
		}
		for f := range w.Funcs {
			if f.Name == "" || f.Addr != 0 {
				t.Errorf("%s: keyed %v without symbols", name, f)
			}
		}
	}
}

func TestCompareNames(t *testing.T) {
	r := CompareNames(map[string]bool{"a": true, "b": true, "out": true}, map[string]bool{"a": true, "c": true},
		func(n string) bool { return n != "out" })
	want := NameReport{Outside: 1, Shared: 1, Jaccard: 1.0 / 3, OnlyOther: []string{"c"}, OnlyFtrace: []string{"b"}}
	if d := cmp.Diff(want, r); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// graphOut is function_graph output with funcgraph-proc and
// latency-format: syscall_enter_from_user_mode and ep_poll_callback ran in
// soft IRQ context here ('s' in the third latency column).
const graphOut = `# tracer: function_graph
#
#                                   _-----=> irqs-off
#                                  / _----=> need-resched
#                                 | / _---=> hardirq/softirq
#                                 || / _--=> preempt-depth
#                                 ||| / _-=> migrate-disable
#                                 |||| /
# CPU  TASK/PID                   |||||  DURATION                  FUNCTION CALLS
# |     |    |                    |||||   |   |                     |   |   |   |
 0)  redis-s-212    |  ....1. |               |  do_syscall_64() {
 0)  redis-s-212    |  d.s1.  |   0.301 us    |    syscall_enter_from_user_mode();
 0)  redis-s-212    |  ....1. |               |    __x64_sys_epoll_wait() {
 0)  redis-s-212    |  ....1. | + 12.301 us   |      ep_poll.isra.0();
 0)  redis-s-212    |  ..s2.  |   1.0 us      |      ep_poll_callback();
 0)  redis-s-212    |  ....1. | ! 123.4 us    |    } /* __x64_sys_epoll_wait */
 ------------------------------------------
 1)  redis-s-212   =>  <idle>-0
 ------------------------------------------
 1)  redis-s-212    |  ....1. |   0.101 us    |  tcp_sendmsg();
`

func TestParseGraph(t *testing.T) {
	g, err := ParseGraph(strings.NewReader(graphOut))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"do_syscall_64": true, "__x64_sys_epoll_wait": true, "ep_poll": true, "tcp_sendmsg": true}
	if d := cmp.Diff(want, g.Funcs); d != "" || g.Lines != 20 || g.IRQCalls != 2 || !g.Context {
		t.Errorf("%d lines, %d interrupt calls, context %v; functions (-want +got):\n%s", g.Lines, g.IRQCalls, g.Context, d)
	}
	g, err = ParseGraph(strings.NewReader(" 0)  x-1  |   0.1 us  |  vfs_read();\n"))
	if err != nil || g.Context || !g.Funcs["vfs_read"] {
		t.Errorf("a trace without the latency column: %+v, %v", g, err)
	}
}

// The head of a function_graph trace of the 6.12 lab kernel
// (TestLabFunctionGraph), all in task context.
func TestParseGraphReal(t *testing.T) {
	b, err := os.ReadFile("testdata/function_graph-6.12.txt")
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGraph(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"__mod_memcg_lruvec_state": true, "__cgroup_rstat_updated": true, "__mod_zone_page_state": true,
		"__page_cache_release": true, "__mod_lruvec_state": true, "__mod_node_page_state": true}
	if d := cmp.Diff(want, g.Funcs); d != "" || g.Lines != 28 || g.IRQCalls != 0 || !g.Context {
		t.Errorf("%d lines, %d interrupt calls, context %v; functions (-want +got):\n%s", g.Lines, g.IRQCalls, g.Context, d)
	}
}

func FuzzParseGraph(f *testing.F) {
	f.Add(graphOut)
	if b, err := os.ReadFile("testdata/function_graph-6.12.txt"); err == nil {
		f.Add(string(b))
	}
	f.Add(" 0) x-1 | | a.b();\n")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGraph(strings.NewReader(s))
		if err != nil {
			return
		}
		if g.Lines > strings.Count(s, "\n")+1 {
			t.Fatalf("%d lines from %d newlines", g.Lines, strings.Count(s, "\n"))
		}
		if g.IRQCalls > g.Lines {
			t.Fatalf("%d interrupt calls in %d lines", g.IRQCalls, g.Lines)
		}
		for name := range g.Funcs {
			if name == "" || strings.ContainsAny(name, ".( \t") || !strings.Contains(s, name) {
				t.Fatalf("bad function name %q", name)
			}
		}
	})
}

func TestGraphCallName(t *testing.T) {
	for line, want := range map[string]string{
		" 0)  redis-s-212    |               |  do_syscall_64() {":     "do_syscall_64",
		" 0)  redis-s-212    |   0.301 us    |    ep_poll.isra.0();  ": "ep_poll.isra.0",
		" 0)  redis-s-212    | ! 123.4 us    |    } /* ep_poll */":     "",
		" 0)  x-1 | |  9abc();": "",
		"foo();":                "",
		" 0) x-1 | | ();":       "",
	} {
		if got := graphCallName([]byte(line)); got != want {
			t.Errorf("%q: got %q, want %q", line, got, want)
		}
	}
}
