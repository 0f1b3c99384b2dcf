package matrix

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
