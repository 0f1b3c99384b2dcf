package coverage

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestOriginString(t *testing.T) {
	for o, want := range map[Origin]string{
		unix.SYS_READ: "read", unix.SYS_MKDIR: "mkdir", 1000: "syscall 1000",
		OriginFault: "page fault", OriginIOWorker: "io_uring worker", OriginInterrupt: "interrupt", OriginOther: "other",
		OriginOther + 1: "Origin(1028)",
	} {
		if got := o.String(); got != want {
			t.Errorf("Origin(%d).String() = %q, want %q", uint16(o), got, want)
		}
		back, err := ParseOrigin(want)
		if o > OriginOther {
			if err == nil {
				t.Errorf("ParseOrigin(%q) = %d, want an error", want, back)
			}
			continue
		}
		if err != nil || back != o {
			t.Errorf("ParseOrigin(%q) = %d, %v; want %d", want, back, err, o)
		}
	}
	if nr, ok := Origin(unix.SYS_PREAD64).Syscall(); !ok || nr != unix.SYS_PREAD64 {
		t.Errorf("pread64.Syscall() = %d, %v", nr, ok)
	}
	if _, ok := OriginFault.Syscall(); ok {
		t.Error("OriginFault is a system call")
	}
	for _, bad := range []string{"", "syscall 0", "syscall 1024", "syscall x", "readx", "Origin(1028)", "syscall 01000", "syscall +1000"} {
		if o, err := ParseOrigin(bad); err == nil {
			t.Errorf("ParseOrigin(%q) = %d, want an error", bad, o)
		}
	}
}

func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"read", "syscall 1000", "page fault", "other", "syscall 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOrigin(s)
		if err != nil {
			return
		}
		if o.String() != s {
			t.Errorf("ParseOrigin(%q) = %d, whose String is %q", s, o, o.String())
		}
	})
}
