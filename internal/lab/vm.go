package lab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one boot of a lab kernel.
type Config struct {
	Kernel *Kernel
	// Script is the shell script (busybox sh) run as root once the guest is
	// up; its exit status is the run's ExitCode. Lines it writes to the
	// file descriptor $STATUS_FD come back in Result.Status.
	Script string
	// Modules are extra kernel modules to load before Script runs (with
	// their dependencies); the virtiofs ones are always loaded.
	Modules []string
	// MemoryMiB and CPUs size the guest (default 2048 MiB, 1 vCPU).
	//
	// One vCPU by default: with two, QEMU's multi-threaded TCG let a vCPU
	// run a stale int3 while the other patched kernel text (kprobe.multi
	// links replaced under load), and the guest died with "Oops: int3" in
	// an attached function — twice here, at 100 s of a pruning soak and in
	// one of four SIGINT runs. With one vCPU there is no cross-CPU patching
	// race; the same soak ran clean for 4 minutes, at 1.5–2× the redis
	// throughput of the two-vCPU guest.
	//
	// For SMP rows use CPUs 2 with SingleThread: with ftrace's function
	// tracer switched on and off under load on both vCPUs (text patching
	// of ~40k call sites), multi-threaded TCG with two vCPUs oopsed on
	// 6.12 ("Oops: int3") and soft-locked 6.1 (twice each way here), while
	// single-threaded TCG with two vCPUs, and one vCPU either way, ran it
	// clean on both kernels.
	MemoryMiB, CPUs int
	// SingleThread runs QEMU's TCG on one host thread (-accel tcg,thread=single):
	// about three times slower, but it ran mass detach under load cleanly
	// where multi-threaded TCG crashed the guest (see shared/LAB.md).
	SingleThread bool
	// Timeout bounds the whole boot; the VM is killed when it passes.
	Timeout time.Duration
	// Console receives the guest console, line by line, without \r.
	Console io.Writer
	// OutDir is a host directory shared read-write with the guest at /out.
	// Empty: none.
	OutDir string
	// Files are extra initramfs files (guest path → content, mode 0755).
	Files map[string][]byte
	// ScratchMiB sizes the guest's scratch disk (default 4096): a sparse
	// file on the host, formatted ext4, attached as virtio-blk and mounted
	// at ScratchDir. It is a real block device with a real file system, as
	// a host's /var/lib/docker is, where the host's root (virtiofs, FUSE)
	// and /tmp (tmpfs, overlayfs) are not. It is discarded with the run.
	ScratchMiB int
}

// ScratchDir is where the guest mounts its scratch disk (Config.ScratchMiB).
// /run is bound into /host, so chrooted programs see it at the same path.
const ScratchDir = "/run/scratch"

// Addr is a non-loopback address of the guest (on lo, as a host's own
// address on its NIC is local too): a client that connects to it goes
// through the nat table's OUTPUT DNAT to published container ports, as a
// remote client's connection does through PREROUTING, where one to
// 127.0.0.1 is carried by Docker's userland proxy.
const Addr = "10.0.2.15"

// Result is what a boot produced.
type Result struct {
	ExitCode int           // exit status of Config.Script, from the status port
	Status   []string      // lines the script wrote to $STATUS_FD
	Boot     time.Duration // from QEMU start to the script starting
	Wall     time.Duration // from QEMU start to QEMU exit
	Accel    string        // the QEMU accelerator setting used
}

// CrashError reports a guest kernel oops, BUG or panic seen on the console.
type CrashError struct {
	Kernel string
	Text   string // the console lines from the first report on
}

func (e *CrashError) Error() string {
	return fmt.Sprintf("lab guest kernel %s crashed (oops/BUG/panic on the console):\n%s", e.Kernel, e.Text)
}

// crashLine matches console lines that mean the guest kernel is broken.
var crashLine = regexp.MustCompile(`(Oops:|Kernel panic|BUG: |general protection fault|kernel BUG at|Unable to handle kernel)`)

