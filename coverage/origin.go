package coverage

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hapscope/hapscope/bpf"
	"github.com/hapscope/hapscope/internal/syscalls"
)

// Origin is where a scope's task came from when it entered a function
// (Options.Attribution): a system call, by its x86-64 number, or one of
// OriginFault, OriginIOWorker, OriginInterrupt and OriginOther.
//
// The counter reads it from the task's user entry frame: the kernel's
// entry code stores the system call number there on a system call and -1
// on an exception or interrupt. So a system call's origin covers all the
// kernel does for that call: its seccomp check, ptrace stops, the call
// itself, soft-IRQ work the task runs inside it (Softirq context), and
// signal delivery and rescheduling on its way back to user mode. A user
// page fault is told apart from other exception or interrupt work by the
// frame the page_fault_user tracepoint saw it with; page faults taken in
// kernel mode inside a system call (copying to a user buffer) belong to
// that call.
type Origin uint16

const (
	OriginFault     = Origin(bpf.OriginFault)     // a user page fault
	OriginIOWorker  = Origin(bpf.OriginIOWorker)  // an io_uring worker thread, which runs no system call
	OriginInterrupt = Origin(bpf.OriginInterrupt) // interrupt context (Options.Interrupts)
	// OriginOther is anything else: work on the way back to user mode after
	// an interrupt (preemption, a signal sent by another task), a 32-bit
	// (int 0x80) system call, a kernel thread in the scope.
	OriginOther = Origin(bpf.OriginOther)
)

// Syscall returns the system call number of a system call origin.
func (o Origin) Syscall() (nr int, ok bool) {
	return int(o), o < bpf.SyscallOrigins
}

// String is the system call's name ("read"), "syscall N" for a number
// without a name, or "page fault", "io_uring worker", "interrupt", "other".
func (o Origin) String() string {
	if nr, ok := o.Syscall(); ok {
		if n := syscalls.Name(nr); n != "" {
			return n
		}
		return "syscall " + strconv.Itoa(nr)
	}
	switch o {
	case OriginFault:
		return "page fault"
	case OriginIOWorker:
		return "io_uring worker"
	case OriginInterrupt:
		return "interrupt"
	case OriginOther:
		return "other"
	}
	return fmt.Sprintf("Origin(%d)", uint16(o))
}

// ParseOrigin is String's inverse.
func ParseOrigin(s string) (Origin, error) {
	for _, o := range []Origin{OriginFault, OriginIOWorker, OriginInterrupt, OriginOther} {
		if s == o.String() {
			return o, nil
		}
	}
	if nr, ok := syscalls.Number(s); ok {
		return Origin(nr), nil
	}
	if n, ok := strings.CutPrefix(s, "syscall "); ok {
		nr, err := strconv.ParseUint(n, 10, 16)
		// Only the form String writes: no sign, no leading zero.
		if err == nil && strconv.FormatUint(nr, 10) == n && nr < bpf.SyscallOrigins && syscalls.Name(int(nr)) == "" {
			return Origin(nr), nil
		}
	}
	return 0, fmt.Errorf("unknown origin %q (want a system call name, \"syscall N\", \"page fault\", \"io_uring worker\", \"interrupt\" or \"other\")", s)
}

// OriginCount is how often a scope's tasks entered a function from one origin.
type OriginCount struct {
	Origin Origin
	Count  uint64
}
