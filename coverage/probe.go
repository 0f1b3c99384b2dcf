package coverage

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/bpf"
)

// Backend is a way of attaching the counter to kernel functions.
type Backend string

// Exact backends, best first.
const (
	// KprobeMulti: links over many functions each, by address
	// (CONFIG_FPROBE, 5.18+; module functions 6.2+).
	KprobeMulti Backend = "kprobe.multi"
	// Fentry: one program and link per function, by name through BTF
	// (vmlinux's or the module's). The functions it cannot take (no BTF
	// FUNC, a name that is not unique, varargs…) get kprobes by address
	// beside it.
	Fentry Backend = "fentry"
	// Kprobe: one perf event per function, by address (CONFIG_KPROBES,
	// BPF links on perf events: 5.15+).
	Kprobe Backend = "kprobe"
)

// Backends lists the exact backends in order of preference.
var Backends = []Backend{KprobeMulti, Fentry, Kprobe}

// Probe is whether a backend works on the running kernel; Err says why not,
// in words a user can act on.
type Probe struct {
	Backend Backend
	Err     error
}

// ProbeBackends tries each backend on one function of the catalogue
// (vfs_read if present) and explains every failure.
func ProbeBackends(cat *Catalogue) []Probe {
	target := probeTarget(cat)
	var out []Probe
	for _, b := range Backends {
		out = append(out, Probe{b, probe(b, cat, target)})
	}
	return out
}

func probe(b Backend, cat *Catalogue, target int) error {
	if target < 0 {
		return errors.New("the catalogue is empty: nothing to try")
	}
	f := cat.Functions[target]
	objs, err := bpf.New(bpf.Config{Functions: 1, Interrupts: true})
	if err != nil {
		return explain(b, err)
	}
	defer objs.Close()
	var l link.Link
	switch b {
	case KprobeMulti:
		var p *ebpf.Program
		if p, err = objs.Program(bpf.KprobeMulti); err == nil {
			l, err = link.KprobeMulti(p, link.KprobeMultiOptions{Addresses: []uintptr{uintptr(f.Addr)}, Cookies: []uint64{0}})
		}
	case Fentry:
		var p *ebpf.Program
		if p, err = objs.Fentry(f.Name); err == nil {
			l, err = link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceFEntry, Cookie: 0})
			p.Close()
		}
	case Kprobe:
		var p *ebpf.Program
		if p, err = objs.Program(bpf.Kprobe); err == nil {
			l, err = kprobeAt(f.Addr, p, 0)
		}
	default:
		return fmt.Errorf("unknown backend %q", b)
	}
	if err != nil {
		return explain(b, fmt.Errorf("attach to %s: %w", f.Name, err))
	}
	return l.Close()
}

// explain adds to err what the kernel's configuration, its lockdown state
// and the caller's privileges say about it, and wraps ErrPermission or
// ErrLockdown when one of them is the cause.
func explain(b Backend, err error) error {
	var hints []string
	cfg := kernelConfig()
	need := map[Backend][]string{
		KprobeMulti: {"CONFIG_FPROBE", "CONFIG_BPF_EVENTS"},
		Fentry:      {"CONFIG_DEBUG_INFO_BTF", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "CONFIG_BPF_JIT"},
		Kprobe:      {"CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS", "CONFIG_BPF_EVENTS"},
	}[b]
	for _, c := range need {
		if v, ok := cfg[c]; cfg != nil && (!ok || v == "n") {
			hints = append(hints, fmt.Sprintf("the kernel is built without %s (needed by %s; use another backend or kernel)", c, b))
		}
	}
	var cause error
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		mode, known := lockdown()
		var hint string
		hint, cause = explainEPERM(os.Geteuid(), privileged(effectiveCaps()), mode, known)
		hints = append(hints, hint)
	}
	if errors.Is(err, syscall.Errno(524)) || errors.Is(err, ebpf.ErrNotSupported) { // ENOTSUPP
		hints = append(hints, "not supported by this kernel")
	}
	if errors.Is(err, unix.EBUSY) {
		hints = append(hints, "EBUSY: the function has no ftrace entry (notrace) or is already attached exclusively")
	}
	switch {
	case cause != nil:
		return fmt.Errorf("%s: %w: %w: %s", b, cause, err, strings.Join(hints, "; "))
	case len(hints) == 0:
		return fmt.Errorf("%s: %w", b, err)
	}
	return fmt.Errorf("%s: %w: %s", b, err, strings.Join(hints, "; "))
}

// lockdownCheck says how to read the lockdown state where securityfs is not
// mounted.
const lockdownCheck = "mount -t securityfs none /sys/kernel/security; cat /sys/kernel/security/lockdown"

