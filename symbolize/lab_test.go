package symbolize

import (
	"context"
	"os"
	"strconv"
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
		t.Logf("kernel %s (build-id %s): no vmlinux with DWARF in the lab; estimated index of %d functions", k.Release, k.BuildID, est.Len())
		return
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
