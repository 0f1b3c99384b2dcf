package coverage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
)

// Helper modes: the test binary re-executes itself as a workload.
const helperEnv = "HAPSCOPE_COVERAGE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "getpid":
		for i := 0; i < 20000; i++ {
			syscall.Getpid()
		}
	case "read":
		f, err := os.Open("/dev/zero")
		if err != nil {
			panic(err)
		}
		b := make([]byte, 4096)
		for i := 0; i < 2000; i++ {
			f.Read(b)
		}
	case "mkdir":
		d, _ := os.MkdirTemp("", "hapscope-mkdir")
		for i := 0; i < 200; i++ {
			p := filepath.Join(d, strconv.Itoa(i))
			if err := os.Mkdir(p, 0o755); err != nil {
				panic(err)
			}
			os.Remove(p)
		}
		os.Remove(d)
	case "groundtruth":
		groundTruthWork()
	case "prune":
		pruneWork()
	case "open-unprivileged":
		fmt.Print(unprivilegedOpen())
	case "hold":
		// Opens a tracer and waits to be killed (cleanup after SIGKILL).
		cat, err := LoadCatalogue()
		if err != nil {
			panic(err)
		}
		sub := labSubset(cat, Backend(os.Getenv("HAPSCOPE_BACKEND")), 40)
		if m := os.Getenv("HAPSCOPE_MODULE"); m != "" {
			sub = moduleSubset(cat, m)
		}
		tr, err := Open(context.Background(), sub, Options{Backend: Backend(os.Getenv("HAPSCOPE_BACKEND"))})
		if err != nil {
			panic(err)
		}
		fmt.Println("ready", tr.attached)
		time.Sleep(time.Hour)
	default:
		panic("unknown helper " + os.Getenv(helperEnv))
	}
	os.Exit(0)
}

// Functions the acceptance tests assert on; always part of a subset.
var asserted = []string{
	"vfs_read", "ksys_read", "read_iter_zero", "__x64_sys_read",
	"__do_sys_getpid", "__x64_sys_getpid", "__task_pid_nr_ns",
	"do_mkdirat", "vfs_mkdir", "do_rmdir", "vfs_rmdir", "__x64_sys_mkdir", "__x64_sys_mkdirat",
}

// labSubset bounds the slow one-link-per-function backends: the asserted
// functions plus evenly spread others, n in all. kprobe.multi gets all.
func labSubset(cat *Catalogue, b Backend, n int) *Catalogue {
	if b == KprobeMulti && n <= 0 {
		return cat
	}
	if n <= 0 {
		n = 150
	}
	step := len(cat.Functions)/n + 1
	i := 0
	return cat.Subset(func(f Function) bool {
		i++
		return slices.Contains(asserted, f.Name) || i%step == 0
	})
}

// labBackends are the backends the lab kernel must support.
func labBackends(t *testing.T) []Backend {
	switch labtest.Kernel() {
	case "6.12":
		return []Backend{KprobeMulti, Fentry, Kprobe}
	case "6.1":
		return []Backend{Fentry, Kprobe}
	}
	t.Fatalf("unknown lab kernel %q", labtest.Kernel())
	return nil
}

// cgroup creates a cgroup v2 directory, removed at cleanup.
func mkCgroup(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
}

// runHelper runs the test binary in helper mode inside cgroup dir (it is
// born there: clone3 with CLONE_INTO_CGROUP).
func runHelper(t *testing.T, dir, mode string) {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper %s in %s: %v\n%s", mode, dir, err, out)
	}
}

func has(s *Snapshot, name string) bool {
	for _, h := range s.Hits {
		if h.Name == name {
			return true
		}
	}
	return false
}

func hasAny(s *Snapshot, names ...string) bool {
	for _, n := range names {
		if has(s, n) {
			return true
		}
	}
	return false
}

func cgroupBase(t testing.TB) string {
	root, err := cgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "hapscope-"+strings.ReplaceAll(t.Name(), "/", "-"))
}