// explainEPERM says why the kernel may have answered EPERM, and which
// sentinel names the cause: ErrPermission when the caller lacks the
// capabilities, ErrLockdown under lockdown=confidentiality (which
// restricts kprobes, perf events, tracefs and reading kernel memory), none
// when the cause cannot be told from here. mode is the lockdown mode,
// known false when it could not be read.
func explainEPERM(euid int, privileged bool, mode string, known bool) (string, error) {
	state := "kernel lockdown=" + mode + " (read from securityfs)"
	if !known {
		state = "the kernel lockdown state is unknown (securityfs is not mounted; to check it: " + lockdownCheck + ")"
	}
	switch {
	case !privileged:
		return fmt.Sprintf("EPERM (operation not permitted) as uid %d without CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or grant those capabilities", euid), ErrPermission
	case known && mode == "confidentiality":
		return "EPERM (operation not permitted) under kernel lockdown=confidentiality (read from securityfs), which restricts kprobes, perf events and tracefs (`dmesg | grep -i lockdown` shows its refusals): boot with lockdown=none or lockdown=integrity, or trace in a VM (make lab-test)", ErrLockdown
	case known && mode == "none":
		return fmt.Sprintf("EPERM (operation not permitted) as uid %d with the needed capabilities and kernel lockdown=none: an LSM (SELinux, AppArmor, BPF LSM) or a seccomp filter refuses it", euid), nil
	case known:
		return fmt.Sprintf("EPERM (operation not permitted) as uid %d with the needed capabilities; %s, which by itself does not restrict tracing; the kernel does not say which policy refused: an LSM, a seccomp filter or the platform may (`dmesg | grep -i lockdown` shows lockdown refusals). To trace, use a kernel that allows it (lockdown=none), or trace in a VM (make lab-test)", euid, state), nil
	}
	return fmt.Sprintf("EPERM (operation not permitted) as uid %d with the needed capabilities; %s. Lockdown=confidentiality, an LSM or a seccomp filter may refuse it; to trace, use a kernel that allows it, or trace in a VM (make lab-test)", euid, state), nil
}

// effectiveCaps returns the calling thread's effective capability set; 0
// when it cannot be read.
func effectiveCaps() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32
}

// privileged says whether an effective capability set may load and attach
// tracing programs: CAP_SYS_ADMIN, or both CAP_BPF and CAP_PERFMON.
func privileged(eff uint64) bool {
	has := func(c int) bool { return eff&(1<<c) != 0 }
	return has(unix.CAP_SYS_ADMIN) || has(unix.CAP_BPF) && has(unix.CAP_PERFMON)
}

// kernelConfig reads /proc/config.gz (or /boot/config-RELEASE); nil if
// neither is readable.
func kernelConfig() map[string]string {
	var sc *bufio.Scanner
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil
		}
		sc = bufio.NewScanner(zr)
	} else {
		var u unix.Utsname
		if unix.Uname(&u) != nil {
			return nil
		}
		f, err := os.Open("/boot/config-" + unix.ByteSliceToString(u.Release[:]))
		if err != nil {
			return nil
		}
		defer f.Close()
		sc = bufio.NewScanner(f)
	}
	cfg := map[string]string{}
	for sc.Scan() {
		l := sc.Text()
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		} else if strings.HasPrefix(l, "# CONFIG_") && strings.HasSuffix(l, " is not set") {
			cfg[strings.Fields(l)[1]] = "n"
		}
	}
	return cfg
}

// securityfsLockdown is where securityfs shows the lockdown mode.
var securityfsLockdown = "/sys/kernel/security/lockdown"

// lockdown returns the active kernel lockdown mode ("none", "integrity",
// "confidentiality"), read from securityfs where it is mounted; known is
// false when it is not (a library does not mount file systems).
func lockdown() (mode string, known bool) {
	s, err := readSmall(securityfsLockdown)
	if err != nil {
		// securityfs mounted without a lockdown file: the kernel has no
		// lockdown LSM, so nothing is locked down.
		var st unix.Statfs_t
		if errors.Is(err, fs.ErrNotExist) && unix.Statfs(filepath.Dir(securityfsLockdown), &st) == nil && st.Type == unix.SECURITYFS_MAGIC {
			return "none", true
		}
		return "", false
	}
	mode = parseLockdown(s)
	return mode, mode != ""
}

// parseLockdown picks the bracketed mode of securityfs' lockdown file
// ("none [integrity] confidentiality"); "" if there is none.
func parseLockdown(s string) string {
	for _, w := range strings.Fields(s) {
		if len(w) > 2 && strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
			return w[1 : len(w)-1]
		}
	}
	return ""
}
