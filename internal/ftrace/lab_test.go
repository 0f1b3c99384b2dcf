package ftrace

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hapscope/hapscope/internal/kallsyms"
	"github.com/hapscope/hapscope/internal/labtest"
)

const helperEnv = "HAPSCOPE_FTRACE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "child":
		os.Exit(0)
	}
	// Helper: wait until traced, then make a few known system calls, read
	// a file (on the lab's virtiofs, a module on 6.1) and run a child.
	fmt.Println("waiting")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for i := 0; i < 50; i++ {
		syscall.Getpid()
	}
	f, err := os.Open(os.Getenv(helperEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper open:", err)
		os.Exit(1)
	}
	if n, err := f.Read(make([]byte, 4096)); err != nil || n == 0 {
		fmt.Fprintln(os.Stderr, "helper read:", err)
		os.Exit(1)
	}
	f.Close()
	// A child, which the trace must follow (function-fork, fork events).
	c := exec.Command(os.Getenv(helperEnv), "-test.run=^$")
	c.Env = append(os.Environ(), helperEnv+"=child")
	if err := c.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "helper child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestLabFunctionTracer traces a helper process with the function tracer
// as Session sets it up, and checks the whole trace parses, the markers
// bound the window, every traced address resolves through kallsyms to the
// name ftrace printed, and the helper's system calls are there in task
// context. The raw trace goes to the lab's out directory (the parser's
// test lines were taken from such traces of both kernels).
func TestLabFunctionTracer(t *testing.T) {
	labtest.Require(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+self)
	cmd.Stderr = os.Stderr
	stdin := labtest.StartHeld(t, cmd)
	tids, err := Threads(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Setup(Options{Tracer: FunctionTracer, PIDs: tids, Fork: true, BufferKB: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Mark("hapscope-start"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if err := s.Mark("hapscope-end"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	pids := s.PIDs()
	if st, err := s.Stats(); err != nil || st.Overrun != 0 {
		t.Fatalf("ring buffer %+v, %v: want no overrun", st, err)
	}
	kf, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	all, err := kallsyms.Parse(kf, nil)
	kf.Close()
	if err != nil {
		t.Fatal(err)
	}
	syms := NewSymbols(all)
	tr, err := s.Trace()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(tr)
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out := labtest.OutDir(); out != "" {
		os.WriteFile(filepath.Join(out, "ftrace-function-"+labtest.Kernel()+".txt"), raw, 0o644)
	}
	head := strings.SplitN(string(raw), "\n", 40)
	t.Logf("%s: trace head:\n%s", labtest.Kernel(), strings.Join(head[:len(head)-1], "\n"))
	w, err := Collect(strings.NewReader(string(raw)), syms, "hapscope-start", "hapscope-end", pids)
	if err != nil {
		t.Fatal(err)
	}
	modules := 0
	for f := range w.Funcs {
		if f.Module != "" {
			modules++
		}
	}
	t.Logf("%d lines, %d calls in the window (%d before, %d after), %d functions (%d in modules), %d lost, %d unresolved, %d renamed; traced pids %v and %d children",
		w.Lines, w.Records, w.Before, w.After, len(w.Funcs), modules, w.Lost, w.Unresolved, w.Renamed, pids, w.Forks)
	if w.Records == 0 || w.Lost != 0 || w.Unresolved != 0 || w.Renamed != 0 || w.Forks == 0 {
		t.Errorf("window: %d calls, %d lost, %d unresolved, %d renamed: want calls and nothing else; %d children followed, want some", w.Records, w.Lost, w.Unresolved, w.Renamed, w.Forks)
	}
	task := map[string]Function{}
	for _, f := range w.Task() {
		task[f.Name] = f
	}
	// (__x64_sys_getpid is inlined into x64_sys_call's switch: not a call.)
	for _, name := range []string{"__task_pid_nr_ns", "vfs_read", "do_exit", "kernel_clone"} {
		f, ok := task[name]
		if !ok {
			t.Errorf("%s not in the helper's task context", name)
			continue
		}
		if want, _ := syms.Resolve(f.Addr); want != f || f.Addr == 0 {
			t.Errorf("%s keyed as %v, kallsyms says %v", name, f, want)
		}
	}
	// Every line of the whole trace parses, and the addresses match the
	// printed names and modules.
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	bad := 0
	logged := map[string]bool{}
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		r, err := ParseLine(l)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		kind := fmt.Sprint(r.Kind, r.Context, r.Func.Module != "")
		if r.Kind == Other {
			kind = r.Text
		}
		if !logged[kind] {
			logged[kind] = true
			t.Logf("sample (%s): %s", kind, l)
		}
		if r.Kind != Call {
			continue
		}
		if r.Func.Addr == 0 || r.Flags == "" || r.Func.Name == "" {
			bad++
			if bad < 5 {
				t.Errorf("call without address, flags or name: %q → %+v", l, r)
			}
			continue
		}
		if f, ok := syms.Resolve(r.Func.Addr); !ok || f.Name != r.Func.Name || f.Module != r.Func.Module || r.Func.Addr-f.Addr != r.Func.Offset {
			bad++
			if bad < 5 {
				t.Errorf("%q: address resolves to %v (offset %#x)", l, f, r.Func.Addr-f.Addr)
			}
		}
	}
}

// TestLabFunctionGraph sets up function_graph as the overhead comparison's
// 2018 baseline does and checks ParseGraph reads the helper's calls with
// their context column.
func TestLabFunctionGraph(t *testing.T) {
	labtest.Require(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+self)
	stdin := labtest.StartHeld(t, cmd)
	tids, err := Threads(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Setup(Options{Tracer: FunctionGraph, PIDs: tids, Fork: true, BufferKB: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.Trace()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(tr)
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	head := strings.SplitN(string(raw), "\n", 30)
	t.Logf("%s: trace head:\n%s", labtest.Kernel(), strings.Join(head[:len(head)-1], "\n"))
	g, err := ParseGraph(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines, %d functions, %d interrupt calls left out; ring buffer %+v", g.Lines, len(g.Funcs), g.IRQCalls, st)
	if !g.Context || st.Entries == 0 || st.Overrun != 0 {
		t.Errorf("context column %v, ring buffer %+v: want the column, entries and no overrun", g.Context, st)
	}
	for _, name := range []string{"__task_pid_nr_ns", "vfs_read", "do_exit", "kernel_clone"} {
		if !g.Funcs[name] {
			t.Errorf("%s not in the helper's function_graph trace", name)
		}
	}
}
