package hap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// startIn starts a busybox shell loop in a new cgroup under the v2 root.
func startIn(t *testing.T, name, script string) (dir string, stop func()) {
	t.Helper()
	dir = filepath.Join("/sys/fs/cgroup", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestLabScore scores two known workloads with one attach on the lab kernel
// and checks what every profile must satisfy. Lines come from the Debian
// vmlinux's DWARF on both kernels (index built on the host by the lab
// runner); on 6.1, fentry probes a bounded set of functions.
func TestLabScore(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	opt := ScoreOptions{Warmup: time.Second, Window: 3 * time.Second, Samples: 3, Catalogue: cat}
	if labtest.IndexCache() == "" {
		t.Fatal("the lab runner exported no line index: both lab kernels have DWARF (lab fetch -dbg), so every lab profile has exact lines")
	}
	opt.Symbolize = symbolize.Options{CacheDir: labtest.IndexCache()}
	// Module code (the lab's /tmp is on overlayfs) is symbolized from the
	// module debug files the host extracted.
	opt.ModuleDebug = labtest.ModuleDebug()
	if labtest.Kernel() != "6.12" {
		// fentry on 6.1 attaches one program per function (and detaches
		// slowly under emulation): probe a bounded set that includes the
		// functions asserted below.
		n := 0
		opt.Catalogue = cat.Subset(func(f coverage.Function) bool {
			keep := f.Name == "vfs_read" || f.Name == "vfs_mkdir" || f.Name == "do_mkdirat" || f.Name == "ksys_read" ||
				(n < 60 && (strings.HasPrefix(f.Name, "vfs_") || strings.HasSuffix(f.Name, "_read")))
			if keep {
				n++
			}
			return keep
		})
	}
	t.Logf("catalogue: %d functions", len(opt.Catalogue.Functions))
	start := time.Now()
	sc, err := NewScorer(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attached in %s", time.Since(start).Round(time.Millisecond))
	defer func() {
		start := time.Now()
		if err := sc.Close(); err != nil {
			t.Error(err)
		}
		t.Logf("detached in %s", time.Since(start).Round(time.Millisecond))
	}()

	readDir, stopRead := startIn(t, "hap-read", "while :; do dd if=/dev/zero of=/dev/null bs=4096 count=200 2>/dev/null; done")
	defer stopRead()
	mkdirDir, stopMkdir := startIn(t, "hap-mkdir", "cd /tmp; while :; do mkdir hapx; rmdir hapx; done")
	defer stopMkdir()

	read, err := sc.Score(ctx, readDir)
	if err != nil {
		t.Fatal(err)
	}
	read.Label = "read"
	mk, err := sc.Score(ctx, mkdirDir)
	if err != nil {
		t.Fatal(err)
	}
	mk.Label = "mkdir"
	for _, p := range []*Profile{read, mk} {
		t.Log(p.Summary())
		checkInvariants(t, p)
		if p.Release != labtest.Release() {
			t.Errorf("%s: release %q, want %q", p.Label, p.Release, labtest.Release())
		}
		if p.Mode != ModeExact {
			t.Errorf("%s: mode %q, want %q", p.Label, p.Mode, ModeExact)
		}
		if len(p.Convergence) != 3 {
			t.Errorf("%s: %d convergence points, want 3", p.Label, len(p.Convergence))
		}
		var js bytes.Buffer
		if err := p.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		q, err := ReadJSON(bytes.NewReader(js.Bytes()))
		if err != nil {
			t.Fatalf("%s: JSON round trip: %v", p.Label, err)
		}
		if !Diff(p, q).Empty() || q.Lines != p.Lines || len(q.Functions) != len(p.Functions) {
			t.Errorf("%s: JSON round trip changed the profile", p.Label)
		}
		if out := labtest.OutDir(); out != "" {
			os.WriteFile(filepath.Join(out, fmt.Sprintf("score-%s-%s.json", labtest.Kernel(), p.Label)), js.Bytes(), 0o644)
		}
	}
	has := func(p *Profile, name string) *Func {
		for i := range p.Functions {
			if p.Functions[i].Name == name {
				return &p.Functions[i]
			}
		}
		return nil
	}
	vr := has(read, "vfs_read")
	if vr == nil {
		t.Fatalf("read workload profile lacks vfs_read: %v", read.Functions)
	}
	if vr.Lines < 5 {
		t.Errorf("vfs_read has %d lines, want at least 5", vr.Lines)
	}
	if vr.File != "fs/read_write.c" {
		t.Errorf("vfs_read defined in %q, want fs/read_write.c", vr.File)
	}
	if has(mk, "vfs_mkdir") == nil && has(mk, "do_mkdirat") == nil {
		t.Errorf("mkdir workload profile lacks vfs_mkdir and do_mkdirat")
	}
	if has(read, "vfs_mkdir") != nil || has(read, "do_mkdirat") != nil {
		t.Errorf("read workload profile holds mkdir functions: the scopes leak")
	}
	d := Diff(read, mk)
	if len(d.OnlyA)+len(d.Both) != len(read.Functions) || len(d.OnlyB)+len(d.Both) != len(mk.Functions) {
		t.Error("Diff does not partition the functions")
	}
	if d.LinesOnlyA+d.LinesBoth != read.Lines.Union || d.LinesOnlyB+d.LinesBoth != mk.Lines.Union {
		t.Error("Diff does not partition the lines")
	}
	var txt bytes.Buffer
	d.WriteText(&txt, "read", "mkdir")
	t.Logf("diff:\n%s", txt.String())
}

// TestLabModuleProfile scores a snapshot of the lab kernel's own addresses
// (/proc/kallsyms) as a Scorer does: vmlinux functions through the vmlinux
// index, module functions through indexes the Scorer's module set opens
// from the loaded modules' /sys/module sections and build-ids and the debug
// files the host extracted (<lab cache>/dbg-modules/<release>/, by the
// host tests). overlay is loaded at boot; veth is loaded with modprobe when
// the guest can. Without its debug file, a module fails with advice, or is
// estimated from /proc/kallsyms under AllowEstimate.
func TestLabModuleProfile(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	release := labtest.Release()
	tree := filepath.Join(labtest.LabCache(), "dbg-modules", release)
	if _, err := os.Stat(filepath.Join(tree, "usr/lib/debug/lib/modules", release, "kernel/fs/overlayfs/overlay.ko")); err != nil {
		t.Fatalf("no module debug files in %s: run `go test ./hap -run TestProfileRealModules` on the host first (it extracts them from the -dbg package): %v", tree, err)
	}
	want := map[string]string{"vfs_read": "fs/read_write.c", "ovl_open": "fs/overlayfs/file.c"}
	if out, err := exec.Command("modprobe", "veth").CombinedOutput(); err != nil {
		t.Logf("modprobe veth: %v: %s (veth left out)", err, out)
	} else {
		want["veth_xmit"] = "drivers/net/veth.c"
	}
	kern, err := symbolize.RunningKernel()
	if err != nil {
		t.Fatal(err)
	}
	ix, err := symbolize.Open(ctx, symbolize.Options{Kernel: kern, CacheDir: labtest.IndexCache()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	syms, err := symbolize.ParseKallsyms(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	snap := &coverage.Snapshot{Mode: coverage.Pruned}
	for _, s := range syms {
		if _, ok := want[s.Name]; ok && (s.Module == "") == (s.Name == "vfs_read") {
			snap.Hits = append(snap.Hits, coverage.Hit{Function: coverage.Function{Name: s.Name, Module: s.Module, Addr: s.Addr}, Count: 1, Context: coverage.Task})
		}
	}
	if len(snap.Hits) != len(want) {
		t.Fatalf("kallsyms has %d of %v", len(snap.Hits), want)
	}
	opt := ScoreOptions{ModuleDebug: tree, Symbolize: symbolize.Options{CacheDir: t.TempDir()}}
	mods := newModuleSet(kern, opt)
	byMod := func(m string) (*symbolize.Index, error) { return mods.index(ctx, m) }
	p, err := FromSnapshot(snap, ix, kern, Meta{Label: "lab-modules"}, Options{Modules: byMod})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, p)
	var txt bytes.Buffer
	p.WriteText(&txt)
	t.Logf("profile:\n%s", txt.String())
	for _, fn := range p.Functions {
		if want[fn.Name] != fn.File || fn.Lines < 5 || fn.Estimated != 0 || fn.Context != "task" {
			t.Errorf("%s [%s]: file %q, %d lines (%d estimated), context %q; want %s, exact", fn.Name, fn.Module, fn.File, fn.Lines, fn.Estimated, fn.Context, want[fn.Name])
		}
	}
	for _, m := range p.Modules {
		if m.Name == Vmlinux {
			continue
		}
		id, err := symbolize.ModuleBuildID(m.Name)
		if err != nil || m.BuildID != id || m.Lines == 0 {
			t.Errorf("module row %+v; loaded module's build-id %s (%v)", m, id, err)
		}
	}
	again, _ := mods.index(ctx, "overlay")
	first := mods.byMod["overlay"].ix
	if again != first {
		t.Error("the overlay index was opened again though the module did not move")
	}

	// overlay without its debug file (an empty tree, an empty index cache).
	noDebug := newModuleSet(kern, ScoreOptions{ModuleDebug: t.TempDir(), Symbolize: symbolize.Options{CacheDir: t.TempDir()}})
	byMod = func(m string) (*symbolize.Index, error) { return noDebug.index(ctx, m) }
	_, err = FromSnapshot(snap, ix, kern, Meta{}, Options{Modules: byMod})
	if !errors.Is(err, symbolize.ErrNoDebugInfo) || !strings.Contains(err.Error(), "module overlay") || !strings.Contains(err.Error(), "linux-image-"+release+"-dbg") {
		t.Errorf("module overlay without a debug file: %v", err)
	}
	noDebug.opt.AllowEstimate = true
	p, err = FromSnapshot(snap, ix, kern, Meta{}, Options{Modules: byMod})
	if err != nil {
		t.Fatalf("module overlay estimated: %v", err)
	}
	for _, m := range p.Modules {
		if m.Name == "overlay" && (m.Estimated == 0 || m.Lines != 0 || m.Functions != 1) {
			t.Errorf("estimated module row %+v", m)
		}
	}
	if p.Mode != ModeEstimated {
		t.Errorf("mode %s with an estimated module", p.Mode)
	}
	t.Logf("overlay estimated: %s", p.Summary())
}
