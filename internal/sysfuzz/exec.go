//go:build linux && amd64

package sysfuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrWorkDir wraps the errors of a work dir that cannot be prepared or
// emptied: unlike a rejected program, the executor cannot go on.
var ErrWorkDir = errors.New("work dir")

// Executor runs programs with Dir as their work dir. Dir must exist and
// be used by nothing else: Run empties it before and after every program.
type Executor struct {
	Dir string
}

// CallResult is what one call returned.
type CallResult struct {
	Ran   bool       // false: skipped, because the region it names was never mapped
	Ret   uint64     // the raw return value (^0 on error)
	Errno unix.Errno // 0 on success
}

// Result is what a program's calls returned, one entry per call.
type Result struct {
	Calls []CallResult
}

// Ran is the number of calls made.
func (r *Result) Ran() int {
	n := 0
	for _, c := range r.Calls {
		if c.Ran {
			n++
		}
	}
	return n
}

// Errors is the number of calls made that failed.
func (r *Result) Errors() int {
	n := 0
	for _, c := range r.Calls {
		if c.Ran && c.Errno != 0 {
			n++
		}
	}
	return n
}

// Run validates p and runs it on a locked OS thread of its own, which
// exits afterwards (taking the signal mask and name a program may have
// changed). It then closes every fd the program made, unmaps its regions
// and empties the work dir. An error means p was rejected or the work dir
// could not be prepared or emptied; failing calls are results, not errors.
func (e *Executor) Run(p *Program) (*Result, error) {
	if err := Validate(p); err != nil {
		return nil, fmt.Errorf("invalid program: %w", err)
	}
	dir, err := filepath.Abs(e.Dir)
	if err != nil {
		return nil, err
	}
	if err := emptyDir(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWorkDir, err)
	}
	type outcome struct {
		res *Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine.
		runtime.LockOSThread()
		var o outcome
		defer func() {
			if x := recover(); x != nil {
				o.err = fmt.Errorf("executor: %v", x)
			}
			ch <- o
		}()
		o.res, o.err = run(p, dir)
	}()
	o := <-ch
	if err := emptyDir(dir); err != nil && o.err == nil {
		o.err = fmt.Errorf("%w: %w", ErrWorkDir, err)
	}
	return o.res, o.err
}

// emptyDir removes everything in dir, making directories a program left
// unreadable readable first.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := os.Chmod(p, 0o700); err != nil {
				return err
			}
			if err := emptyDir(p); err != nil {
				return err
			}
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

type rtRegion struct {
	addr uintptr
	live []bool
}

type runner struct {
	dir    string
	dirfd  int
	owned  map[int]bool // fds the program holds now
	res    []CallResult
	outs   [][2]int64 // fds written by pipe2/socketpair, -1 if none
	region []*rtRegion
	root   bool // euid 0: ptrace is not run
	pin    runtime.Pinner
	keep   [][]byte // every buffer handed to the kernel
}

func run(p *Program, dir string) (*Result, error) {
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWorkDir, err)
	}
	defer unix.Close(dirfd)
	n := len(p.Calls)
	x := &runner{dir: dir, dirfd: dirfd, owned: map[int]bool{}, res: make([]CallResult, n),
		outs: make([][2]int64, n), region: make([]*rtRegion, n), root: unix.Geteuid() == 0}
	defer x.cleanup()
	for i, c := range p.Calls {
		x.call(i, c)
	}
	return &Result{Calls: x.res}, nil
}

