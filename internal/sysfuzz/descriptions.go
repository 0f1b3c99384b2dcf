//go:build linux && amd64

package sysfuzz

import (
	"golang.org/x/sys/unix"
)

// Bounds that Validate enforces.
const (
	MaxCalls    = 256      // calls in one program
	MaxBuf      = 64 << 10 // bytes in one buffer
	MaxBufTotal = 16 << 20 // bytes of all buffers of a program
	MaxMap      = 16 << 20 // bytes of one mmap
	MaxMapped   = 64 << 20 // bytes of all mmaps of a program
	MaxSleepNs  = 1000000  // longest timeout a call may wait: 1 ms
	PageSize    = 4096

	// BadFD is the number the executor passes for a reference to a file
	// descriptor that the program no longer holds: above any nr_open, so
	// the kernel answers EBADF.
	BadFD = 0x7fffffff

	sockaddrSize = 128 // Go memory behind every sockaddr argument
	unixAddrLen  = 110 // sizeof(struct sockaddr_un): the only addrlen for unix()
	maxIov       = 8
)

// Constants x/sys/unix does not define.
const (
	futexWait        = 0
	futexWake        = 1
	futexPrivateFlag = 128
	sigBlock         = 0
	sigUnblock       = 1
	sigSetmask       = 2

	// include/uapi/linux/io_uring.h
	ioringEnterGetevents      = 1
	ioringEnterSQWakeup       = 2
	ioringEnterSQWait         = 4
	ioringUnregisterBuffers   = 1
	ioringUnregisterFiles     = 3
	ioringUnregisterEventfd   = 5
	ioringRegisterProbe       = 8
	ioringRegisterPersonality = 9
	ioringParamsSize          = 120
	ioringProbeSize           = 16 + 8*8 // struct io_uring_probe with 8 ops
)

// Kind is the type of an argument.
type Kind uint8

const (
	KindInt    Kind = iota + 1 // a number in [Min, Max]
	KindConst                  // exactly Val (named through Set if any)
	KindFlags                  // one of Set.Enum OR'd with Set.Bits, Set.Req set
	KindFd                     // a resource of kind Res made by an earlier call, -1, or AT_FDCWD (the work dir) where AtFdcwd
	KindPath                   // a relative path inside the work dir (see ValidPath)
	KindString                 // a short NUL-free C string
	KindBuf                    // buf(N[, "data"]) in Go memory, mem(rN, off) in a mapped region, or nil
	KindLen                    // the length (in Unit bytes) of argument Of
	KindOut                    // &out: Size bytes of Go memory the kernel writes; nil; mem(rN, off)
	KindLenPtr                 // &len: pointer to an int32 holding argument Of's size; nil
	KindMem                    // mem(rN, off): a page of a region the program mapped
	KindStruct                 // a small struct built in Go memory, named by Struct; nil where Opt
	KindAddr                   // a socket address: inet(port), inet6(port), unix("path"), nl(groups); nil
)

// Res is a set of resource kinds.
type Res uint32

const (
	ResFile Res = 1 << iota
	ResDir
	ResPipe
	ResUnix    // AF_UNIX socket
	ResInet    // AF_INET socket
	ResInet6   // AF_INET6 socket
	ResNetlink // AF_NETLINK socket
	ResEpoll
	ResEventfd
	ResTimerfd
	ResMemfd
	ResRegion  // a memory region the program mapped
	ResIoUring // an io_uring instance
	ResBpf     // a BPF object (where unprivileged BPF is allowed)

	ResSocket = ResUnix | ResInet | ResInet6 | ResNetlink
	ResFd     = ResFile | ResDir | ResPipe | ResSocket | ResEpoll | ResEventfd | ResTimerfd | ResMemfd | ResIoUring | ResBpf
)

var resNames = []string{"file", "dir", "pipe", "unix", "inet", "inet6", "netlink", "epoll", "eventfd", "timerfd", "memfd", "region", "io_uring", "bpf"}

