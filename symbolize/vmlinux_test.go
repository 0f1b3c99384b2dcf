package symbolize

import (
	"os"
	"path/filepath"
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
	var globs []string
	if d := os.Getenv("HAPSCOPE_LAB_CACHE"); d != "" {
		globs = append(globs, filepath.Join(d, "dbg", "6.12*", "vmlinux"))
	}
	if d, err := os.UserCacheDir(); err == nil {
		globs = append(globs,
			filepath.Join(d, "hapscope-lab", "dbg", "6.12*", "vmlinux"),
			filepath.Join(d, "hapscope", "dbg", "usr/lib/debug/boot/vmlinux-6.12*"))
	}
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	if os.Getenv("HAPSCOPE_REQUIRE_LAB") == "1" {
		t.Fatal("no Debian 6.12 vmlinux with DWARF although make fetched it (HAPSCOPE_REQUIRE_LAB=1)")
	}
	t.Skip("no Debian 6.12 vmlinux with DWARF: run `make fetch` (lab tooling) or set HAPSCOPE_VMLINUX")
	return ""
}

func TestVmlinuxSmoke(t *testing.T) {
	ix, err := Build(testVMLinux(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("functions %d build-id %s text %#x", ix.Len(), ix.BuildID(), ix.Text())
	for _, n := range []string{"vfs_read", "do_sys_openat2", "entry_SYSCALL_64"} {
		for _, f := range ix.Lookup(n) {
			own, inl := f.Lines()
			t.Logf("%s %s:%d entry %#x ranges %d own %d inl %d est %v", f.Name, f.File, f.Line, f.Entry, len(f.Ranges), len(own), len(inl), f.Estimated)
		}
	}
}
