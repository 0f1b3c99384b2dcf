package matrix

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestImageRuns builds the image of a dynamically linked C program (and a
// data directory it reads) from this machine's root, unpacks it into an
// empty directory and runs the program chrooted there: the image must
// hold its loader, its libraries and its files, and nothing else it needs.
func TestImageRuns(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("needs gcc")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to chroot")
	}
	src := t.TempDir()
	data := filepath.Join(src, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "sub", "greeting"), []byte("hello from the image"), 0o644)
	os.Symlink("sub/greeting", filepath.Join(data, "link"))
	c := filepath.Join(src, "p.c")
	os.WriteFile(c, []byte(`#include <stdio.h>
#include <math.h>
int main(int argc, char **argv) {
	char buf[64] = {0};
	FILE *f = fopen(argv[1], "r");
	if (!f) { perror("fopen"); return 1; }
	fread(buf, 1, sizeof buf - 1, f);
	printf("%s %.0f\n", buf, pow(2.0, (double)argc));
	return 0;
}`), 0o644)
	bin := filepath.Join(src, "prog")
	if out, err := exec.Command("gcc", "-O1", "-o", bin, c, "-lm").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	files, err := imageFiles("/", Service{Argv: []string{bin}, Files: []string{data}})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(files, "\n")
	for _, want := range []string{bin, filepath.Join(data, "sub/greeting"), filepath.Join(data, "link"), "libm.so.6", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("image lacks %s; has:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "libstdc++") {
		t.Errorf("image holds libstdc++, which the C program does not link:\n%s", joined)
	}
	var tarball bytes.Buffer
	if err := writeImage(&tarball, "/", files); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := untar(&tarball, dst); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "tmp"))
	if err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("image /tmp: %v %v, want drwxrwxrwt", st.Mode(), err)
	}
	cmd := exec.Command(bin, filepath.Join(data, "link"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dst}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from the image 4" {
		t.Fatalf("the program in its image: %v: %q", err, out)
	}
}

// offVirtiofs copies Docker's programs, runsc and the libraries they load
// into the data directory, and lists each copy with the original it is to
// be bound over; a later plan's runsc is copied too.
func TestOffVirtiofs(t *testing.T) {
	root := t.TempDir()
	put := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(to)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, to), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range daemonPrograms {
		if p != "docker-init" && p != "ip6tables" { // optional
			put("/bin/true", "/usr/bin/"+p)
		}
	}
	put("/bin/true", "/opt/runsc")
	put("/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6")
	put("/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
	// A first plan without gVisor, then one with: the second copies runsc
	// and nothing twice.
	e := &Env{Root: root, Data: "/data", dockerRuntimes: map[string]DockerOptions{}}
	if err := e.offVirtiofs(); err != nil {
		t.Fatal(err)
	}
	first := len(e.daemonBinds)
	e.dockerRuntimes = map[string]DockerOptions{"r": {Runtime: "runsc", Runsc: "/opt/runsc"}}
	if err := e.offVirtiofs(); err != nil {
		t.Fatal(err)
	}
	if len(e.daemonBinds) != first+1 {
		t.Errorf("%d binds after the runsc plan, want %d (the first plan's and runsc)", len(e.daemonBinds), first+1)
	}
	if err := e.offVirtiofs(); err != nil || len(e.daemonBinds) != first+1 {
		t.Errorf("a third call: %v, %d binds, want %d", err, len(e.daemonBinds), first+1)
	}
	var origs []string
	for _, b := range e.daemonBinds {
		origs = append(origs, b.orig)
		if b.copy != filepath.Join("/data/daemon-files", b.orig) {
			t.Errorf("%s copied to %s", b.orig, b.copy)
		}
		want, _ := os.ReadFile(filepath.Join(root, b.orig))
		got, err := os.ReadFile(filepath.Join(root, b.copy))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("copy of %s: %v, %d bytes for %d", b.orig, err, len(got), len(want))
		}
		if st, err := os.Stat(filepath.Join(root, b.copy)); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("copy of %s: mode %v, %v", b.orig, st.Mode(), err)
		}
	}
	for _, want := range []string{"/usr/bin/dockerd", "/usr/bin/containerd-shim-runc-v2", "/opt/runsc", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"} {
		if !slices.Contains(origs, want) {
			t.Errorf("no bind over %s; binds over %v", want, origs)
		}
	}
	if q := shellQuote("/a b/it's"); q != `'/a b/it'\''s'` {
		t.Errorf("shellQuote = %s", q)
	}
}
