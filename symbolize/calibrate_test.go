package symbolize

import (
	"debug/elf"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kallsymsDeltas returns, for the text symbols of the vmlinux (as
// /proc/kallsyms lists them), the distance from each address to the next
// symbol: the size Estimate assigns.
func kallsymsDeltas(t testing.TB, path string) map[uint64]uint64 {
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []uint64
	for _, s := range syms {
		if int(s.Section) < len(ef.Sections) && ef.Sections[s.Section].Flags&elf.SHF_EXECINSTR != 0 && s.Value != 0 {
			addrs = append(addrs, s.Value)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	d := map[uint64]uint64{}
	for i := 0; i+1 < len(addrs); i++ {
		d[addrs[i]] = addrs[i+1] - addrs[i]
	}
	return d
}

// TestVmlinuxCalibrate measures bytes per line on the Debian 6.12 vmlinux
// (kallsyms sizes of every function with DWARF lines ÷ its distinct lines)
// and the error of the estimate, and checks that BytesPerLine is still the
// measured value.
func TestVmlinuxCalibrate(t *testing.T) {
	path := testVMLinux(t)
	ix, err := Build(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	delta := kallsymsDeltas(t, path)
	type fn struct {
		size  uint64
		lines int
		set   []Line
	}
	var fns []fn
	var bytes, lines uint64
	for f := range ix.All() {
		if f.Estimated || f.flags&flagFromSymbol != 0 {
			continue
		}
		var size uint64
		for _, r := range f.Ranges {
			if d, ok := delta[r.Lo]; ok {
				size += d
			} else {
				size += r.Hi - r.Lo
			}
		}
		own, inl := f.Lines()
		n := f.LineCount()
		if n == 0 {
			continue
		}
		fns = append(fns, fn{size, n, append(own, inl...)})
		bytes += size
		lines += uint64(n)
	}
	measured := float64(bytes) / float64(lines)
	// Per function.
	var rel []float64
	for _, f := range fns {
		est := float64(estimateLines(f.size))
		rel = append(rel, math.Abs(est-float64(f.lines))/float64(f.lines))
	}
	slices.Sort(rel)
	// Sets of 1,000 functions (profiles are of that size): Σ estimates vs Σ
	// exact counts, and vs the union of their lines (shared header lines
	// once), which is what an exact profile reports.
	rng := rand.New(rand.NewPCG(1, 1000))
	var sumErr, unionErr []float64
	for range 50 {
		var est, exact float64
		u := map[Line]bool{}
		for range 1000 {
			f := fns[rng.IntN(len(fns))]
			est += float64(estimateLines(f.size))
			exact += float64(f.lines)
			for _, l := range f.set {
				u[l] = true
			}
		}
		sumErr = append(sumErr, (est-exact)/exact)
		unionErr = append(unionErr, (est-float64(len(u)))/float64(len(u)))
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	maxAbs := func(v []float64) float64 {
		m := 0.0
		for _, x := range v {
			m = max(m, math.Abs(x))
		}
		return m
	}
	t.Logf("vmlinux %s: %d functions, %d bytes (kallsyms sizes), %d lines: %.2f bytes/line (BytesPerLine = %.2f)", ix.BuildID(), len(fns), bytes, lines, measured, BytesPerLine)
	t.Logf("per function |error|: median %.0f%%, p90 %.0f%%", 100*rel[len(rel)/2], 100*rel[len(rel)*9/10])
	t.Logf("1,000-function sets, Σ estimate vs Σ exact: mean %+.1f%%, worst %.1f%%", 100*mean(sumErr), 100*maxAbs(sumErr))
	t.Logf("1,000-function sets, Σ estimate vs |union of lines|: mean %+.1f%%, worst %.1f%%", 100*mean(unionErr), 100*maxAbs(unionErr))
	if math.Abs(measured-BytesPerLine)/measured > 0.05 {
		t.Errorf("BytesPerLine = %.2f but this vmlinux measures %.2f: update the constant", BytesPerLine, measured)
	}
}
