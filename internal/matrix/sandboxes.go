package matrix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// How each runtime is put into the measured scope (a fresh cgroup v2
// directory per cell; the tracer counts every task in its subtree):
//
//   - native: the service is started directly in the scope (clone into the
//     cgroup via CLONE_INTO_CGROUP).
//   - runc, runc-noseccomp: `runc run` is started in <scope>/launcher and
//     the container's linux.cgroupsPath is <scope>/ctr. runc moves the
//     container's init into its own cgroup, which is why that cgroup is
//     placed inside the scope; runc itself (and any shim it leaves) stays in
//     the launcher cgroup, also inside the scope.
//   - bubblewrap: bwrap is started in the scope; it and the sandboxed
//     service (bwrap forks it into new namespaces, never a new cgroup) stay
//     there.
//   - gVisor runsc (systrap, ptrace, kvm): `runsc run` is started in
//     <scope>/launcher and linux.cgroupsPath is <scope>/ctr. runsc keeps
//     the launcher's cgroup for processes it does not move (seen on the
//     dev host's hybrid layout) and otherwise moves the sandbox into
//     cgroupsPath: either way the sentry, gofer and the systrap stubs or
//     ptrace'd tasks are inside the scope.
//   - Kata (QEMU, Firecracker), Nabla: not runnable here; their rows say why.

// DockerSeccomp is the seccomp profile Docker applies by default (moby's
// profiles/seccomp/default.json), resolved the way Docker resolves it for
// an x86-64 container with Docker's default capability set (which holds
// CAP_SYS_CHROOT but not CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_BPF …):
// default action errno EPERM; the unconditional allow list; ptrace and
// process_vm_* (kernel ≥ 4.8); socket unless AF_VSOCK; personality for
// PER_LINUX, PER_LINUX32, UNAME26 and their combination and the query
// value; arch_prctl and modify_ldt; chroot; clone without namespace flags;
// clone3 answers ENOSYS so libcs fall back to clone. It is in the runtime
// spec's linux.seccomp form.
func DockerSeccomp() map[string]any {
	const (
		afVsock   = 40
		nsFlags   = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
		errnoNone = 38         // ENOSYS
	)
	allow := func(names ...string) map[string]any {
		return map[string]any{"names": names, "action": "SCMP_ACT_ALLOW"}
	}
	arg := func(index int, value uint64, op string) map[string]any {
		return map[string]any{"index": index, "value": value, "op": op}
	}
	withArgs := func(r map[string]any, args ...map[string]any) map[string]any {
		r["args"] = args
		return r
	}
	rules := []any{
		allow(dockerAllowed...),
		allow("process_vm_readv", "process_vm_writev", "ptrace"),
		withArgs(allow("socket"), arg(0, afVsock, "SCMP_CMP_NE")),
	}
	for _, p := range []uint64{0, 8, 0x20000, 0x20008, 0xffffffff} {
		rules = append(rules, withArgs(allow("personality"), arg(0, p, "SCMP_CMP_EQ")))
	}
	rules = append(rules,
		allow("arch_prctl", "modify_ldt", "chroot"),
		withArgs(allow("clone"), map[string]any{"index": 0, "value": uint64(nsFlags), "valueTwo": uint64(0), "op": "SCMP_CMP_MASKED_EQ"}),
		map[string]any{"names": []string{"clone3"}, "action": "SCMP_ACT_ERRNO", "errnoRet": errnoNone},
	)
	return map[string]any{
		"defaultAction":   "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 1,
		"architectures":   []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"syscalls":        rules,
	}
}

// dockerAllowed is the unconditional allow list of Docker's default
// seccomp profile. Names this kernel or libseccomp does not know (32-bit
// variants) are ignored by runc.
var dockerAllowed = []string{
	"accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir",
	"chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
	"clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
	"epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd",
	"eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
	"fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32",
	"fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
	"fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
	"futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
	"getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
	"getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
	"getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
	"getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
	"getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
	"ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
	"ioprio_set", "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup", "ipc",
	"kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
	"lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
	"lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore",
	"mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
	"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
	"mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
	"munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open",
	"openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
	"pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
	"prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2",
	"read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
	"recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
	"restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
	"rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
	"rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
	"sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
	"sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
	"select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
	"sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
	"setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
	"setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
	"setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
	"setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
	"signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64",
	"statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
	"tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
	"timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
	"timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
	"ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
	"vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
}

