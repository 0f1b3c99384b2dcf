package symbolize

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/labtest"
)

// TestLabRunningKernel checks, on a booted lab kernel, what the host cannot:
// the build-id from /sys/kernel/notes, _text from /proc/kallsyms, and that
// every kallsyms text symbol maps through the KASLR offset to its function
// in the index of the matching vmlinux (6.12), or gets a size estimate
// where the lab has no DWARF (6.1).
func TestLabRunningKernel(t *testing.T) {
	labtest.Require(t)
	k, err := RunningKernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != labtest.Release() || len(k.BuildID) != 40 || k.Text == 0 {
		t.Fatalf("running kernel %+v: want release %s, a 20-byte build-id and _text", k, labtest.Release())
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ParseKallsyms(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	est, err := Estimate(syms)
	if err != nil {
		t.Fatal(err)
	}
	vr := est.Lookup("vfs_read")
	if len(vr) != 1 || !vr[0].Estimated || vr[0].LineCount() < 10 {
		t.Errorf("estimate of vfs_read: %+v", vr)
	}
	if labtest.Vmlinux() == "" {
		t.Fatalf("kernel %s (build-id %s): the lab runner gave no vmlinux with DWARF; both lab kernels have one (lab fetch -dbg)", k.Release, k.BuildID)
	}
	ix, err := Open(context.Background(), Options{VMLinux: labtest.Vmlinux(), Kernel: k, CacheDir: labtest.IndexCache()})
	if err != nil {
		t.Fatal(err)
	}
	if ix.BuildID() != k.BuildID {
		t.Fatalf("index build-id %s, running kernel %s", ix.BuildID(), k.BuildID)
	}
	// kallsyms has no sizes: labels inside functions (ftrace_call in
	// ftrace_caller) resolve to the function holding them. The symbols the
	// vmlinux gives a size must map, through the KASLR offset, exactly.
	off := k.Offset(ix)
	sized := map[string]bool{}
	for _, s := range sizedTextSymbols(t, labtest.Vmlinux()) {
		sized[s.Name+"@"+strconv.FormatUint(s.Addr, 16)] = true
	}
	var fns, labels []Symbol
	for _, s := range syms {
		if sized[s.Name+"@"+strconv.FormatUint(s.Addr-off, 16)] {
			fns = append(fns, s)
		} else {
			labels = append(labels, s)
		}
	}
	ok, total, bad := symbolAgreement(ix, fns, off)
	lok, ltotal, lbad := symbolAgreement(ix, labels, off)
	t.Logf("kernel %s: build-id %s, KASLR offset %#x", k.Release, k.BuildID, off)
	t.Logf("%d of %d sized kallsyms functions map to their function; others: %v", ok, total, bad)
	t.Logf("%d of %d unsized kallsyms labels map to a function of their name (the rest lie inside another: %v)", lok, ltotal, lbad)
	if ok != total || total < 40000 {
		t.Errorf("%d of %d kallsyms functions do not map to their function", total-ok, total)
	}
	// A vmlinux of another kernel is refused.
	if _, err := Open(context.Background(), Options{VMLinux: labtest.Vmlinux(), Kernel: Kernel{Release: k.Release, BuildID: "00" + k.BuildID[2:]}, CacheDir: t.TempDir()}); err == nil {
		t.Error("a build-id mismatch was accepted")
	}
}

// TestLabModule checks module symbolization against a module the lab
// kernel has loaded (overlay, loaded at boot): OpenModule reads its section
// addresses and build-id from /sys/module, finds the .ko with DWARF in the
// debug files the host extracted from the kernel's -dbg package
// (<lab cache>/dbg-modules/<release>/, by TestModuleLines), checks the
// build-id, and every /proc/kallsyms text symbol of the module maps to the
// function holding that symbol name, entered there when DWARF sizes it.
func TestLabModule(t *testing.T) {
	labtest.Require(t)
	const name = "overlay"
	release := labtest.Release()
	tree := filepath.Join(labtest.LabCache(), "dbg-modules", release)
	if _, err := os.Stat(filepath.Join(tree, "usr/lib/debug/lib/modules", release, "kernel/fs/overlayfs/overlay.ko")); err != nil {
		t.Fatalf("no debug file of module %s in %s: run `go test ./symbolize -run TestModuleLines` on the host first (it extracts them from the -dbg package): %v", name, tree, err)
	}
	if _, err := os.Stat("/sys/module/" + name + "/sections/.text"); err != nil {
		t.Fatalf("module %s is not loaded in the lab guest: %v", name, err)
	}
	id, err := ModuleBuildID(name)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := ModuleSections(name)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := OpenModule(context.Background(), ModuleOptions{Name: name, Path: tree, Kernel: Kernel{Release: release}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if ix.BuildID() != id || ix.Module() != name {
		t.Fatalf("index of module %q build-id %s; loaded module build-id %s", ix.Module(), ix.BuildID(), id)
	}
	for _, s := range ix.Sections() {
		if s.Addr != secs[s.Name] {
			t.Errorf("section %s placed at %#x, /sys/module says %#x", s.Name, s.Addr, secs[s.Name])
		}
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ParseKallsyms(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	total, entries, bad := 0, 0, 0
	for _, s := range syms {
		if s.Module != name || strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_") {
			continue
		}
		if strings.HasPrefix(sectionOf(ix, s.Addr), ".init.") {
			continue // freed after init: the address may be another's now
		}
		total++
		fn := ix.FuncAt(s.Addr)
		if fn == nil || !slices.Contains(ix.Lookup(s.Name), fn) {
			if bad++; bad <= 10 {
				t.Errorf("%s@%#x: FuncAt = %v, Lookup = %v", s.Name, s.Addr, fn, ix.Lookup(s.Name))
			}
			continue
		}
		if fn.Entry == s.Addr {
			entries++
		}
	}
	vx := ix.Lookup("ovl_open")
	if len(vx) != 1 || vx[0].File != "fs/overlayfs/file.c" || vx[0].LineCount() < 5 {
		t.Errorf("ovl_open: %+v", vx)
	}
	t.Logf("module %s (build-id %s, .text at %#x): %d functions; %d of %d kallsyms symbols map to their function (%d at its entry)", name, id, secs[".text"], ix.Len(), total-bad, total, entries)
	if total < 100 || bad > 0 {
		t.Errorf("%d of %d kallsyms symbols of %s do not map", bad, total, name)
	}
}
