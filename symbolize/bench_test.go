package symbolize

import (
	"bufio"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// peakRSS resets the kernel's high-water mark of this process (clear_refs
// 5) and returns a function that reads the peak since then, in bytes.
func peakRSS() func() float64 {
	runtime.GC()
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return func() float64 {
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb * 1024
			}
		}
		return 0
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// naivePass is the baseline of ANCHORS.md: single-threaded debug/elf and
// debug/dwarf, every unit's line table plus the ranges of every subprogram
// and inlined-subroutine DIE, no index built.
func naivePass(tb testing.TB, path string) (rows int) {
	ef, err := elf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer ef.Close()
	d, err := ef.DWARF()
	if err != nil {
		tb.Fatal(err)
	}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			tb.Fatal(err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			lr, err := d.LineReader(e)
			if err == nil && lr != nil {
				var le dwarf.LineEntry
				for lr.Next(&le) == nil {
					rows++
				}
			}
		case dwarf.TagSubprogram, dwarf.TagInlinedSubroutine:
			d.Ranges(e)
		}
	}
	return rows
}

// BenchmarkVmlinuxIndex builds the full index of the Debian 6.12 vmlinux and,
// in the same run, the naive single-threaded pass. Goals: ≤ 10 s and
// ≤ 1.5 GiB peak RSS on 2 cores.
func BenchmarkVmlinuxIndex(b *testing.B) {
	path := testVMLinux(b)
	for b.Loop() {
		peak := peakRSS()
		c0, t0 := cpuTime(), time.Now()
		ix, err := Build(path, nil)
		wall, cpu := time.Since(t0), cpuTime()-c0
		rss := peak()
		if err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(ix)
		ix = nil
		peakNaive := peakRSS()
		c1, t1 := cpuTime(), time.Now()
		naivePass(b, path)
		naive, naiveCPU := time.Since(t1), cpuTime()-c1
		rssNaive := peakNaive()
		b.ReportMetric(wall.Seconds(), "build-s")
		b.ReportMetric(cpu.Seconds(), "build-cpu-s")
		b.ReportMetric(rss/(1<<20), "build-peak-MiB")
		b.ReportMetric(naive.Seconds(), "naive-s")
		b.ReportMetric(rssNaive/(1<<20), "naive-peak-MiB")
		b.ReportMetric(naiveCPU.Seconds(), "naive-cpu-s")
		b.ReportMetric(naive.Seconds()/wall.Seconds(), "x-faster-than-naive")
		b.ReportMetric(naiveCPU.Seconds()/cpu.Seconds(), "x-less-cpu-than-naive")
		b.ReportMetric(wall.Seconds()/10, "build/goal-10s")
		b.ReportMetric(rss/(1.5*(1<<30)), "peak/goal-1.5GiB")
		b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
	}
}

// BenchmarkVmlinuxLines loads the cached index and takes the line sets of
// 2,000 functions by start address, against eu-addr2line on the same 2,000
// addresses (one process; one line per address, not sets). Goal: ≥ 50×.
func BenchmarkVmlinuxLines(b *testing.B) {
	path := testVMLinux(b)
	if _, err := exec.LookPath("eu-addr2line"); err != nil {
		b.Fatal("eu-addr2line not found: apt-get install elfutils")
	}
	ix, err := Build(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "index")
	if err := ix.writeFile(file); err != nil {
		b.Fatal(err)
	}
	var addrs []uint64
	for f := range ix.All() {
		if !f.Estimated {
			addrs = append(addrs, f.Entry)
		}
	}
	rng := rand.New(rand.NewPCG(2000, 2))
	rng.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	addrs = addrs[:2000]
	var in strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&in, "%#x\n", a)
	}
	for b.Loop() {
		t0 := time.Now()
		warm, err := Load(file)
		load := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		n := 0
		for _, a := range addrs {
			own, inl := warm.FuncAt(a).Lines()
			n += len(own) + len(inl)
		}
		ours := time.Since(t1)

		t2 := time.Now()
		cmd := exec.Command("eu-addr2line", "-e", path)
		cmd.Stdin = strings.NewReader(in.String())
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		got := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			got++
		}
		io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil || got != len(addrs) {
			b.Fatalf("eu-addr2line: %v, %d lines for %d addresses", err, got, len(addrs))
		}
		eu := time.Since(t2)
		b.ReportMetric(float64(load.Microseconds())/1000, "load-ms")
		b.ReportMetric(float64(ours.Microseconds())/1000, "2000-sets-ms")
		b.ReportMetric(float64(n)/2000, "lines/function")
		b.ReportMetric(eu.Seconds()*1000, "eu-addr2line-ms")
		b.ReportMetric(eu.Seconds()/ours.Seconds(), "x-faster-than-eu")
		b.ReportMetric(eu.Seconds()/(ours+load).Seconds(), "x-faster-incl-load")
	}
}
