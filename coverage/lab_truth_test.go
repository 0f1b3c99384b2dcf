package coverage

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/ftrace"
	"github.com/hapscope/hapscope/internal/kallsyms"
	"github.com/hapscope/hapscope/internal/labtest"
)

// truthWorkloadEnv names the ground-truth workload the helper runs.
const truthWorkloadEnv = "HAPSCOPE_TRUTH_WORKLOAD"

// groundTruthWork is a small, bounded workload (the ftrace ring buffer must
// not overrun), started when the harness writes a line to its stdin:
//   - syscalls: reads of /dev/zero, getpid, mkdir/rmdir;
//   - inotify: inotify watches added, triggered and removed a few times
//     (inotify_add_watch → fsnotify_add_mark → fsnotify_recalc_mask).
func groundTruthWork() {
	fmt.Println("waiting")
	bufio.NewReader(os.Stdin).ReadString('\n') // wait until both tracers run
	switch w := os.Getenv(truthWorkloadEnv); w {
	case "syscalls":
		f, err := os.Open("/dev/zero")
		if err != nil {
			panic(err)
		}
		b := make([]byte, 4096)
		for i := 0; i < 200; i++ {
			f.Read(b)
		}
		f.Close()
		for i := 0; i < 200; i++ {
			syscall.Getpid()
		}
		d, _ := os.MkdirTemp("", "hapscope-gt")
		for i := 0; i < 20; i++ {
			p := filepath.Join(d, strconv.Itoa(i))
			os.Mkdir(p, 0o755)
			os.Remove(p)
		}
		os.Remove(d)
	case "inotify":
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			panic(err)
		}
		d, err := os.MkdirTemp("", "hapscope-gt")
		if err != nil {
			panic(err)
		}
		for i := 0; i < 8; i++ {
			p := filepath.Join(d, strconv.Itoa(i))
			wd, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_DELETE)
			if err != nil {
				panic(err)
			}
			// A second mask on the same watch: the update path.
			if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MASK_ADD|unix.IN_ATTRIB); err != nil {
				panic(err)
			}
			os.WriteFile(p, []byte("x"), 0o644)
			os.Remove(p)
			if _, err := unix.InotifyRmWatch(fd, uint32(wd)); err != nil {
				panic(err)
			}
		}
		unix.Close(fd)
		os.Remove(d)
	default:
		panic("unknown ground-truth workload " + w)
	}
}

// truthEnv is what every ground-truth window compares against.
type truthEnv struct {
	np   *labtest.NetPath // the netpath workload's network and overlay mount
	cat  *Catalogue
	syms *ftrace.Symbols
	ftc  *ftrace.Catalogue
}

func newTruthEnv(t *testing.T) *truthEnv {
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
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
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	bi := btfFuncs(spec, "", nil)
	attached := map[uint64]bool{}
	for _, f := range cat.Functions {
		attached[f.Addr] = true
	}
	return &truthEnv{cat: cat, syms: ftrace.NewSymbols(all), ftc: &ftrace.Catalogue{
		Attached: func(f ftrace.Function) bool { return attached[f.Addr] },
		BTF:      func(n string) bool { _, ok := bi.funcs[fkey{"", n}]; return ok },
		Denied:   denied,
	}}
}