// TestLabWorkload covers acceptance items 1-3 for every backend of the lab
// kernel, one attach per backend:
//  1. a known workload yields the functions it must (reads of /dev/zero →
//     vfs_read; a getpid loop → the getpid path),
//  2. a sibling cgroup doing mkdir/rmdir adds nothing of that to the target,
//     while its own scope has it,
//  3. a descendant cgroup created after tracing started is included.
//
// fentry and kprobe attach one link per function, slow under emulation:
// they get a subset of about 150 functions that includes the asserted ones.
func TestLabWorkload(t *testing.T) {
	labtest.Require(t)
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("catalogue: %v", cat)
	for _, b := range labBackends(t) {
		t.Run(string(b), func(t *testing.T) {
			sub := labSubset(cat, b, 0)
			start := time.Now()
			tr, err := Open(context.Background(), sub, Options{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: attached %d of %d in %v; excluded %v", b, tr.attached, len(sub.Functions), time.Since(start), tr.excluded)
			for r, e := range tr.samples {
				t.Logf("  %s, e.g. %s", r, e)
			}
			defer func() {
				start := time.Now()
				if err := tr.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
				t.Logf("%s: detached in %v", b, time.Since(start))
			}()
			base := cgroupBase(t)
			target, sibling, desc := base+"/target", base+"/sibling", base+"/desc"
			for _, d := range []string{base, target, sibling, desc} {
				mkCgroup(t, d)
			}
			sT, err := tr.AddScope(target)
			if err != nil {
				t.Fatal(err)
			}
			sS, err := tr.AddScope(sibling)
			if err != nil {
				t.Fatal(err)
			}
			sD, err := tr.AddScope(desc)
			if err != nil {
				t.Fatal(err)
			}
			child := desc + "/later/child"
			mkCgroup(t, desc+"/later")
			mkCgroup(t, child)

			runHelper(t, target, "read")
			runHelper(t, target, "getpid")
			runHelper(t, sibling, "mkdir")
			runHelper(t, child, "mkdir")

			snT, err := tr.Snapshot(sT)
			if err != nil {
				t.Fatal(err)
			}
			snS, _ := tr.Snapshot(sS)
			snD, _ := tr.Snapshot(sD)
			for _, s := range []*Snapshot{snT, snS, snD} {
				t.Logf("%s: %d functions, misses %d, dropped %d, interrupt events skipped %d (%s)",
					s.Scope, len(s.Hits), s.Misses, s.Dropped, s.Skipped, s.Interrupts)
			}
			if snT.Dropped != 0 {
				t.Errorf("dropped %d events", snT.Dropped)
			}
			// 1.
			if !has(snT, "vfs_read") {
				t.Errorf("target read /dev/zero but vfs_read is missing: %v", snT.Names())
			}
			if !hasAny(snT, "__do_sys_getpid", "__x64_sys_getpid", "__task_pid_nr_ns") {
				t.Errorf("target ran getpid but no getpid function was seen: %v", snT.Names())
			}
			// 2.
			for _, n := range []string{"do_mkdirat", "vfs_mkdir", "do_rmdir", "vfs_rmdir"} {
				if has(snT, n) {
					t.Errorf("isolation: %s (sibling's work) counted in the target", n)
				}
			}
			if !hasAny(snS, "do_mkdirat", "vfs_mkdir") {
				t.Errorf("sibling ran mkdir but neither do_mkdirat nor vfs_mkdir is in its scope: %v", snS.Names())
			}
			if has(snS, "read_iter_zero") {
				t.Errorf("isolation: read_iter_zero (target's work) counted in the sibling")
			}
			// 3.
			if !hasAny(snD, "do_mkdirat", "vfs_mkdir") {
				t.Errorf("descendant created after Open ran mkdir but its ancestor's scope lacks do_mkdirat/vfs_mkdir: %v", snD.Names())
			}
			// Reset empties a scope.
			if err := tr.Reset(sT); err != nil {
				t.Fatal(err)
			}
			if s, _ := tr.Snapshot(sT); has(s, "read_iter_zero") {
				t.Errorf("Reset left read_iter_zero in the target")
			}
		})
	}
}

// hapObjects lists the BPF programs and links of hapscope in the kernel.
func hapObjects(t *testing.T) (progs []string, links int) {
	t.Helper()
	progs, links, err := labtest.BPFObjects("hap_")
	if err != nil {
		t.Fatalf("enumerate BPF objects: %v", err)
	}
	return progs, links
}

// waitGone polls until no hapscope program remains (the kernel frees
// programs and links asynchronously after the last FD goes).
func waitGone(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		progs, links := hapObjects(t)
		if len(progs) == 0 && links == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d hapscope programs (%v) and %d links remain", what, len(progs), progs, links)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startHolder starts a process that opens a tracer (helper "hold", with
// env added) and returns once it has: the process, and its ready line.
func startHolder(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"=hold"), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("holder did not open a tracer: %q", line)
	}
	return cmd, line
}

// TestLabCleanup is acceptance item 5: after Close, and after SIGKILL of the
// process holding a tracer, no hapscope BPF program or link remains.
func TestLabCleanup(t *testing.T) {
	labtest.Require(t)
	waitGone(t, "before the test")
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range labBackends(t) {
		t.Run(string(b), func(t *testing.T) {
			tr, err := Open(context.Background(), labSubset(cat, b, 40), Options{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			progs, links := hapObjects(t)
			t.Logf("open: %d programs, %d links", len(progs), links)
			if len(progs) == 0 || links == 0 {
				t.Errorf("enumeration sees no hapscope objects while the tracer is open")
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			waitGone(t, "after Close")

			cmd, line := startHolder(t, "HAPSCOPE_BACKEND="+string(b))
			progs, links = hapObjects(t)
			t.Logf("holder %s: %d programs, %d links", strings.TrimSpace(line), len(progs), links)
			if links == 0 {
				t.Errorf("holder's links not visible")
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			waitGone(t, "after SIGKILL")
		})
	}
}
