//go:build linux && amd64

package sysfuzz

import (
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// openFds lists /proc/self/fd.
func openFds(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		fds = append(fds, e.Name())
	}
	return fds
}

// checkClean fails t if fds other than before are open or dir is not empty.
func checkClean(t testing.TB, before []string, dir string) {
	t.Helper()
	after := openFds(t)
	// Reading /proc/self/fd holds one fd of its own, the same number both times.
	if !slices.Equal(before, after) {
		t.Errorf("fds before %v, after %v", before, after)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Errorf("work dir not empty: %v", ents)
	}
}

type want struct {
	ret   int64 // -2: any success
	errno unix.Errno
	skip  bool
}

const anyRet = -2

func ok(ret int64) want      { return want{ret: ret} }
func fail(e unix.Errno) want { return want{errno: e} }

func TestExecute(t *testing.T) {
	dir := t.TempDir()
	e := &Executor{Dir: dir}
	// Warm up: the first os.ReadDir starts the runtime's poller, which
	// holds fds for good.
	if _, err := e.Run(&Program{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		text string
		want []want
	}{
		{"open-write-pread", openWritePread, []want{ok(anyRet), ok(5), ok(5), ok(0), ok(0), ok(0)}},
		{"pipe", pipeWriteRead, []want{ok(0), ok(3), ok(3), fail(unix.EAGAIN), ok(0), fail(unix.EPIPE)}},
		{"eventfd", eventfdProg, []want{ok(anyRet), ok(8), fail(unix.EAGAIN), ok(8), fail(unix.EINVAL)}},
		{"epoll", epollPipe, []want{ok(0), ok(anyRet), ok(0), ok(0), ok(1), ok(1)}},
		{"mmap", mmapMunmap, []want{ok(anyRet), ok(0x20), ok(0), ok(0), ok(0), ok(0), ok(0), fail(unix.EAGAIN), ok(0)}},
		{"unix", unixSockets, []want{ok(anyRet), ok(0), ok(0), ok(anyRet), ok(0), ok(anyRet), ok(4), ok(4), fail(unix.EAGAIN)}},
		{"stale", staleAndSkip, []want{ok(anyRet), ok(0), fail(unix.EBADF), fail(unix.EBADF), fail(unix.EINVAL), {skip: true},
			ok(0), ok(0), ok(anyRet), ok(anyRet), ok(anyRet), ok(anyRet), ok(anyRet)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			before := openFds(t)
			res, err := e.Run(p)
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, before, dir)
			if len(res.Calls) != len(tc.want) {
				t.Fatalf("%d results, want %d", len(res.Calls), len(tc.want))
			}
			for i, w := range tc.want {
				r := res.Calls[i]
				c := p.Calls[i].Meta.Name
				switch {
				case w.skip:
					if r.Ran {
						t.Errorf("call %d %s ran: %+v", i, c, r)
					}
				case !r.Ran:
					t.Errorf("call %d %s skipped", i, c)
				case r.Errno != w.errno:
					t.Errorf("call %d %s: errno %v, want %v", i, c, r.Errno, w.errno)
				case w.errno == 0 && w.ret != anyRet && int64(r.Ret) != w.ret:
					t.Errorf("call %d %s: returned %d, want %d", i, c, int64(r.Ret), w.ret)
				}
			}
		})
	}
}

func TestExecuteRejects(t *testing.T) {
	dir := t.TempDir()
	p, err := Parse(`r0 = openat(AT_FDCWD, "../f0", O_RDWR|O_CREAT, 0x180)`)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := (&Executor{Dir: dir}).Run(p); err == nil {
		t.Fatalf("ran an invalid program: %+v", res)
	}
	if _, err := os.Stat(dir + "/../f0"); err == nil {
		t.Fatal("created ../f0")
	}
}

// The privileged calls fail on a work-dir path whoever runs them (EPERM
// unprivileged, EINVAL for root: no file system type, no mount's root),
// and ptrace is not run as root.
func TestExecutePrivileged(t *testing.T) {
	dir := t.TempDir()
	e := &Executor{Dir: dir}
	p, err := Parse(`mkdirat(AT_FDCWD, "d0", 0x1ff)
mount("m0", "d0", 0x0, MS_REMOUNT, 0x0)
mount("m1", "d0", 0x0, MS_PRIVATE|MS_REC, 0x0)
mount("m2", "d0", 0x0, MS_NOSUID, 0x0)
mount("m3", "", 0x0, MS_SHARED, 0x0)
umount2("d0", MNT_DETACH)
ptrace(PTRACE_ATTACH, 0x1, 0x0, 0x0)
`)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(p)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Calls[0]; !r.Ran || r.Errno != 0 {
		t.Fatalf("mkdirat: %+v", r)
	}
	for i, r := range res.Calls[1:6] {
		if !r.Ran || (r.Errno != unix.EINVAL && r.Errno != unix.EPERM) {
			t.Errorf("call %d %s: %+v, want EINVAL or EPERM", i+1, p.Calls[i+1].Meta.Name, r)
		}
	}
	if r := res.Calls[6]; r.Ran == (os.Geteuid() == 0) {
		t.Errorf("ptrace as euid %d: ran %v", os.Geteuid(), r.Ran)
	}
}

// A bpf command that returns 0 on success is no resource: no later call
// can name its result as an fd (it would be fd 0, the executor's stdin),
// while bpf$fd's can. As root, BPF_PROG_GET_NEXT_ID succeeds where BPF is
// allowed, and fd 0 must still be open after the program.
func TestBpfResult(t *testing.T) {
	bad, err := Parse("r0 = bpf(BPF_PROG_GET_NEXT_ID, buf(0xc), 0xc)\nclose(r0)\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(bad); err == nil {
		t.Error("a close of bpf(BPF_PROG_GET_NEXT_ID)'s result is valid")
	}
	p, err := Parse("r0 = bpf$fd(BPF_MAP_CREATE, buf(0x4), 0x4)\nclose(r0)\nbpf(BPF_PROG_GET_NEXT_ID, buf(0xc), 0xc)\n")
	if err != nil {
		t.Fatal(err)
	}
	e := &Executor{Dir: t.TempDir()}
	res, err := e.Run(p)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Calls {
		if !r.Ran {
			t.Errorf("call %d did not run", i)
		}
	}
	t.Logf("BPF_PROG_GET_NEXT_ID: ret %d, errno %v", res.Calls[2].Ret, res.Calls[2].Errno)
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Errorf("fd 0 after the program: %v", err)
	}
}
