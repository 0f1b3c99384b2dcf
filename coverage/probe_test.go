package coverage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality":   "none",
		"none integrity [confidentiality]":   "confidentiality",
		"none integrity confidentiality":     "",
		"[]":                                 "",
		"":                                   "",
	} {
		if got := parseLockdown(in); got != want {
			t.Errorf("parseLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}

// Without securityfs mounted where the kernel shows lockdown, the state is
// unknown: the library must not mount securityfs to find out (it did, in a
// temporary directory), and the EPERM explanation says how to check.
func TestLockdownNotMounted(t *testing.T) {
	old := securityfsLockdown
	defer func() { securityfsLockdown = old }()
	securityfsLockdown = filepath.Join(t.TempDir(), "lockdown")
	if mode, known := lockdown(); known || mode != "" {
		t.Errorf("lockdown() = %q, %v with securityfs not mounted; want unknown", mode, known)
	}
	if os.Geteuid() == 0 && privileged(effectiveCaps()) {
		err := explain(Fentry, fmt.Errorf("attach to vfs_read: %w", unix.EPERM))
		if !strings.Contains(err.Error(), "lockdown state is unknown") || !strings.Contains(err.Error(), lockdownCheck) {
			t.Errorf("explanation does not say the state is unknown and how to check it: %v", err)
		}
		if errors.Is(err, ErrLockdown) || errors.Is(err, ErrPermission) {
			t.Errorf("explanation names a cause it cannot know: %v", err)
		}
	}
	// A lockdown file that exists is read.
	securityfsLockdown = filepath.Join(t.TempDir(), "lockdown")
	if err := os.WriteFile(securityfsLockdown, []byte("none integrity [confidentiality]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if mode, known := lockdown(); !known || mode != "confidentiality" {
		t.Errorf("lockdown() = %q, %v; want confidentiality", mode, known)
	}
}

func TestExplainEPERM(t *testing.T) {
	for _, c := range []struct {
		euid       int
		privileged bool
		mode       string
		known      bool
		want       error // sentinel, nil for none
		says       string
	}{
		{1000, false, "none", true, ErrPermission, "run as root"},
		{0, false, "confidentiality", true, ErrPermission, "CAP_BPF"}, // root without capabilities (a container)
		{0, true, "confidentiality", true, ErrLockdown, "lockdown=confidentiality"},
		{1000, true, "confidentiality", true, ErrLockdown, "lockdown=none"}, // CAP_BPF+CAP_PERFMON as a user
		{0, true, "integrity", true, nil, "lockdown=integrity"},
		{0, true, "none", true, nil, "LSM"},
		{0, true, "", false, nil, lockdownCheck},
	} {
		hint, cause := explainEPERM(c.euid, c.privileged, c.mode, c.known)
		if cause != c.want || !strings.Contains(hint, c.says) {
			t.Errorf("uid %d privileged %v lockdown %q (known %v): %v, %q; want %v and a hint with %q", c.euid, c.privileged, c.mode, c.known, cause, hint, c.want, c.says)
		}
		if c.want != ErrLockdown && strings.Contains(hint, "forbids") {
			t.Errorf("uid %d lockdown %q: the hint blames a cause it cannot know: %q", c.euid, c.mode, hint)
		}
	}
}

func TestPrivileged(t *testing.T) {
	bit := func(cs ...int) (m uint64) {
		for _, c := range cs {
			m |= 1 << c
		}
		return m
	}
	for _, c := range []struct {
		eff  uint64
		want bool
	}{
		{0, false},
		{bit(unix.CAP_SYS_ADMIN), true},
		{bit(unix.CAP_BPF, unix.CAP_PERFMON), true},
		{bit(unix.CAP_BPF), false},
		{bit(unix.CAP_PERFMON), false},
		{bit(unix.CAP_NET_ADMIN, unix.CAP_SYS_PTRACE), false},
		{^uint64(0), true},
	} {
		if got := privileged(c.eff); got != c.want {
			t.Errorf("privileged(%#x) = %v, want %v", c.eff, got, c.want)
		}
	}
}

func TestNoBackendError(t *testing.T) {
	perm := explainErr(ErrPermission)
	lock := explainErr(ErrLockdown)
	other := errors.New("kprobe: not supported by this kernel")
	e := noBackend([]Probe{{KprobeMulti, other}, {Fentry, lock}})
	if !errors.Is(e, ErrNoBackend) || !errors.Is(e, ErrLockdown) || errors.Is(e, ErrPermission) || !strings.Contains(e.Error(), "no exact backend") {
		t.Errorf("lockdown: %v", e)
	}
	e = noBackend([]Probe{{KprobeMulti, other}, {Fentry, perm}})
	if errors.Is(e, ErrNoBackend) || !errors.Is(e, ErrPermission) || !strings.Contains(e.Error(), "insufficient privileges") {
		t.Errorf("permission: %v", e)
	}
	e = noBackend([]Probe{{Kprobe, other}})
	if !errors.Is(e, ErrNoBackend) || !strings.Contains(e.Error(), "backend kprobe does not work") || !strings.Contains(e.Error(), other.Error()) {
		t.Errorf("forced backend: %v", e)
	}
}

func explainErr(sentinel error) error {
	return fmt.Errorf("fentry: %w: attach to vfs_read: %w: hint", sentinel, unix.EPERM)
}

// TestOpenUnprivileged: Open as a user without CAP_BPF/CAP_PERFMON fails
// with ErrPermission, not ErrNoBackend: the kernel may well allow tracing.
// As root, the test binary runs itself as nobody.
func TestOpenUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		if privileged(effectiveCaps()) {
			t.Skip("a user with CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN: nothing to refuse")
		}
		checkUnprivilegedOpen(t, unprivilegedOpen())
		return
	}
	// A copy of the test binary that nobody can run.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's parent is private too
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "coverage.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), helperEnv+"=open-unprivileged")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper as nobody: %v\n%s", err, out.String())
	}
	checkUnprivilegedOpen(t, out.String())
}

// unprivilegedOpen opens a tracer over one function and reports how it
// failed, for TestOpenUnprivileged.
func unprivilegedOpen() string {
	cat := &Catalogue{Functions: []Function{{Name: "vfs_read", Addr: 0xffffffff81000000}}}
	tr, err := Open(context.Background(), cat, Options{})
	if err == nil {
		tr.Close()
		return "opened\n"
	}
	return fmt.Sprintf("permission=%v nobackend=%v\n%v\n", errors.Is(err, ErrPermission), errors.Is(err, ErrNoBackend), err)
}

func checkUnprivilegedOpen(t *testing.T, out string) {
	t.Helper()
	t.Log(out)
	if !strings.HasPrefix(out, "permission=true nobackend=false\n") || !strings.Contains(out, "insufficient privileges") || !strings.Contains(out, "CAP_BPF") {
		t.Errorf("Open without privileges: want ErrPermission (not ErrNoBackend) and advice; got:\n%s", out)
	}
}
