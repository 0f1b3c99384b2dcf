package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
)

// asCLI makes the test binary act as the hapscope CLI (the guest has no Go
// toolchain to build it).
const asCLI = "HAPSCOPE_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestLabRunSIGINTCleanup interrupts `hapscope run` while it measures and
// checks that it exits with an error, stops the workload and leaves no
// hapscope BPF program or link in the kernel.
func TestLabRunSIGINTCleanup(t *testing.T) {
	labtest.Require(t)
	if labtest.Kernel() != "6.12" {
		t.Skip("attaches the full catalogue, which takes minutes per thousand functions with fentry; run on 6.12 (kprobe.multi)")
	}
	if progs, links, err := labtest.BPFObjects("hap_"); err != nil || len(progs)+links > 0 {
		t.Fatalf("before the run: %v programs, %d links, %v", progs, links, err)
	}
	marker := "/tmp/hapscope-sigint-workload"
	cmd := exec.Command(os.Args[0], "run", "-q", "--warmup", "1s", "--window", "5m", "--", "/bin/sh", "-c", "touch "+marker+"; exec sleep 600")
	cmd.Env = append(os.Environ(), asCLI+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the tracer is attached and the workload runs.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		progs, links, _ := labtest.BPFObjects("hap_")
		_, err := os.Stat(marker)
		if len(progs) > 0 && links > 0 && err == nil {
			t.Logf("attached: %v, %d links; workload running", progs, links)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run never attached and started the workload:\n%s", stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	t.Logf("exited after %s: %v; stderr: %s", time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("interrupted run: %v, want exit status 130 (it cannot have a score)", err)
	}
	for i := 0; ; i++ {
		progs, links, err := labtest.BPFObjects("hap_")
		if err != nil {
			t.Fatal(err)
		}
		if len(progs) == 0 && links == 0 {
			break
		}
		if i > 120 {
			t.Fatalf("after SIGINT: %d hapscope programs (%v) and %d links remain", len(progs), progs, links)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, _ := exec.Command("/bin/sh", "-c", "ps | grep -c '[s]leep 600'").Output(); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("the workload still runs after the interrupted run")
	}
}
