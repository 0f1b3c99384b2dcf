package coverage

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Kprobes by address. cilium/ebpf's link.Kprobe takes a symbol name, which
// the kernel resolves in vmlinux first and (since 6.6) refuses when the name
// is not unique: it cannot reach a clone whose name another function also
// has, the second of two static functions of one name, or a module function
// whose name vmlinux also has. The kprobe PMU takes an address instead
// (perf_event_attr.kprobe_addr, with kprobe_func NULL; 4.17+), and the
// kernel moves a probe at a function's first byte past its endbr64 itself.
// The program is then attached with a BPF link (5.15+) so that it gets the
// function's index as its cookie.

var kprobePMU struct {
	once sync.Once
	typ  uint32
	err  error
}

func kprobePMUType() (uint32, error) {
	kprobePMU.once.Do(func() {
		s, err := readSmall("/sys/bus/event_source/devices/kprobe/type")
		if err != nil {
			kprobePMU.err = fmt.Errorf("kprobe PMU (CONFIG_KPROBE_EVENTS, 4.17+): %w", err)
			return
		}
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
		if err != nil {
			kprobePMU.err = fmt.Errorf("kprobe PMU type %q: %w", strings.TrimSpace(s), err)
			return
		}
		kprobePMU.typ = uint32(v)
	})
	return kprobePMU.typ, kprobePMU.err
}

// addrKprobe is a kprobe at an address with prog attached through a BPF
// link; Close releases the link and then the perf event.
type addrKprobe struct {
	link.Link
	event int
}

func (k *addrKprobe) Close() error {
	err := k.Link.Close()
	if cerr := unix.Close(k.event); err == nil {
		err = cerr
	}
	return err
}

// bpfLinkCreatePerfEvent is BPF_LINK_CREATE's attribute for a perf event
// target (include/uapi/linux/bpf.h): prog_fd, target_fd, attach_type,
// flags, then perf_event.bpf_cookie.
type bpfLinkCreatePerfEvent struct {
	progFD, targetFD, attachType, flags uint32
	cookie                              uint64
}

const (
	bpfLinkCreate    = 28 // BPF_LINK_CREATE
	bpfPerfEventType = 41 // BPF_PERF_EVENT attach type
)

// kprobeAt attaches prog to the kernel function entered at addr, with
// cookie.
func kprobeAt(addr uint64, prog *ebpf.Program, cookie uint64) (link.Link, error) {
	typ, err := kprobePMUType()
	if err != nil {
		return nil, err
	}
	attr := unix.PerfEventAttr{
		Size: unix.PERF_ATTR_SIZE_VER1,
		Type: typ,
		Ext1: 0,    // kprobe_func: none, so that…
		Ext2: addr, // …kprobe_addr is used
	}
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("kprobe at %#x: perf_event_open: %w", addr, err)
	}
	la := bpfLinkCreatePerfEvent{progFD: uint32(prog.FD()), targetFD: uint32(fd), attachType: bpfPerfEventType, cookie: cookie}
	lfd, _, errno := unix.Syscall(unix.SYS_BPF, bpfLinkCreate, uintptr(unsafe.Pointer(&la)), unsafe.Sizeof(la))
	if errno != 0 {
		unix.Close(fd)
		err := error(errno)
		if errors.Is(errno, unix.EINVAL) {
			err = fmt.Errorf("%w (BPF links on perf events need Linux 5.15+)", errno)
		}
		return nil, fmt.Errorf("kprobe at %#x: attach program: %w", addr, err)
	}
	l, err := link.NewFromFD(int(lfd))
	if err != nil {
		unix.Close(int(lfd))
		unix.Close(fd)
		return nil, fmt.Errorf("kprobe at %#x: %w", addr, err)
	}
	return &addrKprobe{Link: l, event: fd}, nil
}
