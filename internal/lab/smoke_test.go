package lab_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/lab"
	"github.com/hapscope/hapscope/internal/labtest"
)

// smokeProbe is an fentry program on vfs_read that counts calls made by
// tasks of one cgroup. Map layout: one array element {u64 cgroup id; u64 hits}.
type smokeProbe struct {
	m    *ebpf.Map
	prog *ebpf.Program
	lnk  link.Link
}

func loadSmoke(cgroupID uint64) (*smokeProbe, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create map: %w", err)
	}
	var v [16]byte
	binaryLE(v[:8], cgroupID)
	if err := m.Put(uint32(0), v); err != nil {
		m.Close()
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "smoke_vfs_read", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry,
		AttachTo: "vfs_read", License: "GPL",
		Instructions: asm.Instructions{
			asm.FnGetCurrentCgroupId.Call(),
			asm.Mov.Reg(asm.R6, asm.R0),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.JNE.Reg(asm.R1, asm.R6, "exit"),
			asm.Add.Imm(asm.R0, 8),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
			asm.Return(),
		},
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load fentry program on vfs_read: %w (%s)", err, lockdownState())
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		prog.Close()
		m.Close()
		return nil, fmt.Errorf("attach fentry vfs_read: %w (%s)", err, lockdownState())
	}
	return &smokeProbe{m: m, prog: prog, lnk: l}, nil
}

func (p *smokeProbe) hits(t *testing.T) uint64 {
	var v [16]byte
	if err := p.m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for i := 15; i >= 8; i-- {
		n = n<<8 | uint64(v[i])
	}
	return n
}

func (p *smokeProbe) Close() { p.lnk.Close(); p.prog.Close(); p.m.Close() }

func binaryLE(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// lockdownState reads the kernel lockdown mode from securityfs, mounting it
// on a temporary directory when it is not mounted.
func lockdownState() string {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		s := strings.TrimSpace(string(b))
		if i, j := strings.Index(s, "["), strings.Index(s, "]"); i >= 0 && j > i {
			return s[i+1 : j]
		}
		return s
	}
	if s := read("/sys/kernel/security/lockdown"); s != "" {
		return "kernel lockdown: " + s
	}
	dir, err := os.MkdirTemp("", "securityfs")
	if err == nil {
		defer os.Remove(dir)
		if unix.Mount("securityfs", dir, "securityfs", 0, "") == nil {
			defer unix.Unmount(dir, 0)
			if s := read(filepath.Join(dir, "lockdown")); s != "" {
				return "kernel lockdown: " + s
			}
		}
	}
	return "kernel lockdown: unknown (securityfs unreadable)"
}

// TestHostRefusesTracing runs on the host. On the locked-down development
// and CI machines it asserts that loading fentry fails with EPERM and that
// the error names the lockdown state, so that nobody mistakes this kernel
// for one hapscope can measure. On a kernel that allows fentry it asserts
// the opposite: the program loads and attaches.
func TestHostRefusesTracing(t *testing.T) {
	if labtest.InLab() {
		t.Skip("host test; the lab runs TestLab*")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF) to ask the kernel at all")
	}
	p, err := loadSmoke(1)
	if err == nil {
		p.Close()
		t.Logf("this kernel allows fentry on vfs_read: it can be measured natively (%s)", lockdownState())
		return
	}
	t.Logf("refusal: %v", err)
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("fentry refused with an unexpected error (want EPERM or not supported): %v", err)
	}
	if !strings.Contains(err.Error(), "kernel lockdown:") || !strings.Contains(err.Error(), "vfs_read") {
		t.Fatalf("refusal does not name the lockdown state and the function: %v", err)
	}
}

// TestLabSmoke checks that the lab kernel is the expected Debian release
// and that fentry works there: an fentry program on vfs_read sees every
// read(2) of a dd process in a test cgroup.
func TestLabSmoke(t *testing.T) {
	labtest.Require(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	if rel != labtest.Release() || !strings.Contains(rel, "cloud-amd64") {
		t.Fatalf("uname -r = %q, want the Debian lab release %q", rel, labtest.Release())
	}
	t.Logf("lab kernel %s (%s)", rel, labtest.Kernel())

	cg := "/sys/fs/cgroup/hapscope-smoke"
	if err := os.Mkdir(cg, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	var st unix.Stat_t
	if err := unix.Stat(cg, &st); err != nil {
		t.Fatal(err)
	}
	p, err := loadSmoke(st.Ino)
	if err != nil {
		t.Fatalf("fentry must work on the lab kernel: %v", err)
	}
	defer p.Close()

	const n = 5000
	fd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command("/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", fmt.Sprintf("count=%d", n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	// A read outside the cgroup must not count.
	if _, err := os.ReadFile("/proc/version"); err != nil {
		t.Fatal(err)
	}
	got := p.hits(t)
	t.Logf("vfs_read hits from the cgroup: %d for %d reads of /dev/zero", got, n)
	if got < n || got > n+200 {
		t.Fatalf("vfs_read hits = %d, want between %d and %d", got, n, n+200)
	}
}

// TestLabGuestDisk checks what the guest offers workloads besides the
// host's read-only root: an ext4 scratch disk on a virtio block device
// (seen at the same path from inside the host root, where chrooted
// programs run) and a non-loopback address.
func TestLabGuestDisk(t *testing.T) {
	labtest.Require(t)
	dir := os.Getenv(labtest.EnvScratch)
	if dir != lab.ScratchDir {
		t.Fatalf("%s = %q, want %s", labtest.EnvScratch, dir, lab.ScratchDir)
	}
	for _, d := range []string{dir, labtest.Host(dir)} {
		var fs unix.Statfs_t
		if err := unix.Statfs(d, &fs); err != nil {
			t.Fatal(err)
		}
		if fs.Type != unix.EXT4_SUPER_MAGIC || fs.Flags&unix.ST_RDONLY != 0 {
			t.Errorf("%s: file system 0x%x, flags 0x%x: want ext4 (0x%x), writable", d, fs.Type, fs.Flags, unix.EXT4_SUPER_MAGIC)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), "/dev/vda "+dir+" ext4 ") {
		t.Errorf("no /dev/vda (virtio-blk) ext4 mount at %s:\n%s", dir, mounts)
	}
	f := filepath.Join(labtest.Host(dir), "probe")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatalf("write through the host root's view of the scratch disk: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "probe")); err != nil || string(b) != "x" {
		t.Errorf("the two views of the scratch disk differ: %q %v", b, err)
	}
	os.Remove(f)
	if a := os.Getenv(labtest.EnvAddr); a != lab.Addr {
		t.Fatalf("%s = %q, want %s", labtest.EnvAddr, a, lab.Addr)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == lab.Addr {
			found = true
		}
	}
	if !found {
		t.Errorf("the guest has no address %s: %v", lab.Addr, addrs)
	}
}
