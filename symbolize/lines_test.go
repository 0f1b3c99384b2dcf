package symbolize

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// instructionAddrs decodes the machine code of f's ranges and returns the
// address of every instruction.
func instructionAddrs(t testing.TB, ef *elf.File, f *Function) []uint64 {
	var out []uint64
	for _, r := range f.Ranges {
		code := rangeBytes(t, ef, f, r)
		for pc := uint64(0); pc < uint64(len(code)); {
			out = append(out, r.Lo+pc)
			in, err := x86asm.Decode(code[pc:], 64)
			if err != nil || in.Len == 0 {
				pc++ // undecodable byte (e.g. ud2 padding): step over it
				continue
			}
			pc += uint64(in.Len)
		}
	}
	return out
}

// byteAddrs returns every address of f's ranges.
func byteAddrs(f *Function) []uint64 {
	var out []uint64
	for _, r := range f.Ranges {
		for a := r.Lo; a < r.Hi; a++ {
			out = append(out, a)
		}
	}
	return out
}

func rangeBytes(t testing.TB, ef *elf.File, f *Function, r Range) []byte {
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_EXECINSTR != 0 && s.Addr <= r.Lo && r.Hi <= s.Addr+s.Size {
			code := make([]byte, r.Hi-r.Lo)
			if _, err := s.ReadAt(code, int64(r.Lo-s.Addr)); err != nil {
				t.Fatal(err)
			}
			return code
		}
	}
	t.Fatalf("%s: range %#x-%#x is in no executable section", f.Name, r.Lo, r.Hi)
	return nil
}

// symbolizeInlining runs llvm-symbolizer --inlining on addrs (two processes)
// and returns, per address, the file:line of every frame (innermost first),
// normalised as the index normalises paths (relative to compDir).
func symbolizeInlining(t testing.TB, obj, compDir string, addrs []uint64) map[uint64][]Line {
	t.Helper()
	if _, err := exec.LookPath("llvm-symbolizer"); err != nil {
		t.Fatal("llvm-symbolizer not found: apt-get install llvm")
	}
	out := map[uint64][]Line{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const parts = 2
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in bytes.Buffer
			for i := p; i < len(addrs); i += parts {
				fmt.Fprintf(&in, "%#x\n", addrs[i])
			}
			cmd := exec.Command("llvm-symbolizer", "--obj="+obj, "--inlining", "--addresses", "--functions=none")
			cmd.Stdin = &in
			b, err := cmd.Output()
			if err != nil {
				t.Errorf("llvm-symbolizer: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			var cur uint64
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				s := sc.Text()
				if strings.HasPrefix(s, "0x") {
					cur, _ = strconv.ParseUint(s[2:], 16, 64)
					out[cur] = out[cur][:0:0]
					continue
				}
				// file:line:column
				i := strings.LastIndexByte(s, ':')
				if i < 0 {
					continue
				}
				j := strings.LastIndexByte(s[:i], ':')
				if j < 0 {
					continue
				}
				line, _ := strconv.Atoi(s[j+1 : i])
				out[cur] = append(out[cur], Line{normalizePath(compDir, s[:j]), line})
			}
		}()
	}
	wg.Wait()
	return out
}

// lineCheck compares a function's line set with what llvm-symbolizer
// prints for its addresses (line 0 excluded).
type lineCheck struct {
	fn            *Function
	stratum       string
	set, printed  int
	extra, missed []Line // in the set but never printed; printed but not in the set
}

func checkLines(f *Function, addrs []uint64, frames map[uint64][]Line) lineCheck {
	own, inl := f.Lines()
	set := map[Line]bool{}
	for _, l := range own {
		set[l] = true
	}
	for _, l := range inl {
		set[l] = true
	}
	printed := map[Line]bool{}
	for _, a := range addrs {
		for _, l := range frames[a] {
			if l.Line > 0 {
				printed[l] = true
			}
		}
	}
	c := lineCheck{fn: f, set: len(set), printed: len(printed)}
	for l := range set {
		if !printed[l] {
			c.extra = append(c.extra, l)
		}
	}
	for l := range printed {
		if !set[l] {
			c.missed = append(c.missed, l)
		}
	}
	slices.SortFunc(c.extra, compareLine)
	slices.SortFunc(c.missed, compareLine)
	return c
}

func (c lineCheck) String() string {
	return fmt.Sprintf("%s [%s] %s:%d entry %#x, %d ranges, %d lines, %d printed", c.fn.Name, c.stratum, c.fn.File, c.fn.Line, c.fn.Entry, len(c.fn.Ranges), c.set, c.printed)
}

// isClone reports whether a symbol name is a compiler clone of a function.
func isClone(sym string) bool {
	return strings.Contains(sym, ".isra.") || strings.Contains(sym, ".constprop.") || strings.Contains(sym, ".part.")
}

