package symbolize

import (
	"cmp"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
)

// labReleases are the Debian kernel releases of the lab (6.12, gcc 14;
// 6.1, gcc 12).
var labReleases = []string{"6.12.118+deb13-cloud-amd64", "6.1.0-57-cloud-amd64"}

// runtimeLayout gives every executable section of a .ko a runtime-like
// address (kernel module space, in reverse section order, so that the
// layout differs from the index's own).
func runtimeLayout(t testing.TB, ko string) map[string]uint64 {
	t.Helper()
	ef, err := elf.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	var names []string
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_EXECINSTR != 0 && s.Flags&elf.SHF_ALLOC != 0 && s.Size > 0 {
			names = append(names, s.Name)
		}
	}
	out := map[string]uint64{}
	for i, n := range slices.Backward(names) {
		out[n] = 0xffffffffc1000000 + uint64(len(names)-1-i)*0x400000
	}
	return out
}

// linkModule links a .ko into an executable whose executable sections lie
// at bases (GNU ld applies the relocations, debug sections included), so
// that llvm-symbolizer sees the addresses the index is asked about.
func linkModule(t testing.TB, ko string, bases map[string]uint64) string {
	t.Helper()
	if _, err := exec.LookPath("ld"); err != nil {
		t.Fatal("ld not found: apt-get install binutils")
	}
	var lds strings.Builder
	lds.WriteString("SECTIONS {\n")
	for n, a := range bases {
		fmt.Fprintf(&lds, "  %s %#x : { *(%s) }\n", n, a, n)
	}
	lds.WriteString("}\n")
	dir := t.TempDir()
	script := filepath.Join(dir, "mod.lds")
	if err := os.WriteFile(script, []byte(lds.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(ko), ".ko"))
	cmd := exec.Command("ld", "-T", script, "--unresolved-symbols=ignore-all", "--noinhibit-exec", "-e", "0", "-o", out, ko)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ld %s: %v: %s", ko, err, b)
	}
	return out
}

// TestModuleLines is the acceptance check of module symbolization on the
// Debian 6.12 and 6.1 modules that make a container's network and storage (veth,
// bridge, overlay, nf_tables, nf_conntrack): each .ko is indexed by
// OpenModule with its executable sections placed at runtime-like addresses;
// the same .ko linked by GNU ld with its sections at those addresses is
// the reference, on which llvm-symbolizer --inlining is run over every
// instruction of a seeded sample of functions (all sections: .text,
// .text.unlikely, .init.text, .exit.text). As for vmlinux:
//   - precision: ≥ 99 % of the lines in the sets are printed for some
//     address of the function;
//   - recall: ≥ 99.5 % of the lines printed are in the set.
//
// Every function symbol of the linked file is also found by FuncAt at its
// runtime address and by Lookup by name.
func TestModuleLines(t *testing.T) {
	for _, release := range labReleases {
		t.Run(release, func(t *testing.T) { testModuleLines(t, release) })
	}
}

