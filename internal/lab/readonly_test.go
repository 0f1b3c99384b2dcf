package lab_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/labtest"
)

// fuseMagic is statfs's f_type of a FUSE (virtiofs) mount.
const fuseMagic = 0x65735546

// TestLabHostReadOnly acts as a hostile guest root: it remounts the host's
// root (/host, virtiofs) read-write, binds it without the guest's tmpfs
// overlay on /host/tmp, and tries to create and change host files. Every
// attempt must fail with EROFS from the host side, whatever the guest's own
// mount flags say. (TestRunHostReadOnly checks from the host that nothing
// changed.)
func TestLabHostReadOnly(t *testing.T) {
	labtest.Require(t)
	if err := unix.Mount("", labtest.HostRoot, "", unix.MS_REMOUNT, ""); err != nil {
		t.Fatalf("remount %s read-write in the guest: %v (the test must try what a hostile guest would)", labtest.HostRoot, err)
	}
	defer func() {
		if err := unix.Mount("", labtest.HostRoot, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			t.Errorf("remount %s read-only again: %v", labtest.HostRoot, err)
		}
	}()
	var sfs unix.Statfs_t
	if err := unix.Statfs(labtest.HostRoot, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Flags&unix.ST_RDONLY != 0 {
		t.Fatalf("%s is still read-only in the guest after the remount (statfs flags %#x)", labtest.HostRoot, sfs.Flags)
	}

	// A non-recursive bind shows the virtiofs mount itself: /host/tmp there
	// is the host's /tmp, not the guest's overlay.
	view, err := os.MkdirTemp("/run", "hostview-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(view)
	if err := unix.Mount(labtest.HostRoot, view, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", labtest.HostRoot, err)
	}
	defer unix.Unmount(view, unix.MNT_DETACH)
	tmp := filepath.Join(view, "tmp")
	if err := unix.Statfs(tmp, &sfs); err != nil || sfs.Type != fuseMagic {
		t.Fatalf("%s: statfs type %#x, %v; want virtiofs (FUSE %#x)", tmp, sfs.Type, err, fuseMagic)
	}

	b := make([]byte, 8)
	rand.Read(b)
	probe := filepath.Join(tmp, "hapscope-rw-probe-"+hex.EncodeToString(b))
	wd, err := os.Getwd()
	if err != nil || !strings.HasPrefix(wd, labtest.HostRoot+"/") {
		t.Fatalf("working directory %q, %v: want the package directory under %s", wd, err, labtest.HostRoot)
	}
	existing := filepath.Join(view, strings.TrimPrefix(wd, labtest.HostRoot), "doc.go")
	st, err := os.Stat(existing)
	if err != nil {
		t.Fatal(err)
	}
	// None of these changes anything on the host if it succeeds, apart from
	// the probe, removed below: the test fails without harming the host.
	tries := []struct {
		what string
		do   func() error
	}{
		{"create " + probe, func() error { return os.WriteFile(probe, []byte("guest wrote this\n"), 0o644) }},
		{"mkdir " + probe + ".d", func() error { return os.Mkdir(probe+".d", 0o755) }},
		{"symlink " + probe + ".l", func() error { return os.Symlink("x", probe+".l") }},
		{"open " + existing + " for writing", func() error {
			f, err := os.OpenFile(existing, os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"chmod " + existing + " to its own mode", func() error { return os.Chmod(existing, st.Mode().Perm()) }},
	}
	for _, try := range tries {
		err := try.do()
		t.Logf("%s: %v", try.what, err)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("%s: got %v, want EROFS (the host's root must be read-only on the host side)", try.what, err)
		}
	}
	for _, p := range []string{probe, probe + ".d", probe + ".l"} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists on the host after a refused write (%v)", p, err)
			os.Remove(p)
		}
	}
}