// linesStrata sorts the functions with exact lines of ix into the strata the
// line test samples: clones, functions with a .cold part, inline-heavy ones
// (the tenth with the most inlined lines), and the rest.
func linesStrata(t testing.TB, ix *Index, path string) map[string][]*Function {
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, _ := ef.Symbols()
	cold := map[*Function]bool{}
	for _, s := range syms {
		if f := ix.FuncAt(s.Value); f != nil && strings.HasSuffix(s.Name, ".cold") && len(f.Ranges) > 1 {
			cold[f] = true
		}
	}
	var rest []*Function
	out := map[string][]*Function{}
	for f := range ix.All() {
		switch {
		case f.Estimated:
		case isClone(f.Symbol):
			out["clone"] = append(out["clone"], f)
		case cold[f]:
			out["cold"] = append(out["cold"], f)
		default:
			rest = append(rest, f)
		}
	}
	ninl := func(f *Function) int { _, inl := f.Lines(); return len(inl) }
	slices.SortStableFunc(rest, func(a, b *Function) int { return cmp.Compare(ninl(b), ninl(a)) })
	out["inline-heavy"], out["ordinary"] = rest[:len(rest)/10], rest[len(rest)/10:]
	return out
}

// TestVmlinuxLines is the acceptance check of the line definition on the
// Debian 6.12 vmlinux: over a seeded sample stratified by kind (clones,
// functions with .cold parts, inline-heavy functions, ordinary ones),
// llvm-symbolizer --inlining is run on every instruction address of each
// function, and
//   - precision: ≥ 99 % of the lines in the functions' sets are printed by
//     llvm-symbolizer for some address of the function;
//   - recall: ≥ 99.5 % of the lines llvm-symbolizer prints are in the set.
//
// HAPSCOPE_LINES_N=N samples N per stratum (another seed) instead of 80.
func TestVmlinuxLines(t *testing.T) {
	path := testVMLinux(t)
	if _, err := exec.LookPath("llvm-symbolizer"); err != nil {
		t.Fatal("llvm-symbolizer not found: apt-get install llvm")
	}
	ix, err := Build(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	n, seed := 80, uint64(13)
	if v, err := strconv.Atoi(os.Getenv("HAPSCOPE_LINES_N")); err == nil && v > 0 {
		n, seed = v, uint64(v)
	}
	strata := linesStrata(t, ix, path)
	var sample []lineCheck
	for _, name := range []string{"clone", "cold", "inline-heavy", "ordinary"} {
		pool := strata[name]
		if len(pool) < n {
			t.Fatalf("stratum %s has %d functions, want at least %d: is this a kernel built with gcc -O2?", name, len(pool), n)
		}
		rng := rand.New(rand.NewPCG(seed, uint64(len(name))))
		for _, i := range rng.Perm(len(pool))[:n] {
			sample = append(sample, lineCheck{fn: pool[i], stratum: name})
		}
	}
	fnAddrs := make([][]uint64, len(sample))
	var addrs []uint64
	for i, c := range sample {
		fnAddrs[i] = instructionAddrs(t, ef, c.fn)
		addrs = append(addrs, fnAddrs[i]...)
	}
	frames := symbolizeInlining(t, path, "", addrs)
	type tally struct{ set, printed, extra, missed int }
	by := map[string]*tally{}
	var all tally
	for i := range sample {
		c := checkLines(sample[i].fn, fnAddrs[i], frames)
		c.stratum = sample[i].stratum
		sample[i] = c
		tl := by[c.stratum]
		if tl == nil {
			tl = &tally{}
			by[c.stratum] = tl
		}
		for _, x := range []*tally{tl, &all} {
			x.set += c.set
			x.printed += c.printed
			x.extra += len(c.extra)
			x.missed += len(c.missed)
		}
	}
	pct := func(x tally) (prec, rec float64) {
		return 100 * float64(x.set-x.extra) / float64(max(1, x.set)), 100 * float64(x.printed-x.missed) / float64(max(1, x.printed))
	}
	t.Logf("vmlinux %s: %d functions indexed; %d sampled (%d per stratum, seed %d), %d instruction addresses", ix.BuildID(), ix.Len(), len(sample), n, seed, len(addrs))
	for _, name := range []string{"clone", "cold", "inline-heavy", "ordinary"} {
		p, r := pct(*by[name])
		t.Logf("  %-12s %6d lines in sets, %6d printed: precision %.2f%%, recall %.2f%%", name, by[name].set, by[name].printed, p, r)
	}
	prec, rec := pct(all)
	t.Logf("  all          %6d lines in sets, %6d printed: precision %.2f%%, recall %.2f%%", all.set, all.printed, prec, rec)
	worst := func(what string, n func(lineCheck) []Line) {
		s := slices.Clone(sample)
		slices.SortStableFunc(s, func(a, b lineCheck) int { return cmp.Compare(len(n(b)), len(n(a))) })
		for _, c := range s[:10] {
			if l := n(c); len(l) > 0 {
				t.Logf("  %s %d: %v; e.g. %v", what, len(l), c, l[:min(len(l), 8)])
			}
		}
	}
	if prec < 99 {
		t.Errorf("precision %.2f%% < 99%%: lines in the sets that llvm-symbolizer prints for no address of the function", prec)
		worst("not printed", func(c lineCheck) []Line { return c.extra })
	}
	if rec < 99.5 {
		t.Errorf("recall %.2f%% < 99.5%%: lines llvm-symbolizer prints that the sets lack", rec)
		worst("missing", func(c lineCheck) []Line { return c.missed })
	}
}