const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /host /out /root
/bin/busybox --install -s /bin
# The kernel's request_module helper (module autoloading, e.g. by nft).
/bin/busybox ln -s /bin/busybox /sbin/modprobe
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
for m in $(cat /lab/modules); do insmod "$m" || echo "lab: insmod $m failed"; done
exec 3>/dev/ttyS1
export STATUS_FD=3
if ! mount -t virtiofs -o ro hostroot /host; then
	echo "lab: mounting the host's root (virtiofs) failed" >&3
	echo "exit 125" >&3
	poweroff -f
fi
# /host/tmp: the host's /tmp (where a checkout or cache may live) under a
# writable tmpfs layer, so chrooted programs can write there; /tmp is the same.
mount -t tmpfs tmpfs /run/lab-tmp 2>/dev/null || { mkdir -p /run/lab-tmp; mount -t tmpfs tmpfs /run/lab-tmp; }
mkdir -p /run/lab-tmp/upper /run/lab-tmp/work
if mount -t overlay overlay -o lowerdir=/host/tmp,upperdir=/run/lab-tmp/upper,workdir=/run/lab-tmp/work /host/tmp; then
	mount --bind /host/tmp /tmp
else
	echo "lab: overlay on /host/tmp failed; chrooted programs get no writable /tmp" >&3
