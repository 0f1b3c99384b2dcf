package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestNaturalCompare(t *testing.T) {
	in := []string{
		"linux-image-6.12.117+deb13-cloud-amd64-unsigned",
		"linux-image-6.12.9+deb13-cloud-amd64-unsigned",
		"linux-image-6.12.118+deb13-cloud-amd64-unsigned",
		"linux-image-6.12.38+deb13-cloud-amd64-unsigned",
	}
	want := []string{in[1], in[3], in[0], in[2]}
	got := append([]string(nil), in...)
	sortNatural(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("natural order (-want +got):\n%s", d)
	}
	if naturalCompare("6.1.0-9", "6.1.0-56") >= 0 || naturalCompare("a", "a") != 0 || naturalCompare("a1", "a01") != 0 {
		t.Fatal("naturalCompare orders numbers wrongly")
	}
}

func sortNatural(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && naturalCompare(s[j-1], s[j]) > 0; j-- {
			s[j-1], s[j] = s[j], s[j-1]
		}
	}
}

func TestParseSources(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`
	got := parseSources("debian.sources", []byte(deb822))
	want := []aptSource{
		{URI: "http://mirror.example/debian", Suites: []string{"bookworm", "bookworm-updates"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg"},
		{URI: "http://mirror.example/debian-security", Suites: []string{"bookworm-security"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("deb822 (-want +got):\n%s", d)
	}
	oneLine := "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n"
	got = parseSources("x.list", []byte(oneLine))
	want = []aptSource{
		{URI: "http://m.example/debian", Suites: []string{"bookworm"}, SignedBy: "/k.gpg"},
		{URI: "http://m.example/debian-security", Suites: []string{"bookworm-security"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("one-line (-want +got):\n%s", d)
	}
	lines, err := sourceLines(got)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	for _, w := range []string{
		"deb [signed-by=/k.gpg] http://m.example/debian trixie main",
		"deb http://m.example/debian-security trixie-security main",
		"deb [signed-by=/k.gpg] http://m.example/debian bookworm main",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("private sources lack %q:\n%s", w, joined)
		}
	}
	if _, err := sourceLines(nil); err == nil {
		t.Fatal("no configured mirror must be an error")
	}
}

func FuzzParseSources(f *testing.F) {
	f.Add("debian.sources", "Types: deb\nURIs: http://a/debian\nSuites: bookworm\n")
	f.Add("x.list", "deb [signed-by=/k] http://a/debian trixie main\n")
	f.Add("x.list", "deb [ http://a\n")
	f.Fuzz(func(t *testing.T, name, data string) {
		for _, s := range parseSources(name, []byte(data)) {
			if s.URI == "" {
				t.Fatalf("source without URI from %q", data)
			}
		}
	})
}

// TestArchive checks the initramfs writer against cpio(1)'s reading of it.
func TestArchive(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed (make deps installs it)")
	}
	a := newArchive()
	a.file("bin/busybox", 0o755, []byte("x"))
	a.symlink("bin/sh", "busybox")
	a.file("lab/script", 0o644, []byte("echo hi\n"))
	a.mkdirAll("a/b/c")
	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-it", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	got := strings.Fields(string(out))
	want := []string{"a", "a/b", "a/b/c", "bin", "bin/busybox", "bin/sh", "lab", "lab/script"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("cpio listing (-want +got):\n%s", d)
	}
}

// requireQEMU skips when QEMU is missing, except under `make test`
// (HAPSCOPE_REQUIRE_LAB=1), where a missing lab is a failure.
func requireQEMU(t *testing.T) *Kernel {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("HAPSCOPE_REQUIRE_LAB") == "1" {
			t.Fatal("qemu-system-x86_64 missing; run make deps")
		}
		t.Skip("qemu-system-x86_64 missing; make deps installs it")
	}
	if testing.Short() {
		t.Skip("boots a VM; not in -short mode")
	}
	k, err := Fetch(context.Background(), Kernels[0], FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRunReportsExitStatus boots the lab kernel and checks that the
// script's exit status and status lines come back through the status port,
// not from console text (the console claims a different status).
func TestRunReportsExitStatus(t *testing.T) {
	k := requireQEMU(t)
	var con bytes.Buffer
	res, err := Run(context.Background(), Config{Kernel: k, Console: &con, Timeout: 3 * time.Minute,
		Script: "echo 'exit 0'; echo 'note one' >&$STATUS_FD; uname -r; for fd in 0 1 2; do [ -t $fd ] && echo \"fd $fd is a terminal\"; done; exit 7"})
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, con.String())
	}
	if res.ExitCode != 7 {
		t.Fatalf("exit code = %d, want 7", res.ExitCode)
	}
	if d := cmp.Diff([]string{"note one"}, res.Status); d != "" {
		t.Fatalf("status lines (-want +got):\n%s", d)
	}
	if !strings.Contains(con.String(), k.Release) {
		t.Fatalf("console lacks uname -r %q:\n%s", k.Release, con.String())
	}
	// Programs in the guest see no terminal, as in CI: a progress bar would
	// write carriage-return frames into every lab log.
	if strings.Contains(con.String(), "is a terminal") {
		t.Fatalf("the script ran on a terminal:\n%s", con.String())
	}
	t.Logf("boot %s, wall %s", res.Boot, res.Wall)
}

// TestRunDetectsPanic crashes the guest kernel on purpose and checks that
// Run fails with the panic text rather than hanging or passing.
func TestRunDetectsPanic(t *testing.T) {
	k := requireQEMU(t)
	res, err := Run(context.Background(), Config{Kernel: k, Timeout: 3 * time.Minute,
		Script: "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger; sleep 5; exit 0"})
	var crash *CrashError
	if !errors.As(err, &crash) {
		t.Fatalf("Run = %+v, %v; want a CrashError", res, err)
	}
	if !strings.Contains(crash.Text, "Kernel panic") && !strings.Contains(crash.Text, "Oops") {
		t.Fatalf("crash text lacks the panic:\n%s", crash.Text)
	}
}

// TestRunTimeout checks that a hung guest is killed with a clear message
// that quotes the end of the console (whatever the guest got to print
// before the limit on a loaded machine).
func TestRunTimeout(t *testing.T) {
	k := requireQEMU(t)
	var con bytes.Buffer
	_, err := Run(context.Background(), Config{Kernel: k, Timeout: 15 * time.Second, Console: &con, Script: "echo sleeping; sleep 600"})
	if err == nil || !strings.Contains(err.Error(), "did not finish within 15s and was killed") {
		t.Fatalf("want a timeout error, got %v", err)
	}
	lines := strings.Split(strings.TrimSpace(con.String()), "\n")
	if last := lines[len(lines)-1]; last != "" && !strings.Contains(err.Error(), last) {
		t.Fatalf("timeout error does not quote the console's last line %q:\n%v", last, err)
	}
}

// TestRunHostReadOnly boots each lab kernel and has a guest root remount the
// host's root read-write and try to change a host file and create others;
// the host then checks that nothing changed (TestLabHostReadOnly checks the
// guest's errors in Go).
func TestRunHostReadOnly(t *testing.T) {
	requireQEMU(t)
	for _, spec := range Kernels {
		t.Run(spec.Name, func(t *testing.T) {
			k, err := Fetch(context.Background(), spec, FetchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.CreateTemp("", "hapscope-ro-existing-")
			if err != nil {
				t.Fatal(err)
			}
			existing := f.Name()
			defer os.Remove(existing)
			f.WriteString("host content\n")
			f.Chmod(0o644)
			f.Close()
			fresh := existing + "-guest-created"
			defer os.Remove(fresh)
			defer os.Remove(fresh + ".d")
			v := "/run/v"
			script := fmt.Sprintf(`mount -o remount,rw /host || exit 3
grep ' /host ' /proc/mounts >&$STATUS_FD
mkdir -p %[1]s && mount --bind /host %[1]s || exit 4
try() { what=$1; shift; if "$@" 2>/run/err; then echo "$what: ok" >&$STATUS_FD; else echo "$what: $(cat /run/err)" >&$STATUS_FD; fi; }
try append sh -c 'echo guest >> %[1]s%[2]s'
try create sh -c 'echo guest > %[1]s%[3]s'
try mkdir mkdir %[1]s%[3]s.d
try chmod chmod 600 %[1]s%[2]s
try rm rm -f %[1]s%[2]s
exit 0`, v, existing, fresh)
			var con bytes.Buffer
			res, err := Run(context.Background(), Config{Kernel: k, Script: script, Console: &con, Timeout: 3 * time.Minute})
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s", err, con.String())
			}
			if res.ExitCode != 0 {
				t.Fatalf("guest script exit %d (3: remount refused, 4: bind failed); status %q\nconsole:\n%s", res.ExitCode, res.Status, con.String())
			}
			t.Logf("guest: %s", strings.Join(res.Status, "; "))
			if len(res.Status) < 1 || !strings.Contains(res.Status[0], " rw") {
				t.Errorf("the guest did not get /host remounted read-write: %q", res.Status)
			}
			for _, what := range []string{"append", "create", "mkdir", "chmod", "rm"} {
				found := false
				for _, s := range res.Status {
					if strings.HasPrefix(s, what+": ") {
						found = true
						if !strings.Contains(s, "Read-only file system") {
							t.Errorf("guest %s", s)
						}
					}
				}
				if !found {
					t.Errorf("guest reported nothing for %s: %q", what, res.Status)
				}
			}
			if b, err := os.ReadFile(existing); err != nil || string(b) != "host content\n" {
				t.Errorf("host file %s after the guest's tries: %q, %v", existing, b, err)
			}
			if st, err := os.Stat(existing); err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("host file %s mode: %v, %v", existing, st, err)
			}
			for _, p := range []string{fresh, fresh + ".d"} {
				if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the guest created %s on the host (%v)", p, err)
				}
			}
		})
	}
}

// TestRunTestsReportsSkips runs this package's output fixtures in a lab
// guest through RunTests: every skip comes back through the status port
// with its message, a test left out with -skip is not missed, and the
// console copy carries no framing markers.
func TestRunTestsReportsSkips(t *testing.T) {
	k := requireQEMU(t)
	var con bytes.Buffer
	res, err := RunTests(context.Background(), TestConfig{Kernel: k, Packages: []string{"."},
		Run: "^TestOutputFixture", Skip: "^TestOutputFixtureFail$", Env: []string{fixtureEnv + "=1"},
		Args: []string{"-test.parallel=4"}, Console: &con, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, con.String())
	}
	const pkg = "github.com/hapscope/hapscope/internal/lab"
	var want []TestOutcome
	for _, o := range wantFixture {
		o.Package = pkg
		want = append(want, o)
	}
	if d := cmp.Diff(want, res.Tests, cmpopts.IgnoreFields(TestOutcome{}, "Elapsed")); d != "" {
		t.Fatalf("outcomes (-want +got):\n%s\nconsole:\n%s", d, con.String())
	}
	if len(res.Skips) != 3 || len(res.Missing) != 0 || res.Failed() {
		t.Fatalf("skips %+v, missing %v, failed %v", res.Skips, res.Missing, res.Failed())
	}
	if strings.Contains(con.String(), "\x16") || !strings.Contains(con.String(), "--- SKIP: TestOutputFixtureSkip") {
		t.Fatalf("console copy has markers or lacks the status lines:\n%s", con.String())
	}
}

// TestPickNewest: the newest image with a candidate, and for a kernel with
// debug info the newest whose -dbg package has the same version (a newer
// image whose -dbg is missing or at another version is passed over).
func TestPickNewest(t *testing.T) {
	cand := map[string]string{
		"linux-image-6.1.0-58-cloud-amd64-unsigned": "6.1.200-1",
		"linux-image-6.1.0-58-cloud-amd64-dbg":      "",
		"linux-image-6.1.0-57-cloud-amd64-unsigned": "6.1.192-3",
		"linux-image-6.1.0-57-cloud-amd64-dbg":      "6.1.192-2",
		"linux-image-6.1.0-9-cloud-amd64-unsigned":  "6.1.27-1",
		"linux-image-6.1.0-9-cloud-amd64-dbg":       "6.1.27-1",
		"linux-image-6.1.0-56-cloud-amd64-unsigned": "",
		"linux-image-6.1.0-56-cloud-amd64-dbg":      "6.1.170-1",
	}
	var names []string
	for n := range cand {
		if strings.HasSuffix(n, "-unsigned") {
			names = append(names, n)
		}
	}
	get := func(p string) string { return cand[p] }
	if n, v := pickNewest(names, get, false); n != "linux-image-6.1.0-58-cloud-amd64-unsigned" || v != "6.1.200-1" {
		t.Errorf("without dbg: %s %s", n, v)
	}
	if n, v := pickNewest(names, get, true); n != "linux-image-6.1.0-9-cloud-amd64-unsigned" || v != "6.1.27-1" {
		t.Errorf("with dbg: %s %s", n, v)
	}
	if n, _ := pickNewest(names[:0], get, true); n != "" {
		t.Errorf("no names: %s", n)
	}
}

// TestEveryKernelHasDebugInfo: every lab kernel boots the image whose
// vmlinux with DWARF the lab fetches, so lab tests get exact lines on each.
func TestEveryKernelHasDebugInfo(t *testing.T) {
	for _, k := range Kernels {
		if !k.Debug {
			t.Errorf("lab kernel %s has no -dbg package: its lines would be estimates", k.Name)
		}
	}
}
