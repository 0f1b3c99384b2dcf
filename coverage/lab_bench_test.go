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

// BenchmarkLabGetpid: ns per getpid call untraced and traced by each
// backend (the getpid path attached, this process's cgroup in scope).
func BenchmarkLabGetpid(b *testing.B) {
	labtest.Require(b)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	sub := cat.Subset(func(f Function) bool {
		return slices.Contains([]string{"__do_sys_getpid", "__x64_sys_getpid", "__task_pid_nr_ns"}, f.Name)
	})
	const calls = 200000
	loop := func() float64 {
		start := time.Now()
		for i := 0; i < calls; i++ {
			syscall.Getpid()
		}
		return float64(time.Since(start).Nanoseconds()) / calls
	}
	for i := 0; i < b.N; i++ {
		base := loop()
		b.ReportMetric(base, "untraced-ns/call")
		for _, be := range []Backend{KprobeMulti, Fentry, Kprobe} {
			tr, err := Open(context.Background(), sub, Options{Backend: be})
			if err != nil {
				b.Logf("%s: %v", be, err)
				continue
			}
			dir, err := CgroupOf(syscall.Getpid())
			if err == nil {
				_, err = tr.AddScope(dir)
			}
			if err != nil {
				b.Fatal(err)
			}
			ns := loop()
			tr.Close()
			b.ReportMetric(ns, string(be)+"-ns/call")
			b.ReportMetric(ns/base, string(be)+"/untraced")
		}
	}
}

func asmReturn0() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}