func (x *runner) cleanup() {
	fds := make([]int, 0, len(x.owned))
	for fd := range x.owned {
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	for _, fd := range fds {
		unix.Close(fd)
	}
	x.owned = map[int]bool{}
	for _, g := range x.region {
		if g == nil {
			continue
		}
		for p := 0; p < len(g.live); {
			if !g.live[p] {
				p++
				continue
			}
			q := p
			for q < len(g.live) && g.live[q] {
				g.live[q] = false
				q++
			}
			unix.Syscall(unix.SYS_MUNMAP, g.addr+uintptr(p)*PageSize, uintptr(q-p)*PageSize, 0)
			p = q
		}
	}
	x.pin.Unpin()
	x.keep = nil
}

// alloc returns n bytes (at least 1) of pinned Go memory kept until the
// program ends.
func (x *runner) alloc(n uint64) []byte {
	b := make([]byte, max(n, 1))
	x.pin.Pin(&b[0])
	x.keep = append(x.keep, b)
	return b
}

func ptr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

var errSkip = errors.New("skip")

func (x *runner) call(i int, c *Call) {
	x.outs[i] = [2]int64{-1, -1}
	if c.Meta.NR == unix.SYS_PTRACE && x.root {
		return // root may trace pid 1: skipped (Ran stays false)
	}
	var a [6]uintptr
	var fds []byte
	for j := range c.Args {
		v, err := x.encode(c, j, &fds)
		if err != nil {
			return // skipped: Ran stays false
		}
		a[j] = v
	}
	r1, _, errno := unix.Syscall6(c.Meta.NR, a[0], a[1], a[2], a[3], a[4], a[5])
	runtime.KeepAlive(x.keep)
	x.res[i] = CallResult{Ran: true, Ret: uint64(r1), Errno: errno}
	m := c.Meta
	if m.Name == "close" {
		if errno != unix.EBADF {
			delete(x.owned, int(a[0]))
		}
		return
	}
	if errno != 0 {
		return
	}
	switch {
	case m.Name == "mmap":
		x.region[i] = &rtRegion{addr: r1, live: make([]bool, roundPage(c.Args[1].Val)/PageSize)}
		for k := range x.region[i].live {
			x.region[i].live[k] = true
		}
	case m.Name == "munmap":
		g := x.region[c.Args[0].Ref.Call]
		from := c.Args[0].Val / PageSize
		to := roundPage(c.Args[0].Val+c.Args[1].Val) / PageSize
		for p := from; p < to && p < uint64(len(g.live)); p++ {
			g.live[p] = false
		}
	case m.Ret&ResFd != 0 || m.ret != nil:
		// A new fd is never 0..2 (the executor keeps its standard
		// streams open); a call that returned one of those made no fd.
		if r1 > 2 {
			x.owned[int(r1)] = true
		}
	case m.Outs != 0 && fds != nil:
		for k := range 2 {
			fd := int32(binary.LittleEndian.Uint32(fds[4*k:]))
			if fd >= 0 {
				x.outs[i][k] = int64(fd)
				x.owned[int(fd)] = true
			}
		}
	}
}

func (x *runner) fd(r Ref) uintptr {
	v := int64(-1)
	if r.Slot < 0 {
		if res := x.res[r.Call]; res.Ran && res.Errno == 0 {
			v = int64(res.Ret)
		}
	} else if r.Slot < 2 {
		v = x.outs[r.Call][r.Slot]
	}
	switch {
	case v < 0:
		return ^uintptr(0)
	case x.owned[int(v)]:
		return uintptr(v)
	}
	return BadFD // closed since: never pass a number the program does not hold
}

// mem returns the address of a mem() argument after checking that every
// byte the kernel may touch is still mapped by the program.
func (x *runner) mem(c *Call, j int) (uintptr, error) {
	a := &c.Args[j]
	if a.Ref.Call < 0 || a.Ref.Call >= len(x.region) || x.region[a.Ref.Call] == nil {
		return 0, errSkip
	}
	g := x.region[a.Ref.Call]
	if a.Val > uint64(len(g.live))*PageSize {
		return 0, errSkip
	}
	n := used(c, j)
	if n > 0 {
		for p := a.Val / PageSize; p < roundPage(a.Val+n)/PageSize; p++ {
			if p >= uint64(len(g.live)) || !g.live[p] {
				return 0, errSkip
			}
		}
	}
	return g.addr + uintptr(a.Val), nil
}

func (x *runner) cstring(s string) uintptr {
	b := x.alloc(uint64(len(s)) + 1)
	copy(b, s)
	return ptr(b)
}

func (x *runner) encode(c *Call, j int, fds *[]byte) (uintptr, error) {
	t := &c.Meta.Args[j]
	a := &c.Args[j]
	switch a.Form {
	case FormNum:
		if t.Kind == KindFd && t.AtFdcwd && a.Val == u(unix.AT_FDCWD) {
			return uintptr(x.dirfd), nil // AT_FDCWD means the work dir
		}
		return uintptr(a.Val), nil
	case FormRef:
		return x.fd(a.Ref), nil
	case FormNil:
		return 0, nil
	case FormBuf:
		b := x.alloc(a.Val)
		copy(b, a.Data)
		return ptr(b), nil
	case FormMem:
		return x.mem(c, j)
	case FormOut:
		b := x.alloc(t.Size)
		if t.Slots > 0 {
			for k := range b {
				b[k] = 0xff // -1 until the kernel writes fds
			}
			*fds = b
		}
		return ptr(b), nil
	case FormLenPtr:
		b := x.alloc(4)
		if o := &c.Args[t.Of]; o.Form == FormBuf {
			binary.LittleEndian.PutUint32(b, uint32(o.Val))
		}
		return ptr(b), nil
	case FormStr:
		if t.Kind == KindPath && t.Abs {
			return x.cstring(x.dir + "/" + a.Str), nil
		}
		return x.cstring(a.Str), nil
	case FormStruct:
		return x.encodeStruct(a), nil
	}
	return 0, errSkip
}

func (x *runner) encodeStruct(a *Arg) uintptr {
	le := binary.LittleEndian
	switch a.Name {
	case "timespec", "itimerspec", "int", "sigset", "epev":
		b := x.alloc(32)
		switch a.Name {
		case "int":
			le.PutUint32(b, uint32(a.Vals[0]))
		case "epev": // packed on x86-64: u32 events, u64 data
			le.PutUint32(b, uint32(a.Vals[0]))
			le.PutUint64(b[4:], a.Vals[1])
		default:
			for k, v := range a.Vals {
				le.PutUint64(b[8*k:], v)
			}
		}
		return ptr(b)
	case "iov":
		b := x.alloc(16 * uint64(len(a.Elems)))
		for k, e := range a.Elems {
			eb := x.alloc(e.Val)
			copy(eb, e.Data)
			le.PutUint64(b[16*k:], uint64(ptr(eb)))
			le.PutUint64(b[16*k+8:], e.Val)
		}
		return ptr(b)
	}
	b := x.alloc(sockaddrSize)
	be := binary.BigEndian
	switch a.Name {
	case "inet":
		le.PutUint16(b, unix.AF_INET)
		be.PutUint16(b[2:], uint16(a.Vals[0]))
		copy(b[4:], []byte{127, 0, 0, 1})
	case "inet6":
		le.PutUint16(b, unix.AF_INET6)
		be.PutUint16(b[2:], uint16(a.Vals[0]))
		b[8+15] = 1 // ::1
	case "nl":
		le.PutUint16(b, unix.AF_NETLINK)
		le.PutUint32(b[8:], uint32(a.Vals[0]))
	case "unix":
		le.PutUint16(b, unix.AF_UNIX)
		// sockaddr_un paths resolve against the cwd, not a dirfd: name
		// the work dir by its path, or through the dirfd if too long.
		p := x.dir + "/" + a.Str
		if len(p) >= unixAddrLen-2 {
			p = "/proc/self/fd/" + strconv.Itoa(x.dirfd) + "/" + a.Str
		}
		copy(b[2:unixAddrLen-1], p)
	}
	return ptr(b)
}
