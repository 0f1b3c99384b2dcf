package coverage

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
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
	KprobeMulti Backend = "kprobe.multi" // one link for all functions (CONFIG_FPROBE, 5.18+)
	Fentry      Backend = "fentry"       // one program and link per function (BTF trampolines)
	Kprobe      Backend = "kprobe"       // one perf event per function (CONFIG_KPROBES)
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
			l, err = link.Kprobe(f.Name, p, &link.KprobeOptions{Cookie: 0})
		}
	default:
		return fmt.Errorf("unknown backend %q", b)
	}
	if err != nil {
		return explain(b, fmt.Errorf("attach to %s: %w", f.Name, err))
	}
	return l.Close()
}

// explain adds to err what the kernel's configuration and lockdown state say
// about it.
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
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		if lock := lockdown(); lock != "" && lock != "none" {
			hints = append(hints, fmt.Sprintf("EPERM (operation not permitted) as uid %d; kernel lockdown=%s (read from securityfs); the kernel does not say which policy refused: lockdown, an LSM or a seccomp filter may (`dmesg | grep -i lockdown` shows lockdown refusals). To trace, use a kernel booted with lockdown=none, or trace in a VM (make lab-test)", os.Geteuid(), lock))
		} else if os.Geteuid() != 0 {
			hints = append(hints, "EPERM: run as root or with CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN")
		} else {
			hints = append(hints, "EPERM although root and no lockdown: an LSM or seccomp policy forbids it")
		}
	}
	if errors.Is(err, syscall.Errno(524)) || errors.Is(err, ebpf.ErrNotSupported) { // ENOTSUPP
		hints = append(hints, "not supported by this kernel")
	}
	if errors.Is(err, unix.EBUSY) {
		hints = append(hints, "EBUSY: the function has no ftrace entry (notrace) or is already attached exclusively")
	}
	if len(hints) == 0 {
		return fmt.Errorf("%s: %w", b, err)
	}
	return fmt.Errorf("%s: %w: %s", b, err, strings.Join(hints, "; "))
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

// lockdown returns the active kernel lockdown mode ("none", "integrity",
// "confidentiality") or "" if unknown. It mounts securityfs on a temporary
// directory when it is not mounted.
func lockdown() string {
	parse := func(s string) string {
		for _, w := range strings.Fields(s) {
			if strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
				return strings.Trim(w, "[]")
			}
		}
		return ""
	}
	if s, err := readSmall("/sys/kernel/security/lockdown"); err == nil {
		return parse(s)
	}
	dir, err := os.MkdirTemp("", "hapscope-securityfs")
	if err != nil {
		return ""
	}
	defer os.Remove(dir)
	if err := unix.Mount("securityfs", dir, "securityfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return ""
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	s, err := readSmall(dir + "/lockdown")
	if err != nil {
		return ""
	}
	return parse(s)
}
