package coverage

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/bpf"
	"github.com/hapscope/hapscope/internal/labtest"
)

// BenchmarkLabKprobeMultiAttach: hapscope's Open over the whole catalogue vs
// one raw link.KprobeMulti call on the same addresses, measured side by side.
func BenchmarkLabKprobeMultiAttach(b *testing.B) {
	labtest.Require(b)
	if labtest.Kernel() != "6.12" {
		b.Skip("kprobe.multi: 6.12 only")
	}
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	var open, raw time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		tr, err := Open(context.Background(), cat, Options{Backend: KprobeMulti})
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(start)
		tr.Close()

		objs, err := bpf.New(bpf.Config{Functions: len(cat.Functions)})
		if err != nil {
			b.Fatal(err)
		}
		p, err := objs.Program(bpf.KprobeMulti)
		if err != nil {
			b.Fatal(err)
		}
		addrs := make([]uintptr, len(cat.Functions))
		cookies := make([]uint64, len(cat.Functions))
		for j, f := range cat.Functions {
			addrs[j], cookies[j] = uintptr(f.Addr), uint64(j)
		}
		start = time.Now()
		l, err := link.KprobeMulti(p, link.KprobeMultiOptions{Addresses: addrs, Cookies: cookies})
		if err != nil {
			b.Fatal(err)
		}
		raw += time.Since(start)
		l.Close()
		objs.Close()
	}
	b.ReportMetric(float64(len(cat.Functions)), "functions")
	b.ReportMetric(open.Seconds()/float64(b.N), "open-s")
	b.ReportMetric(raw.Seconds()/float64(b.N), "raw-s")
	b.ReportMetric(float64(open)/float64(raw), "open/raw")
}

// BenchmarkLabFentryAttach: functions per second attached by Open (shared
// BTF cache, worker pool) vs naive ebpf.NewProgramWithOptions per function.
func BenchmarkLabFentryAttach(b *testing.B) {
	labtest.Require(b)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	sub := labSubset(cat, Fentry, 100)
	var fast, naive float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		tr, err := Open(context.Background(), sub, Options{Backend: Fentry})
		if err != nil {
			b.Fatal(err)
		}
		fast += float64(tr.attached) / time.Since(start).Seconds()
		tr.Close()

		// Naive: a fresh program per function, vmlinux BTF parsed each time.
		n, done := 0, time.Duration(0)
		for _, f := range sub.Functions {
			if n == 15 {
				break
			}
			if f.noFentry != "" {
				continue
			}
			ps := minimalFentry()
			ps.AttachTo = f.Name
			start := time.Now()
			p, err := ebpf.NewProgramWithOptions(ps, ebpf.ProgramOptions{})
			if err != nil {
				continue
			}
			l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry})
			if err == nil {
				done += time.Since(start)
				n++
				l.Close()
			}
			p.Close()
		}
		naive += float64(n) / done.Seconds()
	}
	b.ReportMetric(fast/float64(b.N), "open-func/s")
	b.ReportMetric(naive/float64(b.N), "naive-func/s")
	b.ReportMetric(fast/naive, "speedup")
}

// minimalFentry is a map-free fentry program: the naive baseline pays only
// for loading and BTF, not for map creation.
func minimalFentry() *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, License: "GPL",
		Instructions: asmReturn0()}
}

func asmReturn0() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}

// BenchmarkLabProbeHit: what a probe hit costs, side by side in one boot.
// A getpid loop with the getpid path attached, the caller in the scope
// (each backend; kprobe.multi and fentry also with Options.Attribution),
// out of it (another cgroup is the scope: the program's early exit), out of it with bpf_stats on, and a no-op program on the same
// kprobe.multi attachment (the kernel's part alone). Each variant runs in
// each of five rounds, interleaved; the fastest round counts (the lab is
// noisy). Reported per call, as a ratio to untraced, and as ns per hit
// above untraced.
func BenchmarkLabProbeHit(b *testing.B) {
	labtest.Require(b)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	path := []string{"__do_sys_getpid", "__x64_sys_getpid", "__task_pid_nr_ns"}
	sub := cat.Subset(func(f Function) bool { return slices.Contains(path, f.Name) })
	hits := float64(len(sub.Functions))
	const calls = 200000
	loop := func() float64 {
		start := time.Now()
		for i := 0; i < calls; i++ {
			syscall.Getpid()
		}
		return float64(time.Since(start).Nanoseconds()) / calls
	}
	own, err := CgroupOf(syscall.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	other := cgroupBase(b)
	mkCgroup(b, other)
	var addrs []uintptr
	for _, f := range sub.Functions {
		addrs = append(addrs, uintptr(f.Addr))
	}
	traced := func(be Backend, scope string, stats, attribution bool) func() float64 {
		return func() float64 {
			tr, err := Open(context.Background(), sub, Options{Backend: be, Counts: true, Attribution: attribution})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			if _, err := tr.AddScope(scope); err != nil {
				b.Fatal(err)
			}
			if stats {
				st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
			}
			return loop()
		}
	}
	noop := func() float64 {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, AttachType: ebpf.AttachTraceKprobeMulti,
			License: "GPL", Instructions: asmReturn0()})
		if err != nil {
			b.Fatal(err)
		}
		defer prog.Close()
		l, err := link.KprobeMulti(prog, link.KprobeMultiOptions{Addresses: addrs})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		return loop()
	}
	variants := []struct {
		name string
		run  func() float64
	}{
		{"untraced", loop},
		{"noop-kprobe.multi", noop},
		{"kprobe.multi-in", traced(KprobeMulti, own, false, false)},
		{"kprobe.multi-in-attribution", traced(KprobeMulti, own, false, true)},
		{"kprobe.multi-out", traced(KprobeMulti, other, false, false)},
		{"kprobe.multi-out-stats", traced(KprobeMulti, other, true, false)},
		{"fentry-in", traced(Fentry, own, false, false)},
		{"fentry-in-attribution", traced(Fentry, own, false, true)},
		{"fentry-out", traced(Fentry, other, false, false)},
		{"kprobe-in", traced(Kprobe, own, false, false)},
	}
	for i := 0; i < b.N; i++ {
		best := make([]float64, len(variants))
		for round := 0; round < 5; round++ {
			for k, v := range variants {
				ns := v.run()
				if round == 0 || ns < best[k] {
					best[k] = ns
				}
			}
		}
		for k, v := range variants {
			b.ReportMetric(best[k], v.name+"-ns/call")
			if k > 0 {
				b.ReportMetric(best[k]/best[0], v.name+"/untraced")
				b.ReportMetric((best[k]-best[0])/hits, v.name+"-ns/hit")
			}
		}
	}
}

