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

// estimateError is how BytesPerLine does on one vmlinux with DWARF.
type estimateError struct {
	measured float64 // Σ kallsyms sizes ÷ Σ distinct lines over its functions
	// Σ of estimates vs Σ of exact counts, and vs the union of the lines,
	// over 50 random sets of 1,000 functions (profiles are of that size).
	sumMean, sumWorst, unionMean, unionWorst float64
	medianRel, p90Rel                        float64 // per function |error|
}

// measureEstimate compares Estimate's size-based counts with the exact line
// counts of the vmlinux at path.
func measureEstimate(t *testing.T, path string) estimateError {
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
	var e estimateError
	e.measured = float64(bytes) / float64(lines)
	var rel []float64
	for _, f := range fns {
		est := float64(estimateLines(f.size))
		rel = append(rel, math.Abs(est-float64(f.lines))/float64(f.lines))
	}
	slices.Sort(rel)
	e.medianRel, e.p90Rel = rel[len(rel)/2], rel[len(rel)*9/10]
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
	e.sumMean, e.sumWorst, e.unionMean, e.unionWorst = mean(sumErr), maxAbs(sumErr), mean(unionErr), maxAbs(unionErr)
	t.Logf("vmlinux %s: %d functions, %d bytes (kallsyms sizes), %d lines: %.2f bytes/line (BytesPerLine = %.2f)", ix.BuildID(), len(fns), bytes, lines, e.measured, BytesPerLine)
	t.Logf("per function |error|: median %.0f%%, p90 %.0f%%", 100*e.medianRel, 100*e.p90Rel)
	t.Logf("1,000-function sets, Σ estimate vs Σ exact: mean %+.1f%%, worst %.1f%%", 100*e.sumMean, 100*e.sumWorst)
	t.Logf("1,000-function sets, Σ estimate vs |union of lines|: mean %+.1f%%, worst %.1f%%", 100*e.unionMean, 100*e.unionWorst)
	return e
}

// TestVmlinuxCalibrate measures bytes per line on the Debian 6.12 vmlinux
// and checks that BytesPerLine is still the measured value.
func TestVmlinuxCalibrate(t *testing.T) {
	e := measureEstimate(t, testVMLinux(t))
	if math.Abs(e.measured-BytesPerLine)/e.measured > 0.05 {
		t.Errorf("BytesPerLine = %.2f but this vmlinux measures %.2f: update the constant", BytesPerLine, e.measured)
	}
}

// TestVmlinuxEstimateOtherKernel checks BytesPerLine on a kernel it was not
// calibrated on, Debian's 6.1 (gcc 12): the sum of the estimates of a
// 1,000-function set stays within 15 % of the sum of its exact counts.
func TestVmlinuxEstimateOtherKernel(t *testing.T) {
	e := measureEstimate(t, labVMLinux(t, "6.1"))
	if math.Abs(e.sumMean) > 0.15 || e.sumWorst > 0.2 {
		t.Errorf("on 6.1, Σ estimates of 1,000-function sets are off by %+.1f%% on average (worst %.1f%%): BytesPerLine %.2f, this kernel measures %.2f", 100*e.sumMean, 100*e.sumWorst, BytesPerLine, e.measured)
	}
}
