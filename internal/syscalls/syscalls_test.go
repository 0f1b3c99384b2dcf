package syscalls

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The table agrees with golang.org/x/sys (a table made independently, from
// the kernel's syscall_64.tbl) on every call both know.
func TestAgreesWithXSys(t *testing.T) {
	for name, nr := range map[string]int{
		"read": unix.SYS_READ, "pread64": unix.SYS_PREAD64, "mkdir": unix.SYS_MKDIR, "mkdirat": unix.SYS_MKDIRAT,
		"exit_group": unix.SYS_EXIT_GROUP, "io_uring_enter": unix.SYS_IO_URING_ENTER, "clone3": unix.SYS_CLONE3,
		"futex_waitv": unix.SYS_FUTEX_WAITV, "cachestat": unix.SYS_CACHESTAT, "fchmodat2": unix.SYS_FCHMODAT2,
		"mseal": unix.SYS_MSEAL,
	} {
		if got := Name(nr); got != name {
			t.Errorf("Name(%d) = %q, want %q", nr, got, name)
		}
		if got, ok := Number(name); !ok || got != nr {
			t.Errorf("Number(%q) = %d, %v; want %d", name, got, ok, nr)
		}
	}
	if Name(1023) != "" {
		t.Errorf("Name(1023) = %q, want none", Name(1023))
	}
	if _, ok := Number("no_such_call"); ok {
		t.Error("Number of an unknown name succeeded")
	}
}