// Bubblewrap runs the service under bwrap with every namespace but the
// network one unshared (the load client must reach it), the userland root
// bound read-only, fresh /proc, /dev and /tmp. In a chroot (Env.Root, the
// lab) there is no user namespace: the kernel refuses one to a chrooted
// process.
func Bubblewrap() Runtime {
	return Runtime{
		Name:  "bubblewrap",
		Check: func(e *Env) error { return e.have("bwrap") },
		Start: func(ctx context.Context, e *Env, name, dir string, argv []string) (*Instance, error) {
			if err := e.have(argv[0]); err != nil {
				return nil, err
			}
			unshare := []string{"--unshare-all", "--share-net"}
			if e.Root != "" && e.Root != "/" {
				// A chrooted process may not create a user namespace
				// (clone: EPERM), and bwrap fails on it; as root it needs
				// none: every other namespace but the network one.
				unshare = []string{"--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"}
			}
			bw := append([]string{"bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"}, unshare...)
			bw = append(bw, "--die-with-parent", "--chdir", "/tmp", "--")
			bw = append(bw, argv...)
			h, err := e.startIn(ctx, dir, bw)
			if err != nil {
				return nil, err
			}
			if err := h.earlyExit("bwrap"); err != nil {
				return nil, err
			}
			return h.instance(), nil
		},
	}
}

// Runsc runs the service in gVisor: runsc (at path, inside Env.Root) with
// --platform=platform ("systrap", "ptrace" or "kvm"), host networking, the
// same read-only root as Runc. The kvm platform needs /dev/kvm.
func Runsc(platform, path string) Runtime {
	return Runtime{
		Name: "gvisor-" + platform,
		Check: func(e *Env) error {
			if platform == "kvm" && !haveKVM() {
				return errors.New(needsKVM("gVisor's kvm platform"))
			}
			if path == "" {
				return errors.New("no runsc given: build it with `make runsc` (CGO_ENABLED=0 go install gvisor.dev/gvisor/runsc@…) and pass --runsc")
			}
			if _, err := os.Stat(e.inRoot(path)); err != nil {
				return fmt.Errorf("runsc not found at %s: build it with `make runsc`", path)
			}
			return nil
		},
		Start: func(ctx context.Context, e *Env, id, dir string, argv []string) (*Instance, error) {
			// runsc derives its cgroup from the launcher's; its overlay of
			// the root would need a writable medium: the root is read-only
			// and /tmp, /run are tmpfs mounts anyway.
			oci := ociRuntime{bin: path, global: []string{"--network=host", "--platform=" + platform, "--overlay2=none"}}
			return startOCI(ctx, e, oci, id, dir, argv, nil)
		},
	}
}

// Unavailable is a row the matrix keeps for a runtime that cannot run
// here; why says what it needs.
func Unavailable(name, why string) Runtime {
	return Runtime{
		Name:  name,
		Check: func(*Env) error { return errors.New(why) },
		Start: func(context.Context, *Env, string, string, []string) (*Instance, error) {
			return nil, errors.New(why)
		},
	}
}

// needsKVM is the reason rows that need hardware virtualization give.
func needsKVM(what string) string {
	if haveKVM() {
		return what + " is not installed here"
	}
	return "needs /dev/kvm (" + what + " runs the workload in a VM; this machine has no usable hardware virtualization: no /dev/kvm or no vmx/svm CPU flag)"
}

// haveKVM reports whether /dev/kvm exists and the CPU advertises hardware
// virtualization (vmx or svm): a /dev/kvm without them (seen on this
// project's dev host) lets runsc --platform=kvm spin without ever starting.
func haveKVM() bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, f := range strings.Fields(v) {
				if f == "vmx" || f == "svm" {
					return true
				}
			}
			return false
		}
	}
	return false
}

// Study2018 is the runtime set of the 2018 HAP study as rows of this
// machine: runc with Docker's default seccomp stands for Docker; runsc is
// the runsc binary (inside Env.Root) for the gVisor rows, "" if there is
// none.
func Study2018(runsc string) []Runtime {
	return []Runtime{
		Native(),
		Runc("runc", DockerSeccomp()),
		Runc("runc-noseccomp", nil),
		Bubblewrap(),
		Runsc("systrap", runsc),
		Runsc("ptrace", runsc),
		Runsc("kvm", runsc),
		Unavailable("kata-qemu", needsKVM("Kata Containers with QEMU")),
		Unavailable("kata-firecracker", needsKVM("Kata Containers with Firecracker")),
		Unavailable("nabla", "not installable here: nabla's runnc and solo5 are not packaged in Debian and the archived project's sources are not reachable from this machine"),
	}
}
