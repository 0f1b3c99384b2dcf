package symbolize

import (
	"os"
	"path/filepath"
	"testing"
)

// testVMLinux returns the Debian 6.12 vmlinux with DWARF, or skips: the file
// (346 MB) is fetched by the lab tooling, never committed.
func testVMLinux(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HAPSCOPE_VMLINUX"); p != "" {
		return p
	}
	var globs []string
	if d, err := os.UserCacheDir(); err == nil {
		globs = append(globs,
			filepath.Join(d, "hapscope-lab", "*", "usr/lib/debug/boot/vmlinux-6.12*"),
			filepath.Join(d, "hapscope-lab", "*", "vmlinux-6.12*"),
			filepath.Join(d, "hapscope-lab", "vmlinux-6.12*"),
			filepath.Join(d, "hapscope", "dbg", "usr/lib/debug/boot/vmlinux-6.12*"))
	}
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	t.Skip("no Debian 6.12 vmlinux with DWARF: set HAPSCOPE_VMLINUX or fetch it with the lab tooling")
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