fi
# The lab kernel's modules tree (with the modules.dep the lab wrote), where
# modprobe and the kernel's request_module helper (/sbin/modprobe) look.
mods=/lib/modules/$(uname -r)
mkdir -p $mods
mount --bind "$(cat /lab/modules-tree)" $mods || echo "lab: binding the kernel's modules tree at $mods failed"
# The scratch disk (virtio-blk, ext4), before /run is bound into /host.
mkdir -p ` + ScratchDir + `
if [ -b /dev/vda ]; then mount -t ext4 /dev/vda ` + ScratchDir + ` || echo "lab: mounting the scratch disk failed" >&3; fi
for d in proc sys dev run; do mount --rbind /$d /host/$d 2>/dev/null; done
if [ -f /lab/out ]; then mount -t virtiofs out /out || echo "lab: mounting /out failed"; fi
hostname lab
ip link set lo up 2>/dev/null
ip addr add ` + Addr + `/32 dev lo 2>/dev/null
echo "hapscope-lab: script starting at guest uptime $(cut -d' ' -f1 /proc/uptime)s" >&3
echo "ready" >&3
# The script's output reaches the console through a pipe, as in CI: programs
# see no terminal, so none draws progress bars into the log.
{ sh /lab/script </dev/null; echo "exit $?" >&3; } 2>&1 | cat
sync
poweroff -f
`

// Run boots cfg.Kernel, runs cfg.Script and returns its exit status. It
// fails with a *CrashError when the console shows an oops or panic (even if
// the script exited 0), and with a timeout error naming cfg.Timeout.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	k := cfg.Kernel
	if k == nil {
		return nil, errors.New("lab.Run: no kernel")
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 2048
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Minute
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.ScratchMiB == 0 {
		cfg.ScratchMiB = 4096
	}
	for _, tool := range []string{"qemu-system-x86_64", virtiofsd, "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("lab: %s not found: install Debian's qemu-system-x86 (make deps does)", tool)
		}
	}
	work, err := os.MkdirTemp("", "hapscope-lab-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	initrd := filepath.Join(work, "initrd.gz")
	if err := buildInitramfs(k, cfg, initrd); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	// virtiofs daemons: the host root, read-only on the host side, and the
	// writable out directory.
	var daemons []*exec.Cmd
	defer func() {
		for _, d := range daemons {
			d.Process.Kill()
			d.Wait()
		}
	}()
	startFS := func(tag, source string, readOnly bool) (string, error) {
		sock := filepath.Join(work, tag+".sock")
		src := source
		if readOnly {
			src = filepath.Join(work, tag+".ro")
			if err := os.Mkdir(src, 0o755); err != nil {
				return "", err
			}
		}
		d := exec.CommandContext(ctx, virtiofsd, "--socket-path="+sock, "-o", "source="+src,
			"-o", "cache=auto", "-o", "sandbox=chroot", "-o", "log_level=err")
		var errb bytes.Buffer
		d.Stderr = &errb
		start := d.Start
		if readOnly {
			start = func() error { return startReadOnly(d, source, src) }
		}
		if err := start(); err != nil {
			return "", fmt.Errorf("lab: start virtiofsd for %s: %w", source, err)
		}
		daemons = append(daemons, d)
		for i := 0; ; i++ {
			if _, err := os.Stat(sock); err == nil {
				return sock, nil
			}
			if i > 200 {
				return "", fmt.Errorf("lab: virtiofsd for %s did not create its socket: %s", source, errb.String())
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	scratch, err := makeScratch(ctx, work, cfg.ScratchMiB)
	if err != nil {
		return nil, err
	}
	rootSock, err := startFS("hostroot", "/", true)
	if err != nil {
		return nil, err
	}
	statusPath := filepath.Join(work, "status")
	accel := "tcg,thread=multi"
	if cfg.SingleThread {
		accel = "tcg,thread=single"
	}
	args := []string{
		"-accel", accel, "-cpu", "max",
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init",
		"-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-chardev", "file,id=st,path=" + statusPath, "-serial", "chardev:st",
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", cfg.MemoryMiB),
		"-numa", "node,memdev=mem",
		"-chardev", "socket,id=fs0,path=" + rootSock,
		"-device", "vhost-user-fs-pci,chardev=fs0,tag=hostroot",
		"-drive", "file=" + scratch + ",if=none,id=scratch,format=raw,cache=unsafe",
		"-device", "virtio-blk-pci,drive=scratch",
	}
	if cfg.OutDir != "" {
		abs, err := filepath.Abs(cfg.OutDir)
		if err != nil {
			return nil, err
		}
		cfg.OutDir = abs
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
		outSock, err := startFS("out", cfg.OutDir, false)
		if err != nil {
			return nil, err
		}
		args = append(args, "-chardev", "socket,id=fs1,path="+outSock,
			"-device", "vhost-user-fs-pci,chardev=fs1,tag=out")
	}
	q := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	q.Stdin = nil
	stdout, err := q.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var qerr bytes.Buffer
	q.Stderr = &qerr
	q.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := q.Start(); err != nil {
		return nil, fmt.Errorf("lab: start qemu: %w", err)
	}
	res := &Result{Accel: fmt.Sprintf("%s, %d vCPU", accel, cfg.CPUs)}
	var (
		mu      sync.Mutex
		crash   []string
		tail    []string
		scanned = make(chan struct{})
	)
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			fmt.Fprintln(cfg.Console, line)
			mu.Lock()
			if crash != nil || crashLine.MatchString(line) {
				if len(crash) < 80 {
					crash = append(crash, line)
				}
			}
			tail = append(tail, line)
			if len(tail) > 30 {
				tail = tail[1:]
			}
			mu.Unlock()
		}
	}()
	<-scanned
	werr := q.Wait()
	res.Wall = time.Since(start)

	status, _ := os.ReadFile(statusPath)
	exit := -1
	for _, line := range strings.Split(strings.ReplaceAll(string(status), "\r", ""), "\n") {
		switch {
		case line == "ready":
			// The boot time is measured by the guest itself below.
		case strings.HasPrefix(line, "hapscope-lab: script starting at guest uptime "):
			s := strings.TrimSuffix(strings.TrimPrefix(line, "hapscope-lab: script starting at guest uptime "), "s")
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				res.Boot = time.Duration(f * float64(time.Second))
			}
		case strings.HasPrefix(line, "exit "):
			if n, err := strconv.Atoi(strings.TrimPrefix(line, "exit ")); err == nil {
				exit = n
			}
		case line != "":
			res.Status = append(res.Status, line)
		}
	}
	res.ExitCode = exit
	mu.Lock()
	defer mu.Unlock()
	if crash != nil {
		return res, &CrashError{Kernel: k.Release, Text: strings.Join(crash, "\n")}
	}
	if ctx.Err() == context.DeadlineExceeded {
		return res, fmt.Errorf("lab: guest %s did not finish within %s and was killed; last console lines:\n%s",
			k.Release, cfg.Timeout, strings.Join(tail, "\n"))
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("lab: run of %s cancelled: %w", k.Release, ctx.Err())
	}
	if exit < 0 {
		return res, fmt.Errorf("lab: guest %s reported no exit status (qemu: %v %s); last console lines:\n%s",
			k.Release, werr, strings.TrimSpace(qerr.String()), strings.Join(tail, "\n"))
	}
	return res, nil
}

const virtiofsd = "/usr/lib/qemu/virtiofsd"

// makeScratch creates the scratch disk image in dir: a sparse file of mib
// MiB formatted ext4 (Config.ScratchMiB).
func makeScratch(ctx context.Context, dir string, mib int) (string, error) {
	p := filepath.Join(dir, "scratch.img")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	err = f.Truncate(int64(mib) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("lab: scratch disk: %w", err)
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "scratch",
		"-N", "65536", "-J", "size=16", "-E", "lazy_itable_init=0,lazy_journal_init=0", p).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("lab: mkfs.ext4 on the scratch disk (Debian's e2fsprogs): %v: %s", err, bytes.TrimSpace(out))
	}
	return p, nil
}

// startReadOnly starts cmd in a private mount namespace in which mnt is a
// recursive bind of source made read-only (mount_setattr MOUNT_ATTR_RDONLY,
// AT_RECURSIVE) on every mount of the tree. virtiofsd has no read-only
// option, and the guest's "ro" mount flag binds only a guest that keeps it:
// root in the guest can remount read-write. With the host's own mounts
// read-only under virtiofsd, every write it is asked for fails with EROFS.
// The host's mounts are left as they were: the namespace is private and
// goes away with the daemon.
func startReadOnly(cmd *exec.Cmd, source, mnt string) error {
	errc := make(chan error, 1)
	go func() {
		// The namespace change is made on this OS thread only, and cmd
		// inherits it from the thread that forks it. The thread is never
		// unlocked: the runtime ends it with this goroutine rather than
		// give a goroutine a thread in another mount namespace.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare the mount namespace (the lab runs as root): %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make the private mount namespace's mounts private: %w", err)
			}
			fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				return fmt.Errorf("clone the mount tree of %s: %w", source, err)
			}
			defer unix.Close(fd)
			if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE,
				&unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
				return fmt.Errorf("make the mounts under %s read-only (mount_setattr, Linux 5.12+): %w", source, err)
			}
			if err := unix.MoveMount(fd, "", unix.AT_FDCWD, mnt, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("mount the read-only tree of %s on %s: %w", source, mnt, err)
			}
			return cmd.Start()
		}()
	}()
	return <-errc
}

func buildInitramfs(k *Kernel, cfg Config, out string) error {
	a := newArchive()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("lab: read /bin/busybox (install Debian's busybox-static): %w", err)
	}
	if !bytes.Contains(bb, []byte("BusyBox")) {
		return errors.New("lab: /bin/busybox is not busybox; install Debian's busybox-static")
	}
	a.file("bin/busybox", 0o755, bb)
	a.symlink("bin/sh", "busybox")
	a.file("init", 0o755, []byte(initScript))
	a.file("lab/script", 0o755, []byte(cfg.Script))
	if cfg.OutDir != "" {
		a.file("lab/out", 0o644, nil)
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "host", "out", "root", "etc", "sbin"} {
		a.mkdirAll(d)
	}
	a.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	a.file("etc/group", 0o644, []byte("root:x:0:\n"))
	mods, err := k.resolveModules(append([]string{"virtio_pci", "virtiofs", "virtio_blk", "overlay"}, cfg.Modules...))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var list []string
	for i, m := range mods {
		data, err := readModule(m)
		if err != nil {
			return err
		}
		p := fmt.Sprintf("lib/lab-modules/%02d-%s.ko", i, moduleName(m))
		a.file(p, 0o644, data)
		list = append(list, "/"+p)
	}
	a.file("lab/modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	a.file("lab/modules-tree", 0o644, []byte(filepath.Join("/host", k.modulesDir())+"\n"))
	for p, data := range cfg.Files {
		a.file(p, 0o755, data)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	bw := bufio.NewWriterSize(zw, 1<<20)
	if err := a.writeTo(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