// TestLabGroundTruth is acceptance item 4: one execution of a workload
// traced at the same time by hapscope (kprobe.multi over the whole
// catalogue, pruning and counting) and by the ftrace function tracer
// (internal/ftrace) restricted to the workload's threads and their
// children, over exactly the window between Reset and Snapshot (trace
// markers), functions matched by address, interrupt context excluded on
// both sides. Over the catalogue the Jaccard index must be ≥ 0.98; a
// catalogue function ftrace saw in task context and hapscope did not must
// show in the window's recursion-miss counters (Tracer.Missed); in Counts
// mode every function's count must be at least ftrace's, or the misses
// must have moved by the difference at least.
//
// Issue 14: over everything ftrace recorded in task context (module
// functions, clones and deny-listed functions included) hapscope must see
// ≥ 99 % and the Jaccard index must be ≥ 0.98. The workloads: system
// calls, inotify, and netpath (labtest.NetPath: TCP through veth, a bridge
// and DNAT, and file reads on overlayfs).
func TestLabGroundTruth(t *testing.T) {
	labtest.Require(t)
	if labtest.Kernel() != "6.12" {
		t.Skip("ground truth needs kprobe.multi next to ftrace: 6.12 only (6.1 is covered by the fentry/kprobe tests)")
	}
	// The container path first: its modules (veth, bridge, nf_tables,
	// nf_conntrack, overlay…) are then in the catalogue.
	np := labtest.SetupNetPath(t)
	env := newTruthEnv(t)
	env.np = np
	t.Logf("catalogue: %s", strings.SplitN(env.cat.String(), "\n", 2)[0])
	for _, counts := range []bool{false, true} {
		mode := map[bool]string{false: "pruned", true: "counts"}[counts]
		for _, w := range []string{"syscalls", "inotify", "netpath"} {
			if counts && w != "syscalls" {
				continue // counts mode once: CI's time (each window ~2 min)
			}
			t.Run(mode+"/"+w, func(t *testing.T) { groundTruth(t, env, counts, w) })
		}
	}
}

