package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/labtest"
)

// build compiles the CLI once per test binary.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hapscope")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestHostRunExplainsRefusal runs `hapscope run -- true` on a kernel that
// cannot be traced: it must say why in plain lines (each backend, lockdown
// or missing CONFIG), exit 1, and not run the workload or print a stack trace.
func TestHostRunExplainsRefusal(t *testing.T) {
	if labtest.InLab() || os.Geteuid() != 0 {
		t.Skip("host test, needs root")
	}
	bin := build(t)
	marker := filepath.Join(t.TempDir(), "ran")
	cmd := exec.Command(bin, "run", "-q", "--", "touch", marker)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		t.Skip("this kernel can be traced; the refusal path does not apply")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1\n%s", err, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"kprobe.multi", "fentry", "kprobe", "EPERM", "lockdown"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic:") {
		t.Errorf("stack trace instead of an explanation:\n%s", msg)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the workload ran although nothing could be measured")
	}
}

// TestHostDoctor checks that doctor names each backend and says why it
// cannot be used on a kernel that refuses tracing, with exit status 1.
func TestHostDoctor(t *testing.T) {
	if labtest.InLab() || os.Geteuid() != 0 {
		t.Skip("host test, needs root")
	}
	bin := build(t)
	out, err := exec.Command(bin, "doctor").CombinedOutput()
	msg := string(out)
	if err == nil {
		if !strings.Contains(msg, "works") {
			t.Fatalf("doctor exited 0 without a working backend:\n%s", msg)
		}
		t.Skip("this kernel can be traced")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("doctor: %v, want exit status 1\n%s", err, msg)
	}
	for _, want := range []string{"NO  kprobe.multi", "NO  fentry", "NO  kprobe", "lockdown", "kernel ", "make demo"} {
		if !strings.Contains(msg, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, msg)
		}
	}
	if q, err := exec.Command(bin, "doctor", "-q").CombinedOutput(); err == nil || len(q) != 0 {
		t.Errorf("doctor -q: %v, output %q; want exit 1 and no output", err, q)
	}
}

func TestUsage(t *testing.T) {
	bin := build(t)
	for _, args := range [][]string{{}, {"nope"}, {"run"}, {"compare", "a.json"}, {"score"}} {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("hapscope %v: %v, want exit status 2\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "usage:") {
			t.Errorf("hapscope %v prints no usage:\n%s", args, out)
		}
	}
}