func testModuleLines(t *testing.T, labRelease string) {
	mods := map[string]string{
		"veth": "drivers/net/veth.ko", "bridge": "net/bridge/bridge.ko", "overlay": "fs/overlayfs/overlay.ko",
		"nf_tables": "net/netfilter/nf_tables.ko", "nf_conntrack": "net/netfilter/nf_conntrack.ko",
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range mods {
			if !yield(n) {
				return
			}
		}
	})
	var rels []string
	for _, n := range names {
		rels = append(rels, mods[n])
	}
	kos := labtest.ModuleDebugFiles(t, labRelease, rels...)
	if _, err := exec.LookPath("llvm-symbolizer"); err != nil {
		t.Fatal("llvm-symbolizer not found: apt-get install llvm")
	}
	perModule := 40
	type tally struct{ set, printed, extra, missed, fns int }
	var all tally
	var sample []lineCheck
	cache := t.TempDir()
	for i, name := range names {
		ko := kos[i]
		bases := runtimeLayout(t, ko)
		start := time.Now()
		ix, err := OpenModule(context.Background(), ModuleOptions{Name: name, Path: ko, Kernel: Kernel{Release: labRelease}, Sections: bases, CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		built := time.Since(start)
		if ix.Module() != name || ix.BuildID() == "" {
			t.Errorf("%s: index of module %q, build-id %q", name, ix.Module(), ix.BuildID())
		}
		linked := linkModule(t, ko, bases)
		ef, err := elf.Open(linked)
		if err != nil {
			t.Fatal(err)
		}
		// Every function symbol is found at its runtime address.
		syms, _ := ef.Symbols()
		nsym, bad := 0, 0
		for _, s := range syms {
			sec := int(s.Section)
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || sec <= 0 || sec >= len(ef.Sections) || ef.Sections[sec].Flags&elf.SHF_EXECINSTR == 0 || strings.HasPrefix(s.Name, "__pfx_") {
				continue
			}
			nsym++
			f := ix.FuncAt(s.Value)
			if f == nil || !slices.Contains(ix.Lookup(s.Name), f) {
				if bad++; bad <= 5 {
					t.Errorf("%s: symbol %s at %#x: FuncAt = %v, Lookup = %v", name, s.Name, s.Value, f, ix.Lookup(s.Name))
				}
			}
		}
		var pool []*Function
		sections := map[string]int{}
		for f := range ix.All() {
			if !f.Estimated {
				pool = append(pool, f)
			}
		}
		rng := rand.New(rand.NewPCG(14, uint64(i)))
		picked := pool
		if len(pool) > perModule {
			picked = nil
			for _, j := range rng.Perm(len(pool))[:perModule] {
				picked = append(picked, pool[j])
			}
		}
		// The sections other than .text hold few functions: take them all.
		for _, f := range pool {
			if sec := sectionOf(ix, f.Entry); sec != ".text" && !slices.Contains(picked, f) {
				picked = append(picked, f)
			}
		}
		fnAddrs := make([][]uint64, len(picked))
		var addrs []uint64
		for j, f := range picked {
			sections[sectionOf(ix, f.Entry)]++
			fnAddrs[j] = instructionAddrs(t, ef, f)
			addrs = append(addrs, fnAddrs[j]...)
		}
		frames := symbolizeInlining(t, linked, "", addrs)
		var mt tally
		for j, f := range picked {
			c := checkLines(f, fnAddrs[j], frames)
			c.stratum = name
			sample = append(sample, c)
			for _, x := range []*tally{&mt, &all} {
				x.set += c.set
				x.printed += c.printed
				x.extra += len(c.extra)
				x.missed += len(c.missed)
				x.fns++
			}
		}
		ef.Close()
		t.Logf("%-12s build-id %s: %d functions indexed in %v, %d symbols checked (%d not found); %d sampled %v, %d instructions: %d lines in sets, %d printed, %d not printed, %d missed",
			name, ix.BuildID(), ix.Len(), built.Round(time.Millisecond), nsym, bad, len(picked), sections, len(addrs), mt.set, mt.printed, mt.extra, mt.missed)
	}
	prec := 100 * float64(all.set-all.extra) / float64(max(1, all.set))
	rec := 100 * float64(all.printed-all.missed) / float64(max(1, all.printed))
	t.Logf("%s all: %d functions of %d modules, %d lines in sets, %d printed: precision %.2f%%, recall %.2f%%", labRelease, all.fns, len(names), all.set, all.printed, prec, rec)
	worst := func(what string, n func(lineCheck) []Line) {
		s := slices.Clone(sample)
		slices.SortStableFunc(s, func(a, b lineCheck) int { return cmp.Compare(len(n(b)), len(n(a))) })
		for _, c := range s[:min(10, len(s))] {
			if l := n(c); len(l) > 0 {
				t.Logf("  %s %d: %v; e.g. %v", what, len(l), c, l[:min(len(l), 8)])
			}
		}
	}
	if all.fns < 200 {
		t.Errorf("only %d functions sampled, want at least 200", all.fns)
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

// sectionOf names the section of ix that holds addr.
func sectionOf(ix *Index, addr uint64) string {
	for _, s := range ix.Sections() {
		if addr >= s.Addr && addr < s.Addr+s.Size {
			return s.Name
		}
	}
	return "?"
}

// compileModule builds testdata/module/mod.c the way kbuild builds a module
// object (gcc -O2 -g -c, then ld -r --build-id): setup lies in .init.text,
// work in .text.work, teardown in .exit.text, each at offset 0 of its
// section, so that DWARF relocated with every section at 0 overlaps.
func compileModule(t testing.TB, dir string) string {
	t.Helper()
	for _, tool := range []string{"gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install gcc binutils", tool)
		}
	}
	src, err := filepath.Abs("testdata/module/mod.c")
	if err != nil {
		t.Fatal(err)
	}
	obj, ko := filepath.Join(dir, "mod.o"), filepath.Join(dir, "mod.ko")
	for _, args := range [][]string{
		{"gcc", "-O2", "-g", "-c", "-ffunction-sections", "-o", obj, src},
		{"ld", "-r", "--build-id", "-o", ko, obj},
	} {
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, b)
		}
	}
	return ko
}