// BenchmarkLabModuleAttach: Open over vmlinux and the loaded modules (a
// container host's: labtest.NetPathModules) vs over vmlinux alone, in one
// boot, side by side: seconds per 1,000 functions, and their ratio (goal:
// within 1.2×).
func BenchmarkLabModuleAttach(b *testing.B) {
	labtest.Require(b)
	if labtest.Kernel() != "6.12" {
		b.Skip("kprobe.multi over the whole catalogue: 6.12 only")
	}
	labtest.LoadModule(b, labtest.NetPathModules...)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	vmlinux := cat.Subset(func(f Function) bool { return f.Module == "" })
	mods := len(cat.Functions) - len(vmlinux.Functions)
	b.Logf("catalogue: %s", cat)
	var all, alone time.Duration
	for i := 0; i < b.N; i++ {
		// ABBA: the order's and the drift's effects cancel out.
		for _, c := range []struct {
			cat *Catalogue
			d   *time.Duration
		}{{vmlinux, &alone}, {cat, &all}, {cat, &all}, {vmlinux, &alone}} {
			start := time.Now()
			tr, err := Open(context.Background(), c.cat, Options{Backend: KprobeMulti})
			if err != nil {
				b.Fatal(err)
			}
			*c.d += time.Since(start)
			tr.Close()
		}
	}
	perK := func(d time.Duration, n int) float64 { return d.Seconds() / float64(2*b.N) / float64(n) * 1000 }
	b.ReportMetric(float64(mods), "module-functions")
	b.ReportMetric(perK(all, len(cat.Functions)), "s/1k-with-modules")
	b.ReportMetric(perK(alone, len(vmlinux.Functions)), "s/1k-vmlinux")
	b.ReportMetric(perK(all, len(cat.Functions))/perK(alone, len(vmlinux.Functions)), "ratio")
}

// BenchmarkLabNetPathThroughput: rounds per second of the netpath workload
// (labtest.NetPath: TCP through veth, a bridge and DNAT, file reads on
// overlayfs) untraced, under the default pruning tracer once settled, and
// with every probe kept (counts), side by side in one boot; untraced is
// measured before and after, for drift. The module code that runs only in
// soft IRQs of other tasks (the peer's side) stays probed when pruned.
func BenchmarkLabNetPathThroughput(b *testing.B) {
	labtest.Require(b)
	if labtest.Kernel() != "6.12" {
		b.Skip("kprobe.multi over the whole catalogue: 6.12 only")
	}
	np := labtest.SetupNetPath(b)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	const rounds = 200
	base := cgroupBase(b)
	mkCgroup(b, base)
	run := func() float64 {
		b.Helper()
		cmd, err := np.Workload(rounds, 4096, false)
		if err != nil {
			b.Fatal(err)
		}
		fd, err := syscall.Open(base, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer syscall.Close(fd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("netpath workload: %v\n%s", err, out)
		}
		return rounds / time.Since(start).Seconds()
	}
	traced := func(counts bool) float64 {
		tr, err := Open(context.Background(), cat, Options{Backend: KprobeMulti, Counts: counts})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		if _, err := tr.AddScope(base); err != nil {
			b.Fatal(err)
		}
		run() // warm-up: pruning removes what the workload runs
		time.Sleep(2 * time.Second)
		return run()
	}
	var before, pruned, counts, after float64
	for i := 0; i < b.N; i++ {
		before += run()
		pruned += traced(false)
		counts += traced(true)
		after += run()
	}
	n := float64(b.N)
	b.ReportMetric(before/n, "untraced-before-rounds/s")
	b.ReportMetric(after/n, "untraced-after-rounds/s")
	b.ReportMetric(pruned/n, "pruned-rounds/s")
	b.ReportMetric(counts/n, "counts-rounds/s")
	untraced := (before + after) / 2
	b.ReportMetric(pruned/untraced, "pruned/untraced")
	b.ReportMetric(counts/untraced, "counts/untraced")
}
