package symbolize

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fixture is the test program of testdata/fixture compiled by one compiler.
type fixture struct {
	name string // e.g. "gcc-dwarf5"
	cc   string
	path string
}

// buildFixtures compiles testdata/fixture with gcc and clang at -O2 -g, as
// DWARF 4 and 5. A missing compiler fails the test: the fixtures are the
// package's ground truth.
func buildFixtures(t testing.TB) []fixture {
	t.Helper()
	dir := t.TempDir()
	var out []fixture
	for _, cc := range []string{"gcc", "clang"} {
		for _, v := range []string{"4", "5"} {
			out = append(out, compileFixture(t, dir, cc, v))
		}
	}
	return out
}

// L builds a line list: L("a.c", 1, 2) = a.c:1 a.c:2.
func L(file string, lines ...int) []Line {
	var out []Line
	for _, l := range lines {
		out = append(out, Line{file, l})
	}
	return out
}

func cat(ls ...[]Line) []Line {
	var out []Line
	for _, l := range ls {
		out = append(out, l...)
	}
	sort.Slice(out, func(i, j int) bool { return compareLine(out[i], out[j]) < 0 })
	return out
}

type want struct {
	file     string
	own, inl []Line
	copies   int // functions of that symbol (hget: one out-of-line copy per unit)
	ranges   int // address ranges (split: hot + cold with gcc)
}

// fixtureWant are the exact line sets of testdata/fixture by symbol, read
// off the source: every line whose code owns a byte, the call sites of
// inlined functions as own lines, and the inlined bodies. The opening lines
// of functions own no byte (gcc gives them zero-length rows, clang marks the
// first statement), except split's and gate's under clang; gcc's epilogues
// own the closing braces. gcc splits gate: its head (line 49) is inlined
// into gated and kept in gate, which calls the rest, gate.part.0.
func fixtureWant(cc string) map[string]want {
	if cc == "gcc" {
		return map[string]want{
			"outer":              {file: "a.c", own: L("a.c", 19, 20, 21, 22, 23, 24), inl: cat(L("a.c", 7, 8, 9), L("hdr.h", 7, 8, 9, 10)), copies: 1, ranges: 1},
			"scaled.constprop.0": {file: "a.c", own: L("a.c", 14, 15, 16), copies: 1, ranges: 1},
			"report":             {file: "a.c", own: L("a.c", 28, 29), copies: 1, ranges: 1},
			"split":              {file: "a.c", own: L("a.c", 33, 34, 35, 36, 37, 39, 40, 41), copies: 1, ranges: 2},
			"main":               {file: "b.c", own: L("b.c", 10, 11, 12, 13, 14, 15), inl: L("hdr.h", 7, 8, 9, 10), copies: 1, ranges: 1},
			"hget":               {file: "hdr.h", own: L("hdr.h", 14, 15, 16), copies: 2, ranges: 1},
			"gate":               {file: "a.c", own: L("a.c", 49, 58), copies: 1, ranges: 1},
			"gate.part.0":        {file: "a.c", own: L("a.c", 51, 52, 53, 54, 56, 57, 58), inl: L("hdr.h", 9, 10), copies: 1, ranges: 1},
			"gated":              {file: "a.c", own: L("a.c", 62, 63), inl: L("a.c", 49), copies: 1, ranges: 1},
		}
	}
	return map[string]want{
		"outer":  {file: "a.c", own: L("a.c", 19, 20, 21, 22, 23), inl: cat(L("a.c", 7, 8, 9), L("hdr.h", 7, 8, 9, 10)), copies: 1, ranges: 1},
		"scaled": {file: "a.c", own: L("a.c", 14, 15), copies: 1, ranges: 1},
		"report": {file: "a.c", own: L("a.c", 28, 29), copies: 1, ranges: 1},
		"split":  {file: "a.c", own: L("a.c", 32, 33, 34, 35, 36, 39, 40, 41), copies: 1, ranges: 1},
		"main":   {file: "b.c", own: L("b.c", 10, 11, 12, 13, 14), inl: L("hdr.h", 7, 8, 9, 10), copies: 1, ranges: 1},
		"hget":   {file: "hdr.h", own: L("hdr.h", 14, 15), copies: 2, ranges: 1},
		"gate":   {file: "a.c", own: L("a.c", 48, 49, 51, 52, 53, 54, 56, 57, 58), inl: L("hdr.h", 9, 10), copies: 1, ranges: 1},
		"gated":  {file: "a.c", own: L("a.c", 61, 62), inl: cat(L("a.c", 49, 51, 52, 53, 54, 56, 57), L("hdr.h", 9, 10)), copies: 1, ranges: 1},
	}
}