func (r Res) String() string {
	if r == ResFd {
		return "fd"
	}
	if r == ResSocket {
		return "socket"
	}
	s := ""
	for i, n := range resNames {
		if r&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}

// Named is a named constant.
type Named struct {
	Name string
	Val  uint64
}

// FlagSet is a typed set of named constants: a value is exactly one of Enum
// (if Enum is not empty) OR'd with any subset of Bits, and has every bit of
// Req.
type FlagSet struct {
	Enum []Named
	Bits []Named
	Req  uint64
}

func (s *FlagSet) mask() uint64 {
	var m uint64
	for _, b := range s.Bits {
		m |= b.Val
	}
	return m
}

// Valid reports whether v is a value of s.
func (s *FlagSet) Valid(v uint64) bool {
	if v&s.Req != s.Req {
		return false
	}
	m := s.mask()
	e := v &^ m
	if len(s.Enum) == 0 {
		return e == 0
	}
	for _, n := range s.Enum {
		if n.Val == e {
			return true
		}
	}
	return false
}

// ArgType describes one argument.
type ArgType struct {
	Name    string
	Kind    Kind
	Min     int64    // KindInt
	Max     int64    // KindInt
	Val     uint64   // KindConst
	Set     *FlagSet // KindFlags; names for KindConst
	Res     Res      // KindFd: the resource kinds accepted
	AtFdcwd bool     // KindFd: AT_FDCWD (the work dir) accepted
	Of      int      // KindLen, KindLenPtr: the argument measured
	Unit    uint64   // KindLen: bytes per unit (0: 1)
	Size    uint64   // KindOut: bytes written; KindBuf: minimum size
	Out     bool     // KindBuf: the kernel writes it (generation only)
	GoOnly  bool     // KindBuf: no mem() form (its size is passed by &len)
	Struct  string   // KindStruct: timespec, itimerspec, epev, sigset, int, iov
	MaxNs   int64    // KindStruct timespec: longest duration allowed
	Opt     bool     // KindStruct, KindOut: nil allowed
	Slots   int      // KindOut: the kernel writes this many fds (pipe2, socketpair); only &out allowed
	Strs    []string // KindString: the strings drawn (default m0…m3)
	Abs     bool     // KindPath: passed as the work dir's absolute path joined with it (a call with no dirfd)
}

// Syscall describes one system call variant: Name is the call ("read") or
// the call and a variant ("socket$inet").
type Syscall struct {
	Name  string
	NR    uintptr
	Args  []ArgType
	Ret   Res // the resource kind the call returns
	Outs  Res // the kind of the fds written to the KindOut argument with Slots
	ret   func(c *Call, argRes func(i int) Res) Res
	lenOf []int // per argument: the KindLen/KindLenPtr argument measuring it, or -1
}

// Produces reports whether a call of s yields a resource.
func (s *Syscall) Produces() bool { return s.Ret != 0 || s.ret != nil || s.Outs != 0 }

func (s *Syscall) outArg() int {
	for i, a := range s.Args {
		if a.Kind == KindOut && a.Slots > 0 {
			return i
		}
	}
	return -1
}

func u(v int64) uint64 { return uint64(v) }

func enum(ns ...Named) *FlagSet { return &FlagSet{Enum: ns} }

func nm(name string, v uint64) Named { return Named{name, v} }

// Named constant sets.
var (
	setAtFdcwd = enum(nm("AT_FDCWD", u(unix.AT_FDCWD)))
	setOpen    = &FlagSet{
		Enum: []Named{nm("O_RDONLY", unix.O_RDONLY), nm("O_WRONLY", unix.O_WRONLY), nm("O_RDWR", unix.O_RDWR)},
		Bits: []Named{nm("O_CREAT", unix.O_CREAT), nm("O_EXCL", unix.O_EXCL), nm("O_NOCTTY", unix.O_NOCTTY),
			nm("O_TRUNC", unix.O_TRUNC), nm("O_APPEND", unix.O_APPEND), nm("O_NONBLOCK", unix.O_NONBLOCK),
			nm("O_DSYNC", unix.O_DSYNC), nm("O_DIRECT", unix.O_DIRECT), nm("O_TMPFILE", unix.O_TMPFILE),
			nm("O_DIRECTORY", unix.O_DIRECTORY), nm("O_NOFOLLOW", unix.O_NOFOLLOW), nm("O_NOATIME", unix.O_NOATIME),
			nm("O_CLOEXEC", unix.O_CLOEXEC), nm("O_PATH", unix.O_PATH)},
	}
	setSetfl = &FlagSet{
		Bits: []Named{nm("O_NONBLOCK", unix.O_NONBLOCK), nm("O_APPEND", unix.O_APPEND), nm("O_DIRECT", unix.O_DIRECT), nm("O_NOATIME", unix.O_NOATIME)},
		Req:  unix.O_NONBLOCK,
	}
	setCloexec = &FlagSet{Bits: []Named{nm("O_CLOEXEC", unix.O_CLOEXEC)}}
	setWhence  = enum(nm("SEEK_SET", unix.SEEK_SET), nm("SEEK_CUR", unix.SEEK_CUR), nm("SEEK_END", unix.SEEK_END),
		nm("SEEK_DATA", unix.SEEK_DATA), nm("SEEK_HOLE", unix.SEEK_HOLE))
	setStatat = &FlagSet{Bits: []Named{nm("AT_EMPTY_PATH", unix.AT_EMPTY_PATH), nm("AT_SYMLINK_NOFOLLOW", unix.AT_SYMLINK_NOFOLLOW), nm("AT_NO_AUTOMOUNT", unix.AT_NO_AUTOMOUNT)}}
	setUnlink = &FlagSet{Bits: []Named{nm("AT_REMOVEDIR", unix.AT_REMOVEDIR)}}
	setRename = &FlagSet{Bits: []Named{nm("RENAME_NOREPLACE", unix.RENAME_NOREPLACE), nm("RENAME_EXCHANGE", unix.RENAME_EXCHANGE)}}
	setFalloc = &FlagSet{Bits: []Named{nm("FALLOC_FL_KEEP_SIZE", unix.FALLOC_FL_KEEP_SIZE), nm("FALLOC_FL_PUNCH_HOLE", unix.FALLOC_FL_PUNCH_HOLE),
		nm("FALLOC_FL_COLLAPSE_RANGE", unix.FALLOC_FL_COLLAPSE_RANGE), nm("FALLOC_FL_ZERO_RANGE", unix.FALLOC_FL_ZERO_RANGE),
		nm("FALLOC_FL_INSERT_RANGE", unix.FALLOC_FL_INSERT_RANGE)}}
	setPipe = &FlagSet{Bits: []Named{nm("O_NONBLOCK", unix.O_NONBLOCK), nm("O_CLOEXEC", unix.O_CLOEXEC), nm("O_DIRECT", unix.O_DIRECT)}, Req: unix.O_NONBLOCK}
	setEfd  = &FlagSet{Bits: []Named{nm("EFD_NONBLOCK", unix.EFD_NONBLOCK), nm("EFD_CLOEXEC", unix.EFD_CLOEXEC), nm("EFD_SEMAPHORE", unix.EFD_SEMAPHORE)}, Req: unix.EFD_NONBLOCK}
	setMfd  = &FlagSet{Bits: []Named{nm("MFD_CLOEXEC", unix.MFD_CLOEXEC), nm("MFD_ALLOW_SEALING", unix.MFD_ALLOW_SEALING), nm("MFD_NOEXEC_SEAL", unix.MFD_NOEXEC_SEAL), nm("MFD_EXEC", unix.MFD_EXEC)}}

	sockBits       = []Named{nm("SOCK_NONBLOCK", unix.SOCK_NONBLOCK), nm("SOCK_CLOEXEC", unix.SOCK_CLOEXEC)}
	setSockUnix    = &FlagSet{Enum: []Named{nm("SOCK_STREAM", unix.SOCK_STREAM), nm("SOCK_DGRAM", unix.SOCK_DGRAM), nm("SOCK_SEQPACKET", unix.SOCK_SEQPACKET)}, Bits: sockBits, Req: unix.SOCK_NONBLOCK}
	setSockInet    = &FlagSet{Enum: []Named{nm("SOCK_STREAM", unix.SOCK_STREAM), nm("SOCK_DGRAM", unix.SOCK_DGRAM)}, Bits: sockBits, Req: unix.SOCK_NONBLOCK}
	setSockNetlink = &FlagSet{Enum: []Named{nm("SOCK_RAW", unix.SOCK_RAW), nm("SOCK_DGRAM", unix.SOCK_DGRAM)}, Bits: sockBits, Req: unix.SOCK_NONBLOCK}
	setAccept      = &FlagSet{Bits: sockBits, Req: unix.SOCK_NONBLOCK}
	setIPProto     = enum(nm("0x0", 0), nm("IPPROTO_TCP", unix.IPPROTO_TCP), nm("IPPROTO_UDP", unix.IPPROTO_UDP))
	setSendFlags   = &FlagSet{Bits: []Named{nm("MSG_DONTWAIT", unix.MSG_DONTWAIT), nm("MSG_NOSIGNAL", unix.MSG_NOSIGNAL), nm("MSG_MORE", unix.MSG_MORE),
		nm("MSG_OOB", unix.MSG_OOB), nm("MSG_EOR", unix.MSG_EOR), nm("MSG_CONFIRM", unix.MSG_CONFIRM)}, Req: unix.MSG_DONTWAIT}
	setRecvFlags = &FlagSet{Bits: []Named{nm("MSG_DONTWAIT", unix.MSG_DONTWAIT), nm("MSG_PEEK", unix.MSG_PEEK), nm("MSG_TRUNC", unix.MSG_TRUNC),
		nm("MSG_WAITALL", unix.MSG_WAITALL), nm("MSG_OOB", unix.MSG_OOB), nm("MSG_ERRQUEUE", unix.MSG_ERRQUEUE)}, Req: unix.MSG_DONTWAIT}
	setShut    = enum(nm("SHUT_RD", unix.SHUT_RD), nm("SHUT_WR", unix.SHUT_WR), nm("SHUT_RDWR", unix.SHUT_RDWR))
	setOptSock = enum(nm("SO_REUSEADDR", unix.SO_REUSEADDR), nm("SO_REUSEPORT", unix.SO_REUSEPORT), nm("SO_KEEPALIVE", unix.SO_KEEPALIVE),
		nm("SO_BROADCAST", unix.SO_BROADCAST), nm("SO_SNDBUF", unix.SO_SNDBUF), nm("SO_RCVBUF", unix.SO_RCVBUF),
		nm("SO_OOBINLINE", unix.SO_OOBINLINE), nm("SO_RCVLOWAT", unix.SO_RCVLOWAT), nm("SO_PASSCRED", unix.SO_PASSCRED),
		nm("SO_DONTROUTE", unix.SO_DONTROUTE), nm("SO_PEEK_OFF", unix.SO_PEEK_OFF), nm("SO_TIMESTAMP", unix.SO_TIMESTAMP),
		nm("SO_TYPE", unix.SO_TYPE), nm("SO_ERROR", unix.SO_ERROR), nm("SO_ACCEPTCONN", unix.SO_ACCEPTCONN))
	setOptTCP = enum(nm("TCP_NODELAY", unix.TCP_NODELAY), nm("TCP_CORK", unix.TCP_CORK), nm("TCP_KEEPIDLE", unix.TCP_KEEPIDLE),
		nm("TCP_KEEPINTVL", unix.TCP_KEEPINTVL), nm("TCP_KEEPCNT", unix.TCP_KEEPCNT), nm("TCP_QUICKACK", unix.TCP_QUICKACK),
		nm("TCP_DEFER_ACCEPT", unix.TCP_DEFER_ACCEPT), nm("TCP_MAXSEG", unix.TCP_MAXSEG), nm("TCP_SYNCNT", unix.TCP_SYNCNT),
		nm("TCP_USER_TIMEOUT", unix.TCP_USER_TIMEOUT), nm("TCP_NOTSENT_LOWAT", unix.TCP_NOTSENT_LOWAT))
	setOptIP = enum(nm("IP_TTL", unix.IP_TTL), nm("IP_TOS", unix.IP_TOS), nm("IP_RECVTTL", unix.IP_RECVTTL), nm("IP_RECVTOS", unix.IP_RECVTOS),
		nm("IP_MTU_DISCOVER", unix.IP_MTU_DISCOVER), nm("IP_MULTICAST_TTL", unix.IP_MULTICAST_TTL), nm("IP_MULTICAST_LOOP", unix.IP_MULTICAST_LOOP))
	setOptIPv6 = enum(nm("IPV6_V6ONLY", unix.IPV6_V6ONLY), nm("IPV6_UNICAST_HOPS", unix.IPV6_UNICAST_HOPS), nm("IPV6_RECVPKTINFO", unix.IPV6_RECVPKTINFO),
		nm("IPV6_MULTICAST_LOOP", unix.IPV6_MULTICAST_LOOP), nm("IPV6_TCLASS", unix.IPV6_TCLASS))
	setEpollCreate = &FlagSet{Bits: []Named{nm("EPOLL_CLOEXEC", unix.EPOLL_CLOEXEC)}}
	setEpollOp     = enum(nm("EPOLL_CTL_ADD", unix.EPOLL_CTL_ADD), nm("EPOLL_CTL_DEL", unix.EPOLL_CTL_DEL), nm("EPOLL_CTL_MOD", unix.EPOLL_CTL_MOD))
	setEpollEvents = &FlagSet{Bits: []Named{nm("EPOLLIN", unix.EPOLLIN), nm("EPOLLOUT", unix.EPOLLOUT), nm("EPOLLPRI", unix.EPOLLPRI),
		nm("EPOLLERR", unix.EPOLLERR), nm("EPOLLHUP", unix.EPOLLHUP), nm("EPOLLRDHUP", unix.EPOLLRDHUP), nm("EPOLLET", unix.EPOLLET),
		nm("EPOLLONESHOT", unix.EPOLLONESHOT), nm("EPOLLEXCLUSIVE", unix.EPOLLEXCLUSIVE)}}
	setTimerfdClock = enum(nm("CLOCK_REALTIME", unix.CLOCK_REALTIME), nm("CLOCK_MONOTONIC", unix.CLOCK_MONOTONIC), nm("CLOCK_BOOTTIME", unix.CLOCK_BOOTTIME),
		nm("CLOCK_REALTIME_ALARM", unix.CLOCK_REALTIME_ALARM), nm("CLOCK_BOOTTIME_ALARM", unix.CLOCK_BOOTTIME_ALARM))
	setClock = enum(nm("CLOCK_REALTIME", unix.CLOCK_REALTIME), nm("CLOCK_MONOTONIC", unix.CLOCK_MONOTONIC),
		nm("CLOCK_PROCESS_CPUTIME_ID", unix.CLOCK_PROCESS_CPUTIME_ID), nm("CLOCK_THREAD_CPUTIME_ID", unix.CLOCK_THREAD_CPUTIME_ID),
		nm("CLOCK_MONOTONIC_RAW", unix.CLOCK_MONOTONIC_RAW), nm("CLOCK_REALTIME_COARSE", unix.CLOCK_REALTIME_COARSE),
		nm("CLOCK_MONOTONIC_COARSE", unix.CLOCK_MONOTONIC_COARSE), nm("CLOCK_BOOTTIME", unix.CLOCK_BOOTTIME), nm("CLOCK_TAI", unix.CLOCK_TAI))
	setTfd        = &FlagSet{Bits: []Named{nm("TFD_NONBLOCK", unix.TFD_NONBLOCK), nm("TFD_CLOEXEC", unix.TFD_CLOEXEC)}, Req: unix.TFD_NONBLOCK}
	setTfdSettime = &FlagSet{Bits: []Named{nm("TFD_TIMER_ABSTIME", unix.TFD_TIMER_ABSTIME), nm("TFD_TIMER_CANCEL_ON_SET", unix.TFD_TIMER_CANCEL_ON_SET)}}
	setProt       = &FlagSet{Enum: nil, Bits: []Named{nm("PROT_READ", unix.PROT_READ), nm("PROT_WRITE", unix.PROT_WRITE), nm("PROT_EXEC", unix.PROT_EXEC)}}
	setMap        = &FlagSet{Enum: []Named{nm("MAP_PRIVATE", unix.MAP_PRIVATE), nm("MAP_SHARED", unix.MAP_SHARED)},
		Bits: []Named{nm("MAP_ANONYMOUS", unix.MAP_ANONYMOUS), nm("MAP_POPULATE", unix.MAP_POPULATE), nm("MAP_NORESERVE", unix.MAP_NORESERVE)},
		Req:  unix.MAP_ANONYMOUS}
	setMadvise = enum(nm("MADV_NORMAL", unix.MADV_NORMAL), nm("MADV_RANDOM", unix.MADV_RANDOM), nm("MADV_SEQUENTIAL", unix.MADV_SEQUENTIAL),
		nm("MADV_WILLNEED", unix.MADV_WILLNEED), nm("MADV_DONTNEED", unix.MADV_DONTNEED), nm("MADV_FREE", unix.MADV_FREE),
		nm("MADV_DONTFORK", unix.MADV_DONTFORK), nm("MADV_DOFORK", unix.MADV_DOFORK), nm("MADV_MERGEABLE", unix.MADV_MERGEABLE),
		nm("MADV_UNMERGEABLE", unix.MADV_UNMERGEABLE), nm("MADV_HUGEPAGE", unix.MADV_HUGEPAGE), nm("MADV_NOHUGEPAGE", unix.MADV_NOHUGEPAGE),
		nm("MADV_DONTDUMP", unix.MADV_DONTDUMP), nm("MADV_DODUMP", unix.MADV_DODUMP), nm("MADV_WIPEONFORK", unix.MADV_WIPEONFORK),
		nm("MADV_KEEPONFORK", unix.MADV_KEEPONFORK), nm("MADV_COLD", unix.MADV_COLD), nm("MADV_PAGEOUT", unix.MADV_PAGEOUT),
		nm("MADV_POPULATE_READ", unix.MADV_POPULATE_READ), nm("MADV_POPULATE_WRITE", unix.MADV_POPULATE_WRITE))
	setFutexWait = &FlagSet{Enum: []Named{nm("FUTEX_WAIT", futexWait)}, Bits: []Named{nm("FUTEX_PRIVATE_FLAG", futexPrivateFlag)}}
	setFutexWake = &FlagSet{Enum: []Named{nm("FUTEX_WAKE", futexWake)}, Bits: []Named{nm("FUTEX_PRIVATE_FLAG", futexPrivateFlag)}}
	setGrnd      = &FlagSet{Bits: []Named{nm("GRND_NONBLOCK", unix.GRND_NONBLOCK), nm("GRND_RANDOM", unix.GRND_RANDOM), nm("GRND_INSECURE", unix.GRND_INSECURE)}, Req: unix.GRND_NONBLOCK}
	setSigHow    = enum(nm("SIG_BLOCK", sigBlock), nm("SIG_UNBLOCK", sigUnblock), nm("SIG_SETMASK", sigSetmask))
	// Signals a program may block: none that the Go runtime or a fault
	// needs delivered (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGURG,
	// SIGPROF); the thread that ran the program exits afterwards anyway.
	setSigset = &FlagSet{Bits: []Named{sig("SIGHUP", unix.SIGHUP), sig("SIGUSR1", unix.SIGUSR1), sig("SIGUSR2", unix.SIGUSR2),
		sig("SIGPIPE", unix.SIGPIPE), sig("SIGALRM", unix.SIGALRM), sig("SIGCHLD", unix.SIGCHLD), sig("SIGWINCH", unix.SIGWINCH), sig("SIGIO", unix.SIGIO)}}

	setAFUnix    = enum(nm("AF_UNIX", unix.AF_UNIX))
	setAFInet    = enum(nm("AF_INET", unix.AF_INET))
	setAFInet6   = enum(nm("AF_INET6", unix.AF_INET6))
	setAFNetlink = enum(nm("AF_NETLINK", unix.AF_NETLINK))
	setSolSocket = enum(nm("SOL_SOCKET", unix.SOL_SOCKET))
	setSolTCP    = enum(nm("IPPROTO_TCP", unix.IPPROTO_TCP))
	setSolIP     = enum(nm("IPPROTO_IP", unix.IPPROTO_IP))
	setSolIPv6   = enum(nm("IPPROTO_IPV6", unix.IPPROTO_IPV6))
	setFcntlGet  = enum(nm("F_GETFL", unix.F_GETFL))
	setFcntlSet  = enum(nm("F_SETFL", unix.F_SETFL))
	setFcntlDup  = enum(nm("F_DUPFD_CLOEXEC", unix.F_DUPFD_CLOEXEC))
	setPrGet     = enum(nm("PR_GET_NAME", unix.PR_GET_NAME))
	setPrSet     = enum(nm("PR_SET_NAME", unix.PR_SET_NAME))

	// Namespaces and mounts: an unprivileged task gets EPERM (EINVAL for
	// CLONE_NEWUSER in a multi-threaded process) past the checks hapscope
	// wants reached. The mount flags leave out MS_BIND and MS_MOVE, and the
	// file system type is nil, so that even as root (the lab test) every
	// mount fails: no new mount, remount or propagation change on a path
	// of the work dir, which is no mount's root.
	setUnshare = &FlagSet{Bits: []Named{nm("CLONE_NEWUSER", unix.CLONE_NEWUSER), nm("CLONE_NEWNS", unix.CLONE_NEWNS),
		nm("CLONE_NEWUTS", unix.CLONE_NEWUTS), nm("CLONE_NEWIPC", unix.CLONE_NEWIPC), nm("CLONE_NEWNET", unix.CLONE_NEWNET),
		nm("CLONE_NEWCGROUP", unix.CLONE_NEWCGROUP), nm("CLONE_NEWTIME", unix.CLONE_NEWTIME), nm("CLONE_SYSVSEM", unix.CLONE_SYSVSEM)}}
	setMount = &FlagSet{Bits: []Named{nm("MS_RDONLY", unix.MS_RDONLY), nm("MS_NOSUID", unix.MS_NOSUID), nm("MS_NODEV", unix.MS_NODEV),
		nm("MS_NOEXEC", unix.MS_NOEXEC), nm("MS_REMOUNT", unix.MS_REMOUNT), nm("MS_REC", unix.MS_REC), nm("MS_PRIVATE", unix.MS_PRIVATE),
		nm("MS_SLAVE", unix.MS_SLAVE), nm("MS_SHARED", unix.MS_SHARED), nm("MS_UNBINDABLE", unix.MS_UNBINDABLE)}}
	setUmount = &FlagSet{Bits: []Named{nm("MNT_FORCE", unix.MNT_FORCE), nm("MNT_DETACH", unix.MNT_DETACH), nm("MNT_EXPIRE", unix.MNT_EXPIRE),
		nm("UMOUNT_NOFOLLOW", unix.UMOUNT_NOFOLLOW)}}
	// ptrace: no PTRACE_TRACEME (it would make the program's thread its
	// process parent's tracee); the pids are 0 and 1 only, never a process
	// of the fuzzer's user (see ptrace in Syscalls).
	setPtrace = enum(nm("PTRACE_ATTACH", unix.PTRACE_ATTACH), nm("PTRACE_SEIZE", unix.PTRACE_SEIZE), nm("PTRACE_INTERRUPT", unix.PTRACE_INTERRUPT),
		nm("PTRACE_DETACH", unix.PTRACE_DETACH), nm("PTRACE_PEEKDATA", unix.PTRACE_PEEKDATA), nm("PTRACE_GETREGS", unix.PTRACE_GETREGS))
	// bpf$fd's commands return a new fd; bpf's return 0 (a resource there
	// would be fd 0, the executor's stdin: TestLabReach's pipe was closed
	// that way once BPF_PROG_GET_NEXT_ID succeeded as root).
	setBpfFdCmd = enum(nm("BPF_MAP_CREATE", unix.BPF_MAP_CREATE), nm("BPF_PROG_LOAD", unix.BPF_PROG_LOAD),
		nm("BPF_OBJ_GET", unix.BPF_OBJ_GET), nm("BPF_BTF_LOAD", unix.BPF_BTF_LOAD), nm("BPF_LINK_CREATE", unix.BPF_LINK_CREATE))
	setBpfCmd = enum(nm("BPF_MAP_LOOKUP_ELEM", unix.BPF_MAP_LOOKUP_ELEM), nm("BPF_PROG_GET_NEXT_ID", unix.BPF_PROG_GET_NEXT_ID))
	// Keys: the special keyring ids; add_key writes to the thread keyring
	// only, which goes with the program's thread (the user's keyrings
	// would keep the keys for the whole run, up to the user's quota).
	setKeySpec = enum(nm("KEY_SPEC_THREAD_KEYRING", u(unix.KEY_SPEC_THREAD_KEYRING)), nm("KEY_SPEC_PROCESS_KEYRING", u(unix.KEY_SPEC_PROCESS_KEYRING)),
		nm("KEY_SPEC_SESSION_KEYRING", u(unix.KEY_SPEC_SESSION_KEYRING)), nm("KEY_SPEC_USER_KEYRING", u(unix.KEY_SPEC_USER_KEYRING)),
		nm("KEY_SPEC_USER_SESSION_KEYRING", u(unix.KEY_SPEC_USER_SESSION_KEYRING)))
	setKeyThread    = enum(nm("KEY_SPEC_THREAD_KEYRING", u(unix.KEY_SPEC_THREAD_KEYRING)))
	setKeyctlGetID  = enum(nm("KEYCTL_GET_KEYRING_ID", unix.KEYCTL_GET_KEYRING_ID))
	setKeyctlDesc   = enum(nm("KEYCTL_DESCRIBE", unix.KEYCTL_DESCRIBE))
	setKeyctlRead   = enum(nm("KEYCTL_READ", unix.KEYCTL_READ))
	setKeyctlSearch = enum(nm("KEYCTL_SEARCH", unix.KEYCTL_SEARCH))
	keyTypes        = []string{"user", "keyring", "logon"}
	setIoUringEnter = &FlagSet{Bits: []Named{nm("IORING_ENTER_GETEVENTS", ioringEnterGetevents), nm("IORING_ENTER_SQ_WAKEUP", ioringEnterSQWakeup), nm("IORING_ENTER_SQ_WAIT", ioringEnterSQWait)}}
	setIoUringUnreg = enum(nm("IORING_UNREGISTER_BUFFERS", ioringUnregisterBuffers), nm("IORING_UNREGISTER_FILES", ioringUnregisterFiles), nm("IORING_UNREGISTER_EVENTFD", ioringUnregisterEventfd), nm("IORING_REGISTER_PERSONALITY", ioringRegisterPersonality))
	setIoUringProbe = enum(nm("IORING_REGISTER_PROBE", ioringRegisterProbe))
)

func sig(name string, s unix.Signal) Named { return Named{name, 1 << (uint(s) - 1)} }

// Ports a sockaddr_in/in6 may name (on 127.0.0.1 or ::1): 0 or these.
const (
	portBase  = 20000
	portCount = 4
)

// Argument constructors.
func aInt(name string, lo, hi int64) ArgType {
	return ArgType{Name: name, Kind: KindInt, Min: lo, Max: hi}
}
func aConst(name string, v uint64, s *FlagSet) ArgType {
	return ArgType{Name: name, Kind: KindConst, Val: v, Set: s}
}
func aFlags(name string, s *FlagSet) ArgType { return ArgType{Name: name, Kind: KindFlags, Set: s} }
func aFd(name string, r Res) ArgType         { return ArgType{Name: name, Kind: KindFd, Res: r} }
func aDirfd(name string) ArgType {
	return ArgType{Name: name, Kind: KindFd, Res: ResDir, AtFdcwd: true, Set: setAtFdcwd}
}
func aPath(name string) ArgType { return ArgType{Name: name, Kind: KindPath} }
func aIn(name string) ArgType   { return ArgType{Name: name, Kind: KindBuf} }
func aOutBuf(name string) ArgType {
	return ArgType{Name: name, Kind: KindBuf, Out: true}
}
func aLen(name string, of int, unit uint64) ArgType {
	return ArgType{Name: name, Kind: KindLen, Of: of, Unit: unit}
}
func aOut(name string, size uint64, opt bool) ArgType {
	return ArgType{Name: name, Kind: KindOut, Size: size, Opt: opt}
}
func aLenPtr(name string, of int) ArgType { return ArgType{Name: name, Kind: KindLenPtr, Of: of} }
func aMem(name string) ArgType            { return ArgType{Name: name, Kind: KindMem} }
func aStruct(name, st string, opt bool) ArgType {
	return ArgType{Name: name, Kind: KindStruct, Struct: st, Opt: opt}
}
func aTimeout(name string) ArgType {
	return ArgType{Name: name, Kind: KindStruct, Struct: "timespec", MaxNs: MaxSleepNs}
}
func aAddr(name string) ArgType { return ArgType{Name: name, Kind: KindAddr} }
func aAddrOut(name string) ArgType {
	return ArgType{Name: name, Kind: KindBuf, Out: true, GoOnly: true}
}

const (
	maxOff    = 16 << 20
	maxFalloc = 1 << 20
)

func retOf(i int) func(*Call, func(int) Res) Res {
	return func(_ *Call, argRes func(int) Res) Res {
		if r := argRes(i); r != 0 {
			return r
		}
		return ResFd // a literal -1: unknown
	}
}

func setsockopt(variant string, r Res, level uint64, ls, opts *FlagSet) *Syscall {
	return &Syscall{Name: "setsockopt$" + variant, NR: unix.SYS_SETSOCKOPT, Args: []ArgType{
		aFd("fd", r), aConst("level", level, ls), aFlags("optname", opts),
		aStruct("optval", "int", true), aLen("optlen", 3, 1)}}
}

func getsockopt(variant string, r Res, level uint64, ls, opts *FlagSet) *Syscall {
	return &Syscall{Name: "getsockopt$" + variant, NR: unix.SYS_GETSOCKOPT, Args: []ArgType{
		aFd("fd", r), aConst("level", level, ls), aFlags("optname", opts),
		{Name: "optval", Kind: KindBuf, Out: true, GoOnly: true}, aLenPtr("optlen", 3)}}
}

func socket(variant string, af uint64, afs, types *FlagSet, proto ArgType, r Res) *Syscall {
	return &Syscall{Name: "socket$" + variant, NR: unix.SYS_SOCKET, Ret: r, Args: []ArgType{
		aConst("domain", af, afs), aFlags("type", types), proto}}
}

// Syscalls is the table of described calls.
var Syscalls = []*Syscall{
	{Name: "openat", NR: unix.SYS_OPENAT, Args: []ArgType{aDirfd("dirfd"), aPath("path"), aFlags("flags", setOpen), aInt("mode", 0, 0o777)},
		ret: func(c *Call, _ func(int) Res) Res {
			if f := c.Args[2].Val; f&unix.O_DIRECTORY != 0 && f&unix.O_TMPFILE != unix.O_TMPFILE {
				return ResDir
			}
			return ResFile
		}},
	{Name: "read", NR: unix.SYS_READ, Args: []ArgType{aFd("fd", ResFd), aOutBuf("buf"), aLen("count", 1, 1)}},
	{Name: "write", NR: unix.SYS_WRITE, Args: []ArgType{aFd("fd", ResFd), aIn("buf"), aLen("count", 1, 1)}},
	{Name: "pread64", NR: unix.SYS_PREAD64, Args: []ArgType{aFd("fd", ResFd), aOutBuf("buf"), aLen("count", 1, 1), aInt("offset", -1, maxOff)}},
	{Name: "pwrite64", NR: unix.SYS_PWRITE64, Args: []ArgType{aFd("fd", ResFd), aIn("buf"), aLen("count", 1, 1), aInt("offset", -1, maxOff)}},
	{Name: "readv", NR: unix.SYS_READV, Args: []ArgType{aFd("fd", ResFd), {Name: "iov", Kind: KindStruct, Struct: "iov", Out: true}, aLen("iovcnt", 1, 1)}},
	{Name: "writev", NR: unix.SYS_WRITEV, Args: []ArgType{aFd("fd", ResFd), aStruct("iov", "iov", false), aLen("iovcnt", 1, 1)}},
	{Name: "lseek", NR: unix.SYS_LSEEK, Args: []ArgType{aFd("fd", ResFd), aInt("offset", -1<<62, 1<<62), aFlags("whence", setWhence)}},
	{Name: "close", NR: unix.SYS_CLOSE, Args: []ArgType{aFd("fd", ResFd)}},
	{Name: "dup3", NR: unix.SYS_DUP3, Args: []ArgType{aFd("oldfd", ResFd), aFd("newfd", ResFd), aFlags("flags", setCloexec)}, ret: retOf(0)},
	{Name: "fcntl$getfl", NR: unix.SYS_FCNTL, Args: []ArgType{aFd("fd", ResFd), aConst("cmd", unix.F_GETFL, setFcntlGet)}},
	{Name: "fcntl$setfl", NR: unix.SYS_FCNTL, Args: []ArgType{aFd("fd", ResFd), aConst("cmd", unix.F_SETFL, setFcntlSet), aFlags("flags", setSetfl)}},
	{Name: "fcntl$dupfd", NR: unix.SYS_FCNTL, Args: []ArgType{aFd("fd", ResFd), aConst("cmd", unix.F_DUPFD_CLOEXEC, setFcntlDup), aInt("minfd", 0, 64)}, ret: retOf(0)},
	{Name: "ftruncate", NR: unix.SYS_FTRUNCATE, Args: []ArgType{aFd("fd", ResFile|ResMemfd), aInt("length", -1, maxOff)}},
	{Name: "fstat", NR: unix.SYS_FSTAT, Args: []ArgType{aFd("fd", ResFd), aOut("statbuf", 144, true)}},
	{Name: "newfstatat", NR: unix.SYS_NEWFSTATAT, Args: []ArgType{aDirfd("dirfd"), aPath("path"), aOut("statbuf", 144, true), aFlags("flags", setStatat)}},
	{Name: "getdents64", NR: unix.SYS_GETDENTS64, Args: []ArgType{aFd("fd", ResDir), aOutBuf("dirp"), aLen("count", 1, 1)}},
	{Name: "mkdirat", NR: unix.SYS_MKDIRAT, Args: []ArgType{aDirfd("dirfd"), aPath("path"), aInt("mode", 0, 0o777)}},
	{Name: "unlinkat", NR: unix.SYS_UNLINKAT, Args: []ArgType{aDirfd("dirfd"), aPath("path"), aFlags("flags", setUnlink)}},
	{Name: "renameat2", NR: unix.SYS_RENAMEAT2, Args: []ArgType{aDirfd("olddirfd"), aPath("oldpath"), aDirfd("newdirfd"), aPath("newpath"), aFlags("flags", setRename)}},
	{Name: "fsync", NR: unix.SYS_FSYNC, Args: []ArgType{aFd("fd", ResFd)}},
	{Name: "fallocate", NR: unix.SYS_FALLOCATE, Args: []ArgType{aFd("fd", ResFile|ResMemfd), aFlags("mode", setFalloc), aInt("offset", 0, maxFalloc), aInt("len", 0, maxFalloc)}},
	{Name: "pipe2", NR: unix.SYS_PIPE2, Outs: ResPipe, Args: []ArgType{{Name: "pipefd", Kind: KindOut, Size: 8, Slots: 2}, aFlags("flags", setPipe)}},
	{Name: "eventfd2", NR: unix.SYS_EVENTFD2, Ret: ResEventfd, Args: []ArgType{aInt("initval", 0, 0xffffffff), aFlags("flags", setEfd)}},
	{Name: "memfd_create", NR: unix.SYS_MEMFD_CREATE, Ret: ResMemfd, Args: []ArgType{{Name: "name", Kind: KindString}, aFlags("flags", setMfd)}},
	socket("unix", unix.AF_UNIX, setAFUnix, setSockUnix, aConst("protocol", 0, nil), ResUnix),
	socket("inet", unix.AF_INET, setAFInet, setSockInet, aFlags("protocol", setIPProto), ResInet),
	socket("inet6", unix.AF_INET6, setAFInet6, setSockInet, aFlags("protocol", setIPProto), ResInet6),
	socket("netlink", unix.AF_NETLINK, setAFNetlink, setSockNetlink, aConst("protocol", unix.NETLINK_ROUTE, enum(nm("NETLINK_ROUTE", unix.NETLINK_ROUTE))), ResNetlink),
	{Name: "socketpair", NR: unix.SYS_SOCKETPAIR, Outs: ResUnix, Args: []ArgType{aConst("domain", unix.AF_UNIX, setAFUnix), aFlags("type", setSockUnix),
		aConst("protocol", 0, nil), {Name: "sv", Kind: KindOut, Size: 8, Slots: 2}}},
	{Name: "bind", NR: unix.SYS_BIND, Args: []ArgType{aFd("fd", ResSocket), aAddr("addr"), aLen("addrlen", 1, 1)}},
	{Name: "connect", NR: unix.SYS_CONNECT, Args: []ArgType{aFd("fd", ResSocket), aAddr("addr"), aLen("addrlen", 1, 1)}},
	{Name: "listen", NR: unix.SYS_LISTEN, Args: []ArgType{aFd("fd", ResSocket), aInt("backlog", 0, 8)}},
	{Name: "accept4", NR: unix.SYS_ACCEPT4, Args: []ArgType{aFd("fd", ResUnix|ResInet|ResInet6), aAddrOut("addr"), aLenPtr("addrlen", 1), aFlags("flags", setAccept)}, ret: retOf(0)},
	{Name: "sendto", NR: unix.SYS_SENDTO, Args: []ArgType{aFd("fd", ResSocket), aIn("buf"), aLen("len", 1, 1), aFlags("flags", setSendFlags), aAddr("dest_addr"), aLen("addrlen", 4, 1)}},
	{Name: "recvfrom", NR: unix.SYS_RECVFROM, Args: []ArgType{aFd("fd", ResSocket), aOutBuf("buf"), aLen("len", 1, 1), aFlags("flags", setRecvFlags), aAddrOut("src_addr"), aLenPtr("addrlen", 4)}},
	setsockopt("sock", ResSocket, unix.SOL_SOCKET, setSolSocket, setOptSock),
	setsockopt("tcp", ResInet|ResInet6, unix.IPPROTO_TCP, setSolTCP, setOptTCP),
	setsockopt("ip", ResInet, unix.IPPROTO_IP, setSolIP, setOptIP),
	setsockopt("ipv6", ResInet6, unix.IPPROTO_IPV6, setSolIPv6, setOptIPv6),
	getsockopt("sock", ResSocket, unix.SOL_SOCKET, setSolSocket, setOptSock),
	getsockopt("tcp", ResInet|ResInet6, unix.IPPROTO_TCP, setSolTCP, setOptTCP),
	getsockopt("ip", ResInet, unix.IPPROTO_IP, setSolIP, setOptIP),
	getsockopt("ipv6", ResInet6, unix.IPPROTO_IPV6, setSolIPv6, setOptIPv6),
	{Name: "shutdown", NR: unix.SYS_SHUTDOWN, Args: []ArgType{aFd("fd", ResSocket), aFlags("how", setShut)}},
	{Name: "epoll_create1", NR: unix.SYS_EPOLL_CREATE1, Ret: ResEpoll, Args: []ArgType{aFlags("flags", setEpollCreate)}},
	{Name: "epoll_ctl", NR: unix.SYS_EPOLL_CTL, Args: []ArgType{aFd("epfd", ResEpoll), aFlags("op", setEpollOp), aFd("fd", ResFd), aStruct("event", "epev", true)}},
	{Name: "epoll_wait", NR: unix.SYS_EPOLL_WAIT, Args: []ArgType{aFd("epfd", ResEpoll), aOutBuf("events"), aLen("maxevents", 1, 12), aConst("timeout", 0, nil)}},
	{Name: "timerfd_create", NR: unix.SYS_TIMERFD_CREATE, Ret: ResTimerfd, Args: []ArgType{aFlags("clockid", setTimerfdClock), aFlags("flags", setTfd)}},
	{Name: "timerfd_settime", NR: unix.SYS_TIMERFD_SETTIME, Args: []ArgType{aFd("fd", ResTimerfd), aFlags("flags", setTfdSettime), aStruct("new_value", "itimerspec", true), aOut("old_value", 32, true)}},
	{Name: "timerfd_gettime", NR: unix.SYS_TIMERFD_GETTIME, Args: []ArgType{aFd("fd", ResTimerfd), aOut("curr_value", 32, true)}},
	{Name: "clock_gettime", NR: unix.SYS_CLOCK_GETTIME, Args: []ArgType{aFlags("clockid", setClock), aOut("tp", 16, true)}},
	{Name: "nanosleep", NR: unix.SYS_NANOSLEEP, Args: []ArgType{aTimeout("req"), aOut("rem", 16, true)}},
	{Name: "mmap", NR: unix.SYS_MMAP, Ret: ResRegion, Args: []ArgType{aConst("addr", 0, nil), aInt("length", 0, MaxMap), aFlags("prot", setProt),
		aFlags("flags", setMap), aConst("fd", u(-1), nil), aConst("offset", 0, nil)}},
	{Name: "munmap", NR: unix.SYS_MUNMAP, Args: []ArgType{aMem("addr"), aLen("length", 0, 1)}},
	{Name: "mprotect", NR: unix.SYS_MPROTECT, Args: []ArgType{aMem("addr"), aLen("len", 0, 1), aFlags("prot", setProt)}},
	{Name: "madvise", NR: unix.SYS_MADVISE, Args: []ArgType{aMem("addr"), aLen("length", 0, 1), aFlags("advice", setMadvise)}},
	{Name: "futex$wait", NR: unix.SYS_FUTEX, Args: []ArgType{{Name: "uaddr", Kind: KindBuf, Size: 4}, aFlags("futex_op", setFutexWait), aInt("val", 0, 0xffffffff),
		aTimeout("timeout"), aConst("uaddr2", 0, nil), aConst("val3", 0, nil)}},
	{Name: "futex$wake", NR: unix.SYS_FUTEX, Args: []ArgType{{Name: "uaddr", Kind: KindBuf, Size: 4}, aFlags("futex_op", setFutexWake), aInt("val", 0, 16),
		aConst("timeout", 0, nil), aConst("uaddr2", 0, nil), aConst("val3", 0, nil)}},
	{Name: "getpid", NR: unix.SYS_GETPID},
	{Name: "gettid", NR: unix.SYS_GETTID},
	{Name: "uname", NR: unix.SYS_UNAME, Args: []ArgType{aOut("buf", 390, true)}},
	{Name: "getrandom", NR: unix.SYS_GETRANDOM, Args: []ArgType{aOutBuf("buf"), aLen("buflen", 0, 1), aFlags("flags", setGrnd)}},
	{Name: "sched_yield", NR: unix.SYS_SCHED_YIELD},
	{Name: "prctl$getname", NR: unix.SYS_PRCTL, Args: []ArgType{aConst("option", unix.PR_GET_NAME, setPrGet), aOut("name", 16, true),
		aConst("arg3", 0, nil), aConst("arg4", 0, nil), aConst("arg5", 0, nil)}},
	{Name: "prctl$setname", NR: unix.SYS_PRCTL, Args: []ArgType{aConst("option", unix.PR_SET_NAME, setPrSet), {Name: "name", Kind: KindBuf, Size: 16},
		aConst("arg3", 0, nil), aConst("arg4", 0, nil), aConst("arg5", 0, nil)}},
	{Name: "unshare", NR: unix.SYS_UNSHARE, Args: []ArgType{aFlags("flags", setUnshare)}},
	{Name: "mount", NR: unix.SYS_MOUNT, Args: []ArgType{{Name: "source", Kind: KindString}, {Name: "target", Kind: KindPath, Abs: true},
		aConst("filesystemtype", 0, nil), aFlags("mountflags", setMount), aConst("data", 0, nil)}},
	{Name: "umount2", NR: unix.SYS_UMOUNT2, Args: []ArgType{{Name: "target", Kind: KindPath, Abs: true}, aFlags("flags", setUmount)}},
	// pid 0 is no process; pid 1 is root's init natively and in bubblewrap,
	// and the fuzzer itself in a container's pid namespace: never a process
	// the fuzzer's user may trace, which the executor also refuses to run
	// as root (Executor.run).
	{Name: "ptrace", NR: unix.SYS_PTRACE, Args: []ArgType{aFlags("request", setPtrace), aInt("pid", 0, 1), aConst("addr", 0, nil), aConst("data", 0, nil)}},
	{Name: "bpf$fd", NR: unix.SYS_BPF, Ret: ResBpf, Args: []ArgType{aFlags("cmd", setBpfFdCmd), aIn("attr"), aLen("size", 1, 1)}},
	{Name: "bpf", NR: unix.SYS_BPF, Args: []ArgType{aFlags("cmd", setBpfCmd), aIn("attr"), aLen("size", 1, 1)}},
	{Name: "add_key", NR: unix.SYS_ADD_KEY, Args: []ArgType{{Name: "type", Kind: KindString, Strs: keyTypes}, {Name: "description", Kind: KindString},
		aIn("payload"), aLen("plen", 2, 1), aConst("keyring", u(unix.KEY_SPEC_THREAD_KEYRING), setKeyThread)}},
	{Name: "keyctl$get_keyring_id", NR: unix.SYS_KEYCTL, Args: []ArgType{aConst("option", unix.KEYCTL_GET_KEYRING_ID, setKeyctlGetID), aFlags("id", setKeySpec), aConst("create", 0, nil)}},
	{Name: "keyctl$describe", NR: unix.SYS_KEYCTL, Args: []ArgType{aConst("option", unix.KEYCTL_DESCRIBE, setKeyctlDesc), aFlags("key", setKeySpec), aOutBuf("buffer"), aLen("buflen", 2, 1)}},
	{Name: "keyctl$read", NR: unix.SYS_KEYCTL, Args: []ArgType{aConst("option", unix.KEYCTL_READ, setKeyctlRead), aFlags("key", setKeySpec), aOutBuf("buffer"), aLen("buflen", 2, 1)}},
	{Name: "keyctl$search", NR: unix.SYS_KEYCTL, Args: []ArgType{aConst("option", unix.KEYCTL_SEARCH, setKeyctlSearch), aFlags("keyring", setKeySpec),
		{Name: "type", Kind: KindString, Strs: keyTypes}, {Name: "description", Kind: KindString}, aConst("dest", 0, nil)}},
	// io_uring: the ring is never mapped, so no entry is submitted; setup,
	// enter and register reach the instance's set-up, wait and
	// registration code. params is zeroed: no SQPOLL thread.
	{Name: "io_uring_setup", NR: unix.SYS_IO_URING_SETUP, Ret: ResIoUring, Args: []ArgType{aInt("entries", 1, 64), aOut("params", ioringParamsSize, false)}},
	{Name: "io_uring_enter", NR: unix.SYS_IO_URING_ENTER, Args: []ArgType{aFd("fd", ResIoUring), aInt("to_submit", 0, 4), aConst("min_complete", 0, nil),
		aFlags("flags", setIoUringEnter), aConst("sig", 0, nil), aConst("sigsz", 0, nil)}},
	{Name: "io_uring_register$unregister", NR: unix.SYS_IO_URING_REGISTER, Args: []ArgType{aFd("fd", ResIoUring), aFlags("opcode", setIoUringUnreg), aConst("arg", 0, nil), aConst("nr_args", 0, nil)}},
	{Name: "io_uring_register$probe", NR: unix.SYS_IO_URING_REGISTER, Args: []ArgType{aFd("fd", ResIoUring), aConst("opcode", ioringRegisterProbe, setIoUringProbe),
		aOut("arg", ioringProbeSize, false), aInt("nr_args", 0, 8)}},
	{Name: "rt_sigprocmask", NR: unix.SYS_RT_SIGPROCMASK, Args: []ArgType{aFlags("how", setSigHow), aStruct("set", "sigset", true), aOut("oldset", 8, true), aConst("sigsetsize", 8, nil)}},
}

var (
	syscallByName = map[string]*Syscall{}
	constByName   = map[string]uint64{}
)

func init() {
	add := func(s *FlagSet) {
		if s == nil {
			return
		}
		for _, list := range [][]Named{s.Enum, s.Bits} {
			for _, n := range list {
				if v, ok := constByName[n.Name]; ok && v != n.Val {
					panic("sysfuzz: constant " + n.Name + " has two values")
				}
				constByName[n.Name] = n.Val
			}
		}
	}
	add(setSigset)
	add(setEpollEvents)
	for _, s := range Syscalls {
		if syscallByName[s.Name] != nil {
			panic("sysfuzz: duplicate syscall " + s.Name)
		}
		syscallByName[s.Name] = s
		s.lenOf = make([]int, len(s.Args))
		for i := range s.lenOf {
			s.lenOf[i] = -1
		}
		for i, a := range s.Args {
			add(a.Set)
			if a.Kind == KindLen || a.Kind == KindLenPtr {
				if a.Of >= i {
					panic("sysfuzz: " + s.Name + ": length before its buffer")
				}
				s.lenOf[a.Of] = i
			}
		}
	}
	delete(constByName, "0x0")
}

// Lookup returns the description of the call named name ("socket$inet").
func Lookup(name string) *Syscall { return syscallByName[name] }
