//go:build linux && amd64

package sysfuzz

// Hand-written harmless programs, shared by the parser and executor tests.
var execPrograms = []string{
	openWritePread,
	pipeWriteRead,
	eventfdProg,
	epollPipe,
	mmapMunmap,
	unixSockets,
	staleAndSkip,
}

const openWritePread = `r0 = openat(AT_FDCWD, "f1", O_RDWR|O_CREAT, 0x180)
write(r0, buf(0x5, "hello"), 0x5)
pread64(r0, buf(0x10), 0x10, 0x0)
fstat(r0, &out)
close(r0)
newfstatat(AT_FDCWD, "f1", &out, 0x0)
`

const pipeWriteRead = `r0 = pipe2(&out, O_NONBLOCK|O_CLOEXEC)
write(r0.1, buf(0x3, "abc"), 0x3)
read(r0.0, buf(0x10), 0x10)
read(r0.0, buf(0x10), 0x10)
close(r0.0)
write(r0.1, buf(0x1, "x"), 0x1)
`

const eventfdProg = `r0 = eventfd2(0x3, EFD_NONBLOCK)
read(r0, buf(0x8), 0x8)
read(r0, buf(0x8), 0x8)
write(r0, buf(0x8, "\x05\x00\x00\x00\x00\x00\x00\x00"), 0x8)
read(r0, buf(0x4), 0x4)
`

const epollPipe = `r0 = pipe2(&out, O_NONBLOCK)
r1 = epoll_create1(EPOLL_CLOEXEC)
epoll_ctl(r1, EPOLL_CTL_ADD, r0.0, epev(EPOLLIN, 0x7))
epoll_wait(r1, buf(0x18), 0x2, 0x0)
write(r0.1, buf(0x1, "z"), 0x1)
epoll_wait(r1, buf(0x18), 0x2, 0x0)
`

const mmapMunmap = `r0 = mmap(0x0, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)
getrandom(mem(r0, 0x10), 0x20, GRND_NONBLOCK)
mprotect(mem(r0, 0x1000), 0x1000, PROT_READ)
madvise(mem(r0, 0x2000), 0x1000, MADV_DONTNEED)
futex$wake(mem(r0, 0x0), FUTEX_WAKE|FUTEX_PRIVATE_FLAG, 0x1, 0x0, 0x0, 0x0)
munmap(mem(r0, 0x0), 0x1000)
r6 = pipe2(&out, O_NONBLOCK)
read(r6.0, mem(r0, 0x2000), 0x1000)
munmap(mem(r0, 0x1000), 0x2000)
`

const unixSockets = `r0 = socket$unix(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0x0)
bind(r0, unix("s0"), 0x6e)
listen(r0, 0x2)
r3 = socket$unix(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0x0)
connect(r3, unix("s0"), 0x6e)
r5 = accept4(r0, buf(0x80), &len, SOCK_NONBLOCK)
sendto(r3, buf(0x4, "ping"), 0x4, MSG_DONTWAIT, nil, 0x0)
recvfrom(r5, buf(0x10), 0x10, MSG_DONTWAIT, nil, nil)
recvfrom(r5, buf(0x10), 0x10, MSG_DONTWAIT, nil, nil)
`

const staleAndSkip = `r0 = eventfd2(0x0, EFD_NONBLOCK)
close(r0)
read(r0, buf(0x8), 0x8)
close(r0)
r4 = mmap(0x0, 0x0, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -0x1, 0x0)
madvise(mem(r4, 0x0), 0x0, MADV_NORMAL)
mkdirat(AT_FDCWD, "d0", 0x0)
mkdirat(AT_FDCWD, "d1", 0x140)
r8 = openat(AT_FDCWD, "d1/f0", O_WRONLY|O_CREAT, 0x0)
r9 = openat(AT_FDCWD, ".", O_RDONLY|O_DIRECTORY, 0x0)
getdents64(r9, buf(0x400), 0x400)
r11 = dup3(r8, r9, O_CLOEXEC)
r12 = fcntl$dupfd(r11, F_DUPFD_CLOEXEC, 0x40)
`