// groundTruth runs workload w in the scope of a tracer of its own under
// ftrace and compares one window. The tracer is closed before the trace is
// read: formatting a million trace lines under every probe took minutes.
func groundTruth(t *testing.T, env *truthEnv, countsMode bool, w string) {
	began := time.Now()
	tr, err := Open(context.Background(), env.cat, Options{Backend: KprobeMulti, Counts: countsMode})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attached %d functions in %v", tr.attached, time.Since(began).Round(time.Millisecond))
	closed := false
	closeTracer := func() {
		if closed {
			return
		}
		closed = true
		start := time.Now()
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		t.Logf("detached in %v", time.Since(start).Round(time.Millisecond))
	}
	defer closeTracer()
	base := cgroupBase(t)
	mkCgroup(t, base)
	scope, err := tr.AddScope(base)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(base, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=groundtruth", truthWorkloadEnv+"="+w)
	if w == "netpath" {
		// A TCP exchange through veth, bridge and DNAT, and reads of a
		// file on overlayfs (labtest.NetPath).
		if cmd, err = env.np.Workload(10, 4096, true); err != nil {
			t.Fatal(err)
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	cmd.Stderr = os.Stderr
	stdin := labtest.StartHeld(t, cmd)
	tids, err := ftrace.Threads(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ft, err := ftrace.Setup(ftrace.Options{Tracer: ftrace.FunctionTracer, PIDs: tids, Fork: true, BufferKB: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ft.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := ft.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: ftrace on", time.Since(began).Round(time.Millisecond))
	// The helper sleeps in read(2) until "go": the window is Reset to
	// Snapshot, and the markers are written inside it.
	if err := tr.Reset(scope); err != nil {
		t.Fatal(err)
	}
	missedBefore, err := tr.Missed()
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Mark("hapscope-reset"); err != nil {
		t.Fatal(err)
	}
	// Background load while the workload runs: a process outside the
	// scope reading /dev/zero, and this process reading the tracer's
	// counters (bpf(2) map lookups, which hold the CPU's bpf_prog_active
	// while they copy) as a Converge loop would.
	bg := exec.Command(os.Args[0], "-test.run=^$")
	bg.Env = append(os.Environ(), helperEnv+"=read")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	polls := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := tr.objs.Stats(); err == nil {
				polls++
			}
		}
	}()
	t.Logf("%v: window open, workload starts", time.Since(began).Round(time.Millisecond))
	io.WriteString(stdin, "go\n")
	stdin.Close()
	werr := cmd.Wait()
	close(stop)
	wg.Wait()
	bg.Wait()
	if werr != nil {
		t.Fatalf("workload: %v", werr)
	}
	t.Logf("%v: workload done", time.Since(began).Round(time.Millisecond))
	if err := ft.Mark("hapscope-snapshot"); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot(scope)
	if err != nil {
		t.Fatal(err)
	}
	missedAfter, err := tr.Missed()
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Stop(); err != nil {
		t.Fatal(err)
	}
	mode := tr.mode
	closeTracer()
	st, err := ft.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Overrun != 0 {
		t.Fatalf("ftrace ring buffer overran (%d events lost): the comparison would be unfair", st.Overrun)
	}
	t.Logf("%v: window closed, ring buffer %+v", time.Since(began).Round(time.Millisecond), st)
	trace, err := ft.Trace()
	if err != nil {
		t.Fatal(err)
	}
	win, err := ftrace.Collect(trace, env.syms, "hapscope-reset", "hapscope-snapshot", ft.PIDs())
	trace.Close()
	if err != nil {
		t.Fatal(err)
	}
	if win.Lost != 0 || win.Unresolved != 0 || win.Renamed != 0 {
		t.Errorf("ftrace window: %d events lost, %d addresses unresolved, %d names differing from kallsyms", win.Lost, win.Unresolved, win.Renamed)
	}

	// The attribution rule against ftrace: soft-IRQ work ftrace recorded
	// in the traced tasks (at an interrupt's exit or in their own
	// do_softirq) vs what hapscope counted as the tasks' own.
	ftSoft := map[uint64]bool{}
	for f, seen := range win.Funcs {
		if seen.ByContext[ftrace.SoftIRQ] > 0 {
			ftSoft[f.Addr] = true
		}
	}
	own, shared := 0, 0
	var notRecorded []string
	for _, h := range snap.Hits {
		if h.Context&Softirq == 0 {
			continue
		}
		own++
		if ftSoft[h.Addr] {
			shared++
		} else {
			notRecorded = append(notRecorded, h.String())
		}
	}
	t.Logf("soft IRQ: ftrace recorded %d functions in the traced tasks' soft-IRQ context; hapscope counted %d as the tasks' own (do_softirq): %d of them recorded by ftrace, %d not (%v); %d left out by the rule (soft IRQs served at an interrupt's exit, or functions the window's pruning had removed)",
		len(ftSoft), own, shared, len(notRecorded), notRecorded[:min(len(notRecorded), 10)], len(ftSoft)-shared)
	if w == "netpath" && own == 0 {
		t.Errorf("netpath: no function counted as the task's own soft-IRQ work: the receive side of its own sends runs there")
	}
	if len(notRecorded) > own/20 {
		t.Errorf("%d of the %d functions counted as the tasks' own soft-IRQ work were not recorded by ftrace in their soft-IRQ context: another task's work leaked in?", len(notRecorded), own)
	}

	// The task-context comparison leaves out what hapscope counted as the
	// tasks' own soft-IRQ work only and ftrace recorded in their soft-IRQ
	// context only: the rule's, checked above. A function ftrace saw in
	// task context stays in (pruning may have removed its probe after a
	// soft-IRQ call, before the task's own), and so does one ftrace did
	// not record in soft IRQ (it would be a leak).
	ftTask := map[uint64]bool{}
	for _, f := range win.Task() {
		ftTask[f.Addr] = true
	}
	var reported []ftrace.Function
	counts := map[ftrace.Function]uint64{}
	rule := 0
	for _, h := range snap.Hits {
		if h.Context == Softirq && ftSoft[h.Addr] && !ftTask[h.Addr] {
			rule++
			continue
		}
		f := ftrace.Function{Name: h.Name, Module: h.Module, Addr: h.Addr}
		reported = append(reported, f)
		counts[f] = h.Count
	}
	t.Logf("task-context comparison: %d of hapscope's %d functions, %d left to the soft-IRQ comparison", len(reported), len(snap.Hits), rule)

	r := ftrace.Compare(win, reported, env.ftc)
	missed := windowMissed(missedBefore, missedAfter)
	t.Logf("%s, %s: ftrace %d lines, %d calls in the window (%d before, %d after it), %d children followed; counters polled %d times meanwhile; took %v",
		mode, w, win.Lines, win.Records, win.Before, win.After, win.Forks, polls, time.Since(began).Round(time.Millisecond))
	t.Logf("%s", r)
	t.Logf("window's recursion misses: %s (tracer lifetime %d; interrupt events skipped %d)", missed, missedAfter.Total(), snap.Skipped)

	if len(r.Shared) < 50 {
		t.Fatalf("only %d shared functions: the workload was not traced", len(r.Shared))
	}
	if j := r.Jaccard(); j < 0.98 {
		t.Errorf("Jaccard over the catalogue %.4f < 0.98", j)
	}
	// Issue 14: over everything ftrace recorded in task context, modules,
	// clones and deny-listed functions included.
	// ≥ 99 % of what ftrace recorded, the deny list reported apart (the
	// functions the counter itself calls, which no probe can count): over
	// the denominator without them, and stated with them.
	probeable := r.Denominator - len(r.Denied)
	reach := float64(len(r.Shared)) / float64(max(probeable, 1))
	t.Logf("hapscope saw %d of the %d functions ftrace recorded in task context, %d of them deny-listed: %.4f of the %d probeable, %.4f of all", len(r.Shared), r.Denominator, len(r.Denied), reach, probeable, r.Coverage())
	if reach < 0.99 {
		t.Errorf("hapscope saw %.4f of the %d probeable functions ftrace recorded in task context, want ≥ 0.99", reach, probeable)
	}
	if j := r.JaccardAll(); j < 0.98 {
		t.Errorf("Jaccard over everything ftrace recorded %.4f < 0.98", j)
	}
	lost := r.MissedBy(ftrace.InCatalogue)
	if len(lost) > 0 && missed.total == 0 {
		t.Errorf("%d catalogue functions ftrace saw in task context were not reported, and no miss counter moved: the loss is invisible: %v", len(lost), lost)
	}
	if w == "inotify" {
		seen := false
		for _, f := range win.Task() {
			seen = seen || f.Name == "fsnotify_recalc_mask"
		}
		if !seen {
			t.Errorf("ftrace did not see fsnotify_recalc_mask in the inotify workload: the workload does not reproduce the issue")
		}
	}
	if mode != Counts {
		return
	}
	// Counts: per function, hapscope's count against ftrace's task-context
	// records of the traced threads.
	var short []string
	var deficit uint64
	for f, s := range win.Funcs {
		n := uint64(s.ByContext[ftrace.Task])
		if n == 0 || !env.ftc.Attached(f) {
			continue
		}
		if c := counts[f]; c < n {
			deficit += n - c
			short = append(short, fmt.Sprintf("%s: ftrace %d, hapscope %d", f, n, c))
		}
	}
	sort.Strings(short)
	t.Logf("counts: %d functions with fewer calls than ftrace recorded (%d calls): %v", len(short), deficit, short)
	if deficit > missed.total {
		t.Errorf("hapscope counted %d calls fewer than ftrace in task context, but only %d misses were counted in the window", deficit, missed.total)
	}
}

// windowMissed is the change of the miss counters over a window.
type missedDelta struct {
	program, links, retired, total uint64
	byLink                         []string
}

func (d missedDelta) String() string {
	s := fmt.Sprintf("%d (program, bpf_prog_active busy: %d; kprobe.multi links, fprobe recursion: %d; closed by pruning: %d)", d.total, d.program, d.links, d.retired)
	if len(d.byLink) > 0 {
		s += "; links that missed: " + strings.Join(d.byLink, "; ")
	}
	return s
}

func windowMissed(a, b Missed) missedDelta {
	d := missedDelta{program: b.Program - a.Program, retired: b.Retired - a.Retired}
	before := map[Function]uint64{}
	for _, l := range a.Links {
		if len(l.Functions) > 0 {
			before[l.Functions[0]] = l.Missed
		}
	}
	for _, l := range b.Links {
		if len(l.Functions) == 0 {
			continue
		}
		n := l.Missed - before[l.Functions[0]] // a link made in the window started at 0
		if l.Missed < before[l.Functions[0]] {
			n = l.Missed
		}
		if n > 0 {
			d.links += n
			d.byLink = append(d.byLink, fmt.Sprintf("%d in the link of %d functions from %s", n, len(l.Functions), l.Functions[0].Name))
		}
	}
	d.total = d.program + d.links + d.retired
	return d
}
