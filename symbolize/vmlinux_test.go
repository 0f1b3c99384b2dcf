package symbolize

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testVMLinux returns a Debian 6.12 vmlinux with DWARF, or skips: the file
// (~346 MB) is fetched by the lab tooling (`make fetch`), never committed.
// Order: $HAPSCOPE_VMLINUX, the lab's (guest or host cache), ~/.cache/hapscope/dbg.
func testVMLinux(t testing.TB) string {
	t.Helper()
	for _, env := range []string{"HAPSCOPE_VMLINUX", "HAPSCOPE_LAB_VMLINUX"} {
		if p := os.Getenv(env); p != "" {
			return p
		}
	}
	return labVMLinux(t, "6.12")
}

// labVMLinux returns the lab's vmlinux with DWARF of a Debian kernel series
// ("6.12", "6.1"), or skips; under HAPSCOPE_REQUIRE_LAB=1 (make test) a
// missing one fails the test.
func labVMLinux(t testing.TB, series string) string {
	t.Helper()
	pat := series + ".*"
	var globs []string
	if d := os.Getenv("HAPSCOPE_LAB_CACHE"); d != "" {
		globs = append(globs, filepath.Join(d, "dbg", pat, "vmlinux"))
	}
	if d, err := os.UserCacheDir(); err == nil {
		globs = append(globs,
			filepath.Join(d, "hapscope-lab", "dbg", pat, "vmlinux"),
			filepath.Join(d, "hapscope", "dbg", "usr/lib/debug/boot/vmlinux-"+pat))
	}
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	if os.Getenv("HAPSCOPE_REQUIRE_LAB") == "1" {
		t.Fatalf("no Debian %s vmlinux with DWARF although make fetched it (HAPSCOPE_REQUIRE_LAB=1)", series)
	}
	t.Skipf("no Debian %s vmlinux with DWARF: run `make fetch` (lab tooling) or set HAPSCOPE_VMLINUX", series)
	return ""
}

// TestVmlinuxSmoke checks the index of the Debian 6.12 vmlinux on functions
// whose shape is known: vfs_read (C, with inlined code), entry_SYSCALL_64
// (assembly, no subprogram DIE) and every compiler clone (its own function).
func TestVmlinuxSmoke(t *testing.T) {
	path := testVMLinux(t)
	ix, err := Build(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := fileBuildID(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if ix.BuildID() != id || len(id) != 40 || ix.Text() == 0 || ix.Len() < 40000 {
		t.Errorf("index: build-id %q (file %q), _text %#x, %d functions", ix.BuildID(), id, ix.Text(), ix.Len())
	}
	vr := ix.Lookup("vfs_read")
	if len(vr) != 1 {
		t.Fatalf("Lookup(vfs_read) = %v, want one function", vr)
	}
	f := vr[0]
	own, inl := f.Lines()
	t.Logf("vfs_read %s:%d entry %#x ranges %v: %d own, %d inlined lines", f.File, f.Line, f.Entry, f.Ranges, len(own), len(inl))
	if f.File != "fs/read_write.c" || f.Symbol != "vfs_read" || f.Estimated || ix.FuncAt(f.Entry) != f || len(own) < 10 || len(inl) < 5 {
		t.Errorf("vfs_read: file %q symbol %q estimated %v, FuncAt(entry) %v, %d own and %d inlined lines", f.File, f.Symbol, f.Estimated, ix.FuncAt(f.Entry), len(own), len(inl))
	}
	for _, l := range own {
		if l.File != f.File || l.Line < f.Line || l.Line > f.Line+100 {
			t.Errorf("vfs_read own line %v lies outside its body (%s:%d…)", l, f.File, f.Line)
		}
	}
	for _, l := range inl {
		if l.File == f.File && l.Line >= f.Line && l.Line <= f.Line+40 {
			t.Errorf("vfs_read inlined line %v lies in its own body", l)
		}
	}
	es := ix.Lookup("entry_SYSCALL_64")
	if len(es) != 1 {
		t.Fatalf("Lookup(entry_SYSCALL_64) = %v, want one function", es)
	}
	own, inl = es[0].Lines()
	t.Logf("entry_SYSCALL_64 %s: %d own, %d inlined lines", es[0].File, len(own), len(inl))
	if es[0].Estimated || len(own) < 10 || len(inl) != 0 {
		t.Errorf("entry_SYSCALL_64: estimated %v, %d own and %d inlined lines; want the lines of its assembly", es[0].Estimated, len(own), len(inl))
	}
	for _, l := range own {
		if l.File != "arch/x86/entry/entry_64.S" {
			t.Errorf("entry_SYSCALL_64 line %v is not in arch/x86/entry/entry_64.S", l)
			break
		}
	}
	// Every clone is its own function, found by its symbol name.
	clones, bad := 0, 0
	syms := sizedTextSymbols(t, path)
	namesAt := map[uint64][]string{}
	for _, s := range syms {
		namesAt[s.Addr] = append(namesAt[s.Addr], s.Name)
	}
	for _, s := range syms {
		if !isClone(s.Name) || strings.HasSuffix(s.Name, ".cold") || strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_") {
			continue
		}
		clones++
		f := ix.FuncAt(s.Addr)
		// Static clones of the same name in several files share the symbol
		// name: Lookup finds each of them. Identical code folded under two
		// symbols is one function, named by one of them.
		got := ix.Lookup(s.Name)
		if f == nil || !slices.Contains(namesAt[s.Addr], f.Symbol) || f.Entry != s.Addr || !slices.Contains(got, f) {
			if bad++; bad <= 10 {
				t.Errorf("clone %s@%#x: FuncAt = %v, Lookup = %v", s.Name, s.Addr, f, got)
			}
		}
	}
	t.Logf("%d clones, %d not their own function", clones, bad)
	if clones < 1000 {
		t.Errorf("only %d clone symbols (.isra/.constprop/.part): is this a gcc -O2 kernel?", clones)
	}
}
