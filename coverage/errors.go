package coverage

import "errors"

// Sentinel errors that callers can test with errors.Is. The errors returned
// by this package wrap them and say what to do.
var (
	// ErrNoBackend: no exact backend (kprobe.multi, fentry, kprobe) can
	// attach on this kernel; ProbeBackends says why for each.
	ErrNoBackend = errors.New("no tracing backend usable on this kernel")
	// ErrLockdown: the kernel's lockdown refuses the BPF programs or probes
	// that were asked for.
	ErrLockdown = errors.New("kernel lockdown")
	// ErrPermission: the caller lacks the privileges (root, or CAP_BPF,
	// CAP_PERFMON and CAP_SYS_ADMIN) — the kernel may well allow tracing.
	ErrPermission = errors.New("insufficient privileges")
	// ErrClosed: the Tracer was closed.
	ErrClosed = errors.New("tracer closed")
)
