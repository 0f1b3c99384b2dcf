// Package sysfuzz generates and runs typed Linux x86-64 system call
// programs: a small, seeded, deterministic fuzzer meant to run unprivileged
// in a sandbox while the host kernel's coverage is measured from outside.
//
// # Contract
//
// Syscalls describes every call a program may make, each argument with a
// type (Kind): a number in a range, a constant, flags from a named set, a
// resource made by an earlier call (fds of kind file, dir, pipe, unix,
// inet, inet6, netlink, epoll, eventfd, timerfd, memfd, io_uring, bpf; or a
// memory region the program mapped), a buffer of at most MaxBuf bytes, a path in the work
// dir, or a small struct built in Go memory (sockaddr_in on 127.0.0.1,
// sockaddr_in6 on ::1, sockaddr_un in the work dir, sockaddr_nl,
// epoll_event, timespec, itimerspec, sigset, iovec, int). Generate draws a
// program from a math/rand/v2 source and Mutate changes one; NewStream(seed)
// gives the same program stream for the same seed everywhere. Every
// generated or mutated program passes Validate, and Executor.Run runs
// Validate before every program, since text may come from outside.
//
// # Safety rules (enforced by Validate)
//
//   - Only described calls: no kill, fork, clone, execve, reboot or module
//     calls exist to be named. The privileged calls that exist (the code
//     a sandbox's filter is there to keep out of reach) cannot take effect
//     beyond the program's thread: ptrace names pid 0 or 1 only (no
//     process of the fuzzer's user: root's init, or the fuzzer itself in a
//     pid namespace), never PTRACE_TRACEME, and is not run as root; mount
//     has a nil file system type and no MS_BIND or MS_MOVE, so even root
//     gets EINVAL on a work-dir path; unshare's namespaces are the
//     thread's, gone with it (an unprivileged task gets EPERM); add_key
//     writes to the thread keyring only; bpf gets EPERM where unprivileged
//     BPF is off (Debian's default), and only bpf$fd's commands (those that
//     return a new fd) make a resource, closed like any; an
//     io_uring ring is never mapped, so no operation is ever submitted.
//   - Paths are "", "." or one to three of f0..f7, d0..d3, s0..s3 joined by
//     "/": never absolute, never "..". AT_FDCWD means the work dir (the
//     executor passes an fd of it) and a dirfd is a directory the program
//     opened; with no call that makes links, nothing outside the work dir
//     can be named (mount and umount2, which take no dirfd, get the work
//     dir's absolute path joined with it). unix() addresses take exactly sizeof(sockaddr_un), so
//     the kernel never sees a truncated path.
//   - File descriptors are references to earlier calls or -1; at run time
//     the executor passes a referenced number only while the program holds
//     it (else BadFD), so a program can never touch an fd it did not make.
//   - Memory calls (munmap, mprotect, madvise) and mem() pointers name
//     pages of regions the program mapped earlier (anonymous, no MAP_FIXED,
//     at most MaxMap each and MaxMapped in all) and has not unmapped since;
//     every length fits the memory it measures, so the kernel writes only
//     into Go memory the executor allocated for the call or into the
//     program's own mappings.
//   - Nothing blocks: sockets, pipes, eventfds, timerfds and accepted
//     sockets are created non-blocking, F_SETFL keeps O_NONBLOCK, recvfrom
//     and sendto carry MSG_DONTWAIT, epoll_wait's timeout is 0, getrandom
//     has GRND_NONBLOCK, nanosleep and FUTEX_WAIT wait at most MaxSleepNs.
//     SO_LINGER (a blocking close) is not an option programs can set.
//   - rt_sigprocmask may only block signals neither faults nor the Go
//     runtime need; the program's thread exits after it anyway.
//   - inet()/inet6() ports are 0 or 20000..20003 on loopback.
//
// Executor.Run runs a program on a locked OS thread of its own with
// unix.Syscall6, keeps every buffer alive and pinned until the program
// ends, and afterwards closes every fd the program made, unmaps its
// regions, ends the thread and empties the work dir. A failing call
// (EFAULT, EBADF, ...) is a result, not an error.
//
// # Text format
//
// One call per line. A call that makes a resource is prefixed by its
// result, named by its index in the program; the fds pipe2 and socketpair
// write are rN.0 and rN.1:
//
//	r0 = openat(AT_FDCWD, "f1", O_RDWR|O_CREAT, 0x180)
//	write(r0, buf(0x5, "hello"), 0x5)
//	r2 = pipe2(&out, O_NONBLOCK)
//	r3 = mmap(0x0, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)
//	read(r2.0, mem(r3, 0x10), 0x100)
//	munmap(mem(r3, 0x0), 0x2000)
//
// Numbers are hex (-0x1 for small negatives), flags are names or numbers
// joined by |, strings are Go-quoted. Pointer arguments are nil; buf(N) or
// buf(N, "data") (N bytes of Go memory starting with data, the rest zero);
// mem(rN, off) (into the region mmap call N returned); &out (Go memory of
// the size the kernel writes); &len (an int32 holding the size of the
// buffer it measures); or a struct: timespec(sec, nsec), itimerspec(isec,
// insec, vsec, vnsec), epev(events, data), sigset(SIGUSR1|...), int(v),
// iov(buf(...), ...), inet(port), inet6(port), unix("s0"), nl(groups).
// Call names may carry a variant after $ (socket$inet, fcntl$setfl).
// Parse and Program.String round-trip exactly; Parse skips blank lines and
// lines starting with #.
//
// # Driver protocol
//
// `sysfuzz serve -dir DIR` reads programs on stdin, each followed by a
// blank line (or EOF), and writes one line per program to stdout:
//
//	done <id> <calls> <errors>
//
// where id counts programs from 0, calls is the number of calls made and
// errors the number of those that failed. A program that does not parse
// or validate is not run and reports "done <id> 0 -1", with the reason on
// stderr.
package sysfuzz
