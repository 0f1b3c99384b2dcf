package symbolize

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenNotAVmlinux: a path that cannot be a vmlinux says what it is and
// what to pass, not debug/elf's "EOF" or "bad magic number".
func TestOpenNotAVmlinux(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(empty, nil, 0o644)
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	for _, c := range []struct{ path, want string }{
		{"/dev/null", "/dev/null is empty: pass the vmlinux with DWARF (e.g. /usr/lib/debug/boot/vmlinux-"},
		{empty, empty + " is empty: pass the vmlinux"},
		{passwd, passwd + " is not an ELF file: pass the vmlinux with DWARF"},
		{dir, dir + " is a directory: pass the vmlinux"},
	} {
		_, err := Build(c.path, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "magic") {
			t.Errorf("Build(%s): %v, want it to say %q", c.path, err, c.want)
		}
		_, err = Open(context.Background(), Options{VMLinux: c.path, Kernel: Kernel{Release: "6.12.0-test"}, CacheDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "magic") {
			t.Errorf("Open(%s): %v, want it to say %q", c.path, err, c.want)
		}
		if err != nil && !strings.Contains(err.Error(), "vmlinux-6.12.0-test)") {
			t.Errorf("Open(%s): %v, want the hint to name the release", c.path, err)
		}
	}
}

// TestOpenErrorsIs: no debug info and a build-id mismatch are errors that
// callers can tell apart with errors.Is.
func TestOpenErrorsIs(t *testing.T) {
	dir := t.TempDir()
	stripped := filepath.Join(dir, "stripped")
	cmd := exec.Command("gcc", "-O2", "-o", stripped, "a.c", "b.c")
	cmd.Dir = "testdata/fixture"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	_, err := Build(stripped, nil)
	if !errors.Is(err, ErrNoDebugInfo) || errors.Is(err, ErrBuildIDMismatch) {
		t.Errorf("Build of a vmlinux without DWARF: %v, want ErrNoDebugInfo", err)
	}
	_, err = Open(context.Background(), Options{VMLinux: stripped, Kernel: Kernel{Release: "x"}, CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNoDebugInfo) {
		t.Errorf("Open of a vmlinux without DWARF: %v, want ErrNoDebugInfo", err)
	}
	t.Setenv("DEBUGINFOD_URLS", "")
	_, err = Open(context.Background(), Options{Kernel: Kernel{Release: "no-such-release", BuildID: "feed"}, CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNoDebugInfo) || !strings.Contains(err.Error(), "/usr/lib/debug/boot/vmlinux-no-such-release") || !strings.Contains(err.Error(), "DEBUGINFOD_URLS") {
		t.Errorf("no debug info anywhere: %v, want ErrNoDebugInfo naming the places tried", err)
	}
	vm := gccFixture(t)
	_, err = Open(context.Background(), Options{VMLinux: vm, Kernel: Kernel{Release: "x", BuildID: "0123abcd"}, CacheDir: t.TempDir()})
	if !errors.Is(err, ErrBuildIDMismatch) || errors.Is(err, ErrNoDebugInfo) {
		t.Errorf("vmlinux of another build: %v, want ErrBuildIDMismatch", err)
	}
}

// TestOpenCacheChecksBuildID: a cached index is served only for the build-id
// it holds. Another kernel's index under this build-id's name is rebuilt
// from the vmlinux when there is one and an ErrBuildIDMismatch when there is
// none; a damaged one is named in the error when no vmlinux is found.
func TestOpenCacheChecksBuildID(t *testing.T) {
	dir := t.TempDir()
	vmA := compileFixture(t, dir, "gcc", "5").path
	vmB := compileFixture(t, dir, "clang", "5").path
	a, err := Build(vmA, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(vmB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.BuildID() == b.BuildID() || a.BuildID() == "" {
		t.Fatalf("fixtures share build-id %q", a.BuildID())
	}
	t.Setenv("DEBUGINFOD_URLS", "")
	kA := Kernel{Release: "no-such-release", BuildID: a.BuildID()}
	cache := t.TempDir()
	if err := b.writeFile(cachePath(cache, a.BuildID())); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), Options{Kernel: kA, CacheDir: cache})
	if !errors.Is(err, ErrBuildIDMismatch) || !strings.Contains(err.Error(), b.BuildID()) || !strings.Contains(err.Error(), cachePath(cache, a.BuildID())) {
		t.Errorf("another kernel's index in the cache, no vmlinux: %v, want ErrBuildIDMismatch naming the file and its build-id", err)
	}
	ix, err := Open(context.Background(), Options{VMLinux: vmA, Kernel: kA, CacheDir: cache})
	if err != nil || ix.BuildID() != a.BuildID() {
		t.Fatalf("another kernel's index in the cache, vmlinux given: build-id %v, %v; want a rebuilt index of %s", ix, err, a.BuildID())
	}
	if back, err := Load(cachePath(cache, a.BuildID())); err != nil || back.BuildID() != a.BuildID() {
		t.Errorf("the rebuilt index did not replace the wrong one: %v", err)
	}
	if ix, err := Open(context.Background(), Options{Kernel: kA, CacheDir: cache}); err != nil || ix.BuildID() != a.BuildID() {
		t.Errorf("the rebuilt index is not served: %v", err)
	}
	// An index of an older format is rebuilt, not misread.
	old, err := os.ReadFile(cachePath(cache, a.BuildID()))
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(old[8:], indexVersion-1)
	os.WriteFile(cachePath(cache, a.BuildID()), old, 0o644)
	if _, err := Open(context.Background(), Options{Kernel: kA, CacheDir: cache}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("version %d", indexVersion-1)) {
		t.Errorf("index of an older format, no vmlinux: %v, want the version named", err)
	}
	if ix, err := Open(context.Background(), Options{VMLinux: vmA, Kernel: kA, CacheDir: cache}); err != nil || ix.BuildID() != a.BuildID() {
		t.Errorf("index of an older format, vmlinux given: %v", err)
	}
	if _, err := Load(cachePath(cache, a.BuildID())); err != nil {
		t.Errorf("the index of an older format was not replaced: %v", err)
	}
	// Damaged: said when no vmlinux is found.
	if err := os.WriteFile(cachePath(cache, a.BuildID()), []byte("HAPSIDX\ngarbage that is not an index at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), Options{Kernel: kA, CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), cachePath(cache, a.BuildID())) || !errors.Is(err, ErrNoDebugInfo) {
		t.Errorf("damaged cached index, no vmlinux: %v, want the index named and ErrNoDebugInfo", err)
	}
}