// TestModuleFixtureSections checks the per-section relocation on a module
// object whose three functions all start at offset 0 of their sections:
// each is found at its own runtime address, with exactly the lines
// llvm-symbolizer prints for it (on the object linked at those addresses),
// all of them in its own body.
func TestModuleFixtureSections(t *testing.T) {
	dir := t.TempDir()
	ko := compileModule(t, dir)
	bases := map[string]uint64{".init.text": 0xffffffffc0200000, ".text.work": 0xffffffffc0100000, ".exit.text": 0xffffffffc0300000}
	cache := filepath.Join(dir, "cache")
	ix, err := OpenModule(context.Background(), ModuleOptions{Name: "mod", Path: ko, Kernel: Kernel{Release: "test"}, Sections: bases, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if ix.Module() != "mod" || ix.BuildID() == "" {
		t.Errorf("module %q build-id %q", ix.Module(), ix.BuildID())
	}
	if _, err := os.Stat(cachePath(cache, ix.BuildID())); err != nil {
		t.Errorf("index not cached by build-id: %v", err)
	}
	body := map[string][2]int{"setup": {4, 10}, "work": {13, 19}, "teardown": {22, 24}}
	section := map[string]string{"setup": ".init.text", "work": ".text.work", "teardown": ".exit.text"}
	linked := linkModule(t, ko, bases)
	wd, err := os.Getwd() // the compilation directory
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range body {
		fs := ix.Lookup(name)
		if len(fs) != 1 {
			t.Fatalf("Lookup(%s) = %v, want one function", name, fs)
		}
		f := fs[0]
		if f.Entry != bases[section[name]] || ix.FuncAt(f.Entry) != f || ix.FuncAt(f.Entry+1) != f {
			t.Errorf("%s: entry %#x, want %#x (%s); FuncAt(entry) = %v", name, f.Entry, bases[section[name]], section[name], ix.FuncAt(f.Entry))
		}
		own, inl := f.Lines()
		if len(own) == 0 || len(inl) != 0 {
			t.Errorf("%s: own %v, inlined %v", name, own, inl)
		}
		for _, l := range own {
			if !strings.HasSuffix(l.File, "mod.c") || l.Line < b[0] || l.Line > b[1] {
				t.Errorf("%s: line %v outside its body (lines %d-%d)", name, l, b[0], b[1])
			}
		}
		addrs := byteAddrs(f)
		c := checkLines(f, addrs, symbolizeInlining(t, linked, wd, addrs))
		if len(c.extra) > 0 || len(c.missed) > 0 || c.printed == 0 {
			t.Errorf("%v: not printed by llvm-symbolizer %v, printed but missing %v", c, c.extra, c.missed)
		}
	}
	// The cached index keeps its own layout: sections apart, none at 0.
	cached, err := Load(cachePath(cache, ix.BuildID()))
	if err != nil {
		t.Fatal(err)
	}
	secs := cached.Sections()
	if len(secs) != 3 || cached.Module() != "mod" {
		t.Fatalf("cached index: module %q, sections %v", cached.Module(), secs)
	}
	slices.SortFunc(secs, func(a, b Section) int { return cmp.Compare(a.Addr, b.Addr) })
	for i, s := range secs {
		if s.Addr == 0 || (i > 0 && s.Addr < secs[i-1].Addr+secs[i-1].Size) {
			t.Errorf("cached layout %v: section %s at 0 or overlapping", secs, s.Name)
		}
	}
	// Placing only some sections leaves the others' functions out.
	part, err := cached.Place(map[string]uint64{".text.work": 0xffffffffc0500000})
	if err != nil {
		t.Fatal(err)
	}
	if part.Len() != 1 || part.FuncAt(0xffffffffc0500000) == nil || part.FuncAt(0xffffffffc0500000).Name != "work" || len(part.Lookup("setup")) != 0 {
		t.Errorf("placing .text.work alone: %d functions", part.Len())
	}
	if _, err := cached.Place(map[string]uint64{".text.work": 0x1000, ".init.text": 0x1010}); err == nil {
		t.Error("overlapping sections placed without an error")
	}
}

// TestModuleFind covers finding the debug file and checking build-ids.
func TestModuleFind(t *testing.T) {
	dir := t.TempDir()
	ko := compileModule(t, dir)
	id, err := fileBuildID(ko, "")
	if err != nil || id == "" {
		t.Fatalf("build-id of %s: %q, %v", ko, id, err)
	}
	ctx := context.Background()
	bases := map[string]uint64{".text.work": 0xffffffffc0100000}
	open := func(o ModuleOptions) (*Index, error) {
		o.Kernel.Release = "test"
		o.CacheDir = filepath.Join(dir, "cache")
		o.Rebuild = true
		if o.Sections == nil {
			o.Sections = bases
		}
		return OpenModule(ctx, o)
	}
	// A wrong build-id with an explicit file.
	if _, err := open(ModuleOptions{Name: "mod", Path: ko, BuildID: "00"}); !errors.Is(err, ErrBuildIDMismatch) {
		t.Errorf("explicit file of another build: %v, want ErrBuildIDMismatch", err)
	}
	// A tree: by file name (dashes and underscores alike), ...
	tree := filepath.Join(dir, "tree")
	sub := filepath.Join(tree, "usr/lib/debug/lib/modules/test/kernel/drivers/net")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ko)
	if err := os.WriteFile(filepath.Join(sub, "my-mod.ko"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if ix, err := open(ModuleOptions{Name: "my_mod", Path: tree, BuildID: id}); err != nil || ix.Len() != 1 {
		t.Errorf("by name in a tree: %v", err)
	}
	// The index is cached by build-id: a second open needs no debug file.
	ix, err := OpenModule(ctx, ModuleOptions{Name: "my_mod", Path: filepath.Join(dir, "empty"), BuildID: id, Sections: bases, Kernel: Kernel{Release: "test"}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil || ix.Len() != 1 || ix.FuncAt(bases[".text.work"]) == nil {
		t.Errorf("from the cache: %v", err)
	}
	// ... of another build: a mismatch naming the file, ...
	if _, err := open(ModuleOptions{Name: "my_mod", Path: tree, BuildID: "00"}); !errors.Is(err, ErrBuildIDMismatch) || !strings.Contains(err.Error(), "my-mod.ko") {
		t.Errorf("tree with another build: %v, want ErrBuildIDMismatch naming my-mod.ko", err)
	}
	// ... by build-id under another name, ...
	if ix, err := open(ModuleOptions{Name: "renamed", Path: tree, BuildID: id}); err != nil || ix.Len() != 1 {
		t.Errorf("by build-id in a tree: %v", err)
	}
	// ... and nothing at all.
	if _, err := open(ModuleOptions{Name: "absent", Path: tree, BuildID: "00"}); !errors.Is(err, ErrNoDebugInfo) {
		t.Errorf("absent module: %v, want ErrNoDebugInfo", err)
	}
	// A stripped module has no DWARF.
	stripped := filepath.Join(dir, "stripped.ko")
	if out, err := exec.Command("objcopy", "--strip-debug", ko, stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v: %s", err, out)
	}
	if _, err := open(ModuleOptions{Name: "mod", Path: stripped}); !errors.Is(err, ErrNoDebugInfo) {
		t.Errorf("stripped module: %v, want ErrNoDebugInfo", err)
	}
}

// TestModuleSysfs reads a loaded module's sections and build-id from a
// /sys/module tree.
func TestModuleSysfs(t *testing.T) {
	dir := t.TempDir()
	ko := compileModule(t, dir)
	ef, err := elf.Open(ko)
	if err != nil {
		t.Fatal(err)
	}
	note, err := ef.Section(".note.gnu.build-id").Data()
	ef.Close()
	if err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(dir, "sys")
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("mod/sections/.text.work", "0xffffffffc0a00000\n")
	write("mod/sections/.init.text", "0xffffffffc0b00000\n")
	write("mod/sections/.data", "0xffffffffc0c00000\n")
	write("mod/notes/.note.gnu.build-id", string(note))
	write("hidden/sections/.text", "0x0000000000000000\n")
	write("bad/sections/.text", "ffffffffc0a00000\n")
	defer func(old string) { sysModule = old }(sysModule)
	sysModule = sys
	ix, err := OpenModule(context.Background(), ModuleOptions{Name: "mod", Path: ko, Kernel: Kernel{Release: "test"}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	if f := ix.FuncAt(0xffffffffc0a00004); f == nil || f.Name != "work" {
		t.Errorf("FuncAt(.text.work+4) = %v, want work", f)
	}
	if f := ix.FuncAt(0xffffffffc0b00000); f == nil || f.Name != "setup" {
		t.Errorf("FuncAt(.init.text) = %v, want setup", f)
	}
	if len(ix.Lookup("teardown")) != 0 {
		t.Error("teardown (.exit.text, not loaded) is in the placed index")
	}
	write("mod/notes/.note.gnu.build-id", string(note[:len(note)-1])+"\x01")
	if _, err := OpenModule(context.Background(), ModuleOptions{Name: "mod", Path: ko, Kernel: Kernel{Release: "test"}, CacheDir: filepath.Join(dir, "cache")}); !errors.Is(err, ErrBuildIDMismatch) {
		t.Errorf("loaded module of another build: %v, want ErrBuildIDMismatch", err)
	}
	if _, err := ModuleSections("hidden"); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("hidden addresses: %v, want an error saying to run as root", err)
	}
	if _, err := ModuleSections("bad"); err == nil {
		t.Error("a section address without 0x was accepted")
	}
	if _, err := ModuleSections("absent"); err == nil || !strings.Contains(err.Error(), "loaded") {
		t.Errorf("absent module: %v", err)
	}
}

// TestApplyRelaUnknown: a relocation type the reader does not know is an
// error naming it, not skipped.
func TestApplyRelaUnknown(t *testing.T) {
	out := make([]byte, 16)
	rb := make([]byte, 24)
	rb[8] = byte(elf.R_X86_64_GOTPCREL)
	err := applyRela(out, rb, nil, func(elf.SectionIndex) (uint64, bool) { return 0, true })
	if err == nil || !strings.Contains(err.Error(), "R_X86_64_GOTPCREL") {
		t.Errorf("GOTPCREL: %v, want an error naming it", err)
	}
	// The known types write their value; PC-relative ones subtract the place.
	syms := []elf.Symbol{{Name: "s", Section: 1, Value: 0x10}}
	base := func(i elf.SectionIndex) (uint64, bool) { return 0x1000, i == 1 }
	for _, c := range []struct {
		typ  elf.R_X86_64
		off  uint64
		want uint64
		size int
	}{
		{elf.R_X86_64_64, 0, 0x1012, 8},
		{elf.R_X86_64_32, 4, 0x1012, 4},
		{elf.R_X86_64_PC32, 4, 0x1012 - 4, 4},
		{elf.R_X86_64_PLT32, 8, 0x1012 - 8, 4},
	} {
		out := make([]byte, 16)
		rb := make([]byte, 24)
		putRela(rb, c.off, 1, c.typ, 2)
		if err := applyRela(out, rb, syms, base); err != nil {
			t.Errorf("%s: %v", c.typ, err)
			continue
		}
		var got uint64
		for i := c.size - 1; i >= 0; i-- {
			got = got<<8 | uint64(out[int(c.off)+i])
		}
		if got != c.want {
			t.Errorf("%s: wrote %#x, want %#x", c.typ, got, c.want)
		}
	}
	// An undefined symbol, a value that does not fit, a place past the end.
	for _, c := range []struct {
		name string
		rb   func([]byte)
	}{
		{"undefined", func(rb []byte) { putRela(rb, 0, 1, elf.R_X86_64_64, 0); syms[0].Section = 0 }},
		{"overflow", func(rb []byte) { putRela(rb, 0, 1, elf.R_X86_64_32, 1<<40); syms[0].Section = 1 }},
		{"past the end", func(rb []byte) { putRela(rb, 12, 1, elf.R_X86_64_64, 0) }},
		{"bad symbol", func(rb []byte) { putRela(rb, 0, 7, elf.R_X86_64_64, 0) }},
	} {
		rb := make([]byte, 24)
		c.rb(rb)
		if err := applyRela(make([]byte, 16), rb, syms, base); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func putRela(rb []byte, off, sym uint64, typ elf.R_X86_64, add int64) {
	binary.LittleEndian.PutUint64(rb, off)
	binary.LittleEndian.PutUint64(rb[8:], sym<<32|uint64(typ))
	binary.LittleEndian.PutUint64(rb[16:], uint64(add))
}

// TestEstimateModule: a module without DWARF gets size-based estimates for
// its own kallsyms symbols only.
func TestEstimateModule(t *testing.T) {
	syms := []Symbol{
		{Addr: 0xffffffff81000000, Name: "_text"}, {Addr: 0xffffffff81000100, Name: "vfs_read"},
		{Addr: 0xffffffffc0000000, Name: "veth_xmit", Module: "veth"}, {Addr: 0xffffffffc0000340, Name: "veth_open", Module: "veth"},
		{Addr: 0xffffffffc0000400, Name: "veth_close", Module: "veth"},
		{Addr: 0xffffffffc0100000, Name: "br_forward", Module: "bridge"},
	}
	ix, err := EstimateModule(syms, "veth")
	if err != nil {
		t.Fatal(err)
	}
	if ix.Module() != "veth" || ix.Len() != 2 {
		t.Fatalf("module %q, %d functions, want veth with 2 (the last has no end)", ix.Module(), ix.Len())
	}
	f := ix.FuncAt(0xffffffffc0000010)
	if f == nil || f.Name != "veth_xmit" || !f.Estimated || f.LineCount() != int(estimateLines(0x340)) {
		t.Errorf("FuncAt(veth_xmit+0x10) = %+v", f)
	}
	if _, err := EstimateModule(syms, "absent"); err == nil {
		t.Error("no error for a module without symbols")
	}
}
