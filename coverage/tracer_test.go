package coverage

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestOpenRefusedUnderLockdown is acceptance item 6: on a locked-down kernel
// (this development host) Open fails and the error names lockdown, EPERM and
// every backend it tried.
func TestOpenRefusedUnderLockdown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: as a user every backend fails with EPERM for another reason")
	}
	mode := lockdown()
	if mode == "" || mode == "none" {
		t.Skipf("kernel lockdown is %q here: this test checks the refusal on locked-down kernels", mode)
	}
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Open(context.Background(), cat, Options{})
	if err == nil {
		tr.Close()
		t.Fatalf("Open succeeded under lockdown=%s", mode)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"lockdown=" + mode, "operation not permitted", "EPERM", string(KprobeMulti), string(Fentry), string(Kprobe)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	// Forcing one backend gives that backend's reason.
	_, err = Open(context.Background(), cat, Options{Backend: Fentry})
	if err == nil || !strings.Contains(err.Error(), "fentry") || !strings.Contains(err.Error(), "lockdown") {
		t.Errorf("forced fentry: %v", err)
	}
}

func TestCgroupOf(t *testing.T) {
	dir, err := CgroupOf(os.Getpid())
	if err != nil {
		if _, err2 := cgroupRoot(); err2 != nil {
			t.Skipf("no cgroup2 here: %v", err2)
		}
		t.Fatal(err)
	}
	_, id, level, err := cgroupInfo(dir)
	if err != nil || id == 0 || level < 0 {
		t.Fatalf("cgroupInfo(%s) = %d %d %v", dir, id, level, err)
	}
	back, err := cgroupByID(id)
	if err != nil || back != dir {
		t.Errorf("cgroupByID(%d) = %q, %v; want %q", id, back, err, dir)
	}
	if _, _, _, err := cgroupInfo("/proc"); err == nil {
		t.Error("cgroupInfo accepted /proc")
	}
}

func TestOpenEmpty(t *testing.T) {
	_, err := Open(context.Background(), &Catalogue{}, Options{})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Open of an empty catalogue: %v", err)
	}
}
