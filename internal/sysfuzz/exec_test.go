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
