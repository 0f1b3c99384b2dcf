package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/internal/matrix"
	"github.com/hapscope/hapscope/internal/seccomp"
)

// asCLI makes the test binary act as the hapscope CLI (the guest has no Go
// toolchain to build it).
const asCLI = "HAPSCOPE_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestLabRunSIGINTCleanup interrupts `hapscope run` while it measures and
// checks that it exits with an error, stops the workload and leaves no
// hapscope BPF program or link in the kernel.
func TestLabRunSIGINTCleanup(t *testing.T) {
	probing, _ := labProbing(t)
	if progs, links, err := labtest.BPFObjects("hap_"); err != nil || len(progs)+links > 0 {
		t.Fatalf("before the run: %v programs, %d links, %v", progs, links, err)
	}
	marker := "/tmp/hapscope-sigint-workload"
	cmd := exec.Command(os.Args[0], append(append([]string{"run", "-q", "--warmup", "1s", "--window", "5m"}, probing...), "--", "/bin/sh", "-c", "touch "+marker+"; exec sleep 600")...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the tracer is attached and the workload runs.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		progs, links, _ := labtest.BPFObjects("hap_")
		_, err := os.Stat(marker)
		if len(progs) > 0 && links > 0 && err == nil {
			t.Logf("attached: %v, %d links; workload running", progs, links)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run never attached and started the workload:\n%s", stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("exited after %s: %v; stderr: %s", time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("interrupted run: %v, want exit status 130 (it cannot have a score)", err)
	}
	for i := 0; ; i++ {
		progs, links, err := labtest.BPFObjects("hap_")
		if err != nil {
			t.Fatal(err)
		}
		if len(progs) == 0 && links == 0 {
			break
		}
		if i > 120 {
			t.Fatalf("after SIGINT: %d hapscope programs (%v) and %d links remain", len(progs), progs, links)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, _ := exec.Command("/bin/sh", "-c", "ps | grep -c '[s]leep 600'").Output(); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("the workload still runs after the interrupted run")
	}
}

// labWorkload reads /dev/zero and writes /dev/null in a loop: it certainly
// runs these functions.
const labWorkload = "while :; do dd if=/dev/zero of=/dev/null bs=4096 count=200 2>/dev/null; done"

var labFunctions = []string{"ksys_read", "vfs_read", "ksys_write", "vfs_write"}

// labSubset is what the CLI probes on 6.1 (-functions): fentry attaches
// one program per function, and the whole catalogue would take tens of
// minutes under emulation. tcp_sendmsg is one the read/write loop never
// runs.
var labSubset = append(slices.Clone(labFunctions), "do_sys_openat2", "filp_close", "tcp_sendmsg")

// labProbing returns the flags that bound what the CLI probes in this lab
// kernel and the backend it will pick: nothing on 6.12, where kprobe.multi
// attaches the whole catalogue in seconds; a -functions file of labSubset on
// 6.1 (fentry).
func labProbing(t *testing.T) (args []string, backend coverage.Backend) {
	t.Helper()
	labtest.Require(t)
	if labtest.Kernel() == "6.12" {
		return nil, coverage.KprobeMulti
	}
	file := filepath.Join(t.TempDir(), "functions")
	if err := os.WriteFile(file, []byte("# the read/write loop's path, and one it never runs\n"+strings.Join(labSubset, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--functions", file}, coverage.Fentry
}

// runLabCLI runs the test binary as hapscope with args and returns its
// stdout, stderr and exit status.
func runLabCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	t.Logf("hapscope %s: %s, %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// checkLabProfile checks a profile the CLI wrote: it reads back, was
// measured exactly on this kernel's lines, holds the functions the
// workload certainly runs, has lines, reports the window's misses, and its
// hit counts say which probe mode measured it (coverage.Counts: every
// function counted; coverage.Pruned: none, a probe stops counting once it
// has seen its function).
func checkLabProfile(t *testing.T, js []byte, counts bool, backend coverage.Backend) *hap.Profile {
	t.Helper()
	if out := labtest.OutDir(); out != "" {
		os.WriteFile(filepath.Join(out, "cli-"+strings.ReplaceAll(t.Name(), "/", "-")+".json"), js, 0o644)
	}
	p, err := hap.ReadJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatalf("profile does not read back: %v\n%.2000s", err, js)
	}
	t.Log(p.Summary())
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	// Misses and drops are reported for the window (whether they cover
	// only the window or the tracer's life is the library's contract).
	for _, k := range []string{"misses", "drops"} {
		var n uint64
		if err := json.Unmarshal(raw[k], &n); err != nil {
			t.Errorf("profile field %q: %s: %v", k, raw[k], err)
		}
	}
	if p.Release != labtest.Release() || p.Backend != string(backend) {
		t.Errorf("kernel %s, backend %s; want %s, %s", p.Release, p.Backend, labtest.Release(), backend)
	}
	if want := map[bool]coverage.Mode{true: coverage.Counts, false: coverage.Pruned}[counts]; p.Probes != string(want) {
		t.Errorf("profile says probes %q, want %q", p.Probes, want)
	}
	switch {
	case backend == coverage.KprobeMulti && p.Attached < 30000:
		t.Errorf("%d functions attached; want the whole catalogue (tens of thousands)", p.Attached)
	case backend == coverage.Fentry && p.Attached != len(labSubset):
		t.Errorf("%d functions attached; want the %d of -functions", p.Attached, len(labSubset))
	}
	if want := hap.ModeExact; p.Mode != want {
		t.Errorf("mode %q, want %q (the lab has this kernel's DWARF)", p.Mode, want)
	}
	if p.Lines.Total <= 0 || p.Lines.Union <= 0 || len(p.LineSet) == 0 {
		t.Errorf("lines %+v, %d files: want lines", p.Lines, len(p.LineSet))
	}
	byName := map[string]hap.Func{}
	counted := 0
	for _, f := range p.Functions {
		if f.Name == "tcp_sendmsg" {
			t.Errorf("tcp_sendmsg in the profile of a read/write loop")
		}
		byName[f.Name] = f
		if f.Hits > 0 {
			counted++
		}
	}
	for _, name := range labFunctions {
		f, ok := byName[name]
		if !ok {
			t.Errorf("%s missing from the %d functions of a read/write loop", name, len(p.Functions))
			continue
		}
		if f.Lines <= 0 {
			t.Errorf("%s: %d lines", name, f.Lines)
		}
		if counts && f.Hits < 10 {
			t.Errorf("%s: %d hits in counts mode; the loop calls it thousands of times", name, f.Hits)
		}
	}
	switch {
	case counts && counted != len(p.Functions):
		t.Errorf("counts mode: %d of %d functions have hit counts, want all", counted, len(p.Functions))
	case !counts && counted != 0:
		t.Errorf("pruned mode: %d of %d functions have hit counts, want none (counts mode measured it?)", counted, len(p.Functions))
	}
	return p
}

// TestLabRun runs `hapscope run` on a read/write loop, pruning and with
// --counts, and checks the profile it writes (-o) and prints (--json).
func TestLabRun(t *testing.T) {
	probing, backend := labProbing(t)
	for _, mode := range []string{"pruned", "counts"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "profile.json")
			args := append([]string{"run", "--warmup", "1s", "--window", "3s", "--samples", "3", "--json", "-o", out}, probing...)
			if mode == "counts" {
				args = append(args, "--counts")
			}
			stdout, stderr, code := runLabCLI(t, append(args, "--", "/bin/sh", "-c", labWorkload)...)
			t.Logf("stderr:\n%s", stderr)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			if strings.ContainsRune(stderr, '\r') {
				t.Errorf("progress bar frames on a stderr that is not a terminal")
			}
			for _, stage := range []string{"hapscope: attach " + string(backend) + ": ", "hapscope: detach " + string(backend) + ": "} {
				if !strings.Contains(stderr, stage) {
					t.Errorf("stderr lacks the stage line %q", stage)
				}
			}
			js, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(js)) != strings.TrimSpace(stdout) {
				t.Errorf("-o and --json differ")
			}
			p := checkLabProfile(t, js, mode == "counts", backend)
			if p.Workload == nil || p.Workload.Command[0] != "/bin/sh" || p.Workload.ExitCode != -1 {
				t.Errorf("workload %+v: want /bin/sh, still running at the end of the window (-1)", p.Workload)
			}
			if len(p.Convergence) != 3 {
				t.Errorf("%d convergence points, want 3", len(p.Convergence))
			}
		})
	}
}

// TestLabScorePid scores the cgroup of a running process with --counts.
// A cgroup that does not exist fails at once, before anything is attached.
func TestLabScorePid(t *testing.T) {
	probing, backend := labProbing(t)
	_, stderr, code := runLabCLI(t, "score", "-q", "--cgroup", "/nonexistent")
	if code != 1 || !strings.Contains(stderr, "/nonexistent does not exist") {
		t.Errorf("score --cgroup /nonexistent: exit %d, %q; want 1 and the path", code, stderr)
	}
	if progs, links, err := labtest.BPFObjects("hap_"); err != nil || len(progs)+links > 0 {
		t.Fatalf("after the refused score: %v programs, %d links, %v", progs, links, err)
	}

	dir := filepath.Join("/sys/fs/cgroup", "hapscope-score-pid")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := exec.Command("/bin/sh", "-c", labWorkload)
	w.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}
	err = w.Start()
	syscall.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-w.Process.Pid, syscall.SIGKILL)
		w.Wait()
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	stdout, stderr, code := runLabCLI(t, append([]string{"score", "-q", "--counts", "--pid", strconv.Itoa(w.Process.Pid),
		"--warmup", "1s", "--window", "3s", "--samples", "3", "--json"}, probing...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	p := checkLabProfile(t, []byte(stdout), true, backend)
	if p.Label != "hapscope-score-pid" {
		t.Errorf("label %q, want the cgroup's name", p.Label)
	}
}

// TestLabSeccompFromStart: run --syscalls --warmup 0 opens the window
// before the command starts, so the profile has the command's execve and
// its dynamic loader's set-up (arch_prctl, mprotect) besides what it does
// after; seccomp turns it into a profile allowing exactly those calls.
// The tracer probes the system calls' entry points only: every call
// enters one.
func TestLabSeccompFromStart(t *testing.T) {
	labtest.Require(t)
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range matrix.SyscallEntries(cat).Functions {
		names = append(names, f.Name)
	}
	file := filepath.Join(t.TempDir(), "functions")
	if err := os.WriteFile(file, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prof, sec := filepath.Join(dir, "p.json"), filepath.Join(dir, "seccomp.json")
	// mkdir's own call, and one the loader never makes.
	_, stderr, code := runLabCLI(t, "run", "-q", "--syscalls", "--warmup", "0", "--window", "3s", "--samples", "1",
		"--functions", file, "-o", prof, "--", "/bin/mkdir", filepath.Join(dir, "made"))
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runLabCLI(t, "seccomp", "-o", sec, prof)
	t.Logf("seccomp: %s", stderr)
	if code != 0 {
		t.Fatalf("seccomp: exit %d", code)
	}
	b, err := os.ReadFile(sec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := seccomp.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"execve", "arch_prctl", "mprotect", "exit_group"} {
		if p.Verdict(c) != seccomp.Allowed {
			t.Errorf("%s not allowed: the profile missed mkdir's start-up or its exit", c)
		}
	}
	if p.Verdict("mkdir") != seccomp.Allowed && p.Verdict("mkdirat") != seccomp.Allowed {
		t.Error("neither mkdir nor mkdirat allowed: the profile missed mkdir's own call")
	}
	for _, c := range []string{"bind", "ptrace", "clone3"} {
		if p.Verdict(c) != seccomp.Denied {
			t.Errorf("%s allowed, but mkdir never made it", c)
		}
	}
}