func TestFixtureLines(t *testing.T) {
	for _, fx := range buildFixtures(t) {
		t.Run(fx.name, func(t *testing.T) {
			ix, err := Build(fx.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			wants := fixtureWant(fx.cc)
			bySym := map[string][]*Function{}
			for f := range ix.All() {
				bySym[f.Symbol] = append(bySym[f.Symbol], f)
			}
			for sym, w := range wants {
				fns := bySym[sym]
				if len(fns) != w.copies {
					t.Errorf("symbol %s: %d functions, want %d", sym, len(fns), w.copies)
					continue
				}
				for _, f := range fns {
					own, inl := f.Lines()
					if f.Name != baseName(sym) || f.File != w.file || f.Estimated || len(f.Ranges) != w.ranges {
						t.Errorf("%s: name %q file %q estimated %v ranges %v; want name %q, file %q, %d ranges", sym, f.Name, f.File, f.Estimated, f.Ranges, baseName(sym), w.file, w.ranges)
					}
					if d := cmp.Diff(w.own, own, cmpopts.EquateEmpty()); d != "" {
						t.Errorf("%s own lines (-want +got):\n%s", sym, d)
					}
					if d := cmp.Diff(w.inl, inl, cmpopts.EquateEmpty()); d != "" {
						t.Errorf("%s inlined lines (-want +got):\n%s", sym, d)
					}
					if n := f.LineCount(); n != len(cat(w.own, w.inl)) {
						t.Errorf("%s LineCount %d, want %d", sym, n, len(cat(w.own, w.inl)))
					}
				}
			}
			// Every function's set is exactly what llvm-symbolizer
			// --inlining prints over all of its bytes.
			var fns []*Function
			var addrs []uint64
			for f := range ix.All() {
				if _, ours := wants[f.Symbol]; ours {
					fns = append(fns, f)
					addrs = append(addrs, byteAddrs(f)...)
				}
			}
			src, err := filepath.Abs("testdata/fixture")
			if err != nil {
				t.Fatal(err)
			}
			frames := symbolizeInlining(t, fx.path, src, addrs)
			for _, f := range fns {
				if c := checkLines(f, byteAddrs(f), frames); len(c.extra)+len(c.missed) > 0 {
					t.Errorf("%v: llvm-symbolizer prints none of %v, and %v not in the set", c, c.extra, c.missed)
				}
			}
		})
	}
}

// TestFixtureSymbols: every ELF symbol of the fixture's own functions maps
// to its own function by address: a clone (scaled.constprop.0, gate.part.0)
// to itself, not to the function it was cloned from, and a cold part to the
// function whose ranges include it. Lookup finds a clone by its symbol name
// alone, and all copies by the C name.
func TestFixtureSymbols(t *testing.T) {
	for _, fx := range buildFixtures(t) {
		t.Run(fx.name, func(t *testing.T) {
			ix, err := Build(fx.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			ef, err := elf.Open(fx.path)
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			syms, err := ef.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]bool{}
			for sym := range fixtureWant(fx.cc) {
				ours[baseName(sym)] = true
			}
			at := map[string]*Function{}
			for _, s := range syms {
				if !ours[baseName(s.Name)] || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
					continue
				}
				f := ix.FuncAt(s.Value)
				at[s.Name] = f
				if f == nil || f.Name != baseName(s.Name) {
					t.Errorf("FuncAt(%#x) for symbol %s = %v", s.Value, s.Name, f)
					continue
				}
				got := ix.Lookup(s.Name)
				if !slices.Contains(got, f) {
					t.Errorf("Lookup(%q) = %v, want it to hold %s@%#x", s.Name, got, f.Symbol, f.Entry)
				}
				if strings.HasSuffix(s.Name, ".cold") {
					if !slices.ContainsFunc(f.Ranges, func(r Range) bool { return r.Lo == s.Value }) || f.Entry == s.Value {
						t.Errorf("cold part %s@%#x: function %s entry %#x ranges %v", s.Name, s.Value, f.Symbol, f.Entry, f.Ranges)
					}
					continue
				}
				if f.Symbol != s.Name || f.Entry != s.Value {
					t.Errorf("FuncAt(%#x) for symbol %s = %s@%#x, want the symbol's own function", s.Value, s.Name, f.Symbol, f.Entry)
				}
				if s.Name != baseName(s.Name) && len(got) != 1 {
					t.Errorf("Lookup(%q) = %d functions, want the clone alone", s.Name, len(got))
				}
				if n := len(ix.Lookup(baseName(s.Name))); s.Name != baseName(s.Name) && n < 2 && at[baseName(s.Name)] != nil {
					t.Errorf("Lookup(%q) = %d functions, want the original and its clone", baseName(s.Name), n)
				}
			}
			if fx.cc == "gcc" {
				if at["split.cold"] == nil || at["scaled.constprop.0"] == nil || at["gate.part.0"] == nil || at["gate"] == nil {
					t.Fatalf("gcc did not make split.cold, scaled.constprop.0 and gate.part.0 (symbols %v): the fixture no longer tests clones", at)
				}
				g, p := at["gate"], at["gate.part.0"]
				if g == p || overlaps(rangePairs(g.Ranges), rangePairs(p.Ranges)) {
					t.Errorf("gate %v and gate.part.0 %v share code", g.Ranges, p.Ranges)
				}
			}
		})
	}
}

func rangePairs(rs []Range) [][2]uint64 {
	var out [][2]uint64
	for _, r := range rs {
		out = append(out, [2]uint64{r.Lo, r.Hi})
	}
	return out
}

// compileFixture builds testdata/fixture with cc at -O2 -g -gdwarf-v into dir.
func compileFixture(t testing.TB, dir, cc, v string) fixture {
	t.Helper()
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("%s not found: install gcc and clang (apt-get install gcc clang) to run the fixture tests", cc)
	}
	src, err := filepath.Abs("testdata/fixture")
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{name: cc + "-dwarf" + v, cc: cc, path: filepath.Join(dir, cc+"-dwarf"+v)}
	cmd := exec.Command(cc, "-O2", "-g", "-gdwarf-"+v, "-o", f.path, "a.c", "b.c")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	return f
}
