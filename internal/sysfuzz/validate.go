//go:build linux && amd64

package sysfuzz

import (
	"errors"
	"fmt"
	"strings"
)

// ValidPath reports whether s is a path a program may name: "", ".", or one
// to three components joined by "/", each one of f0..f7, d0..d3, s0..s3.
// There is no way to name anything outside the work dir: no "/" at the
// start, no "..", and no call that makes symbolic links.
func ValidPath(s string) bool {
	if s == "" || s == "." {
		return true
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return false
	}
	for _, c := range parts {
		if len(c) != 2 {
			return false
		}
		switch c[0] {
		case 'f':
			if c[1] < '0' || c[1] > '7' {
				return false
			}
		case 'd', 's':
			if c[1] < '0' || c[1] > '3' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

type callRes struct{ ret, outs Res }

type region struct {
	live []bool // per page: still mapped
}

// state is what the calls of a program prefix leave behind, as far as
// it can be known without running them.
type state struct {
	kinds   []callRes
	regions []*region // per call; nil unless an mmap
	closed  map[Ref]bool
	mapped  uint64
	bufs    uint64
}

func newState() *state { return &state{closed: map[Ref]bool{}} }

func (s *state) refKind(r Ref) Res {
	if r.Call < 0 || r.Call >= len(s.kinds) {
		return 0
	}
	k := s.kinds[r.Call]
	switch {
	case r.Slot == -1:
		return k.ret
	case r.Slot == 0 || r.Slot == 1:
		return k.outs
	}
	return 0
}

func (s *state) region(r Ref) *region {
	if r.Slot != -1 || r.Call < 0 || r.Call >= len(s.regions) {
		return nil
	}
	return s.regions[r.Call]
}

// liveBytes is how many bytes from off on are mapped in a row.
func (g *region) liveBytes(off uint64) uint64 {
	p := off / PageSize
	if p >= uint64(len(g.live)) {
		return 0
	}
	n := uint64(0)
	for q := p; q < uint64(len(g.live)) && g.live[q]; q++ {
		n++
	}
	if n == 0 {
		return 0
	}
	return n*PageSize - off%PageSize
}

func roundPage(n uint64) uint64 { return (n + PageSize - 1) &^ (PageSize - 1) }

func (s *state) retKind(c *Call) Res {
	if c.Meta.ret == nil {
		return c.Meta.Ret
	}
	return c.Meta.ret(c, func(i int) Res {
		if i < len(c.Args) && c.Args[i].Form == FormRef {
			return s.refKind(c.Args[i].Ref)
		}
		return 0
	})
}

// apply records call c, the next one of the program.
func (s *state) apply(c *Call) {
	s.kinds = append(s.kinds, callRes{ret: s.retKind(c), outs: c.Meta.Outs})
	var reg *region
	for i := range c.Args {
		a := &c.Args[i]
		switch a.Form {
		case FormBuf:
			s.bufs += a.Val
		case FormOut:
			s.bufs += c.Meta.Args[i].Size
		case FormStruct:
			for _, e := range a.Elems {
				s.bufs += e.Val
			}
		}
	}
	switch c.Meta.Name {
	case "mmap":
		n := c.Args[1].Val
		if n <= MaxMap {
			reg = &region{live: make([]bool, roundPage(n)/PageSize)}
			for i := range reg.live {
				reg.live[i] = true
			}
			s.mapped += roundPage(n)
		} else {
			s.mapped += n
		}
	case "munmap":
		// Whether or not it will succeed, the pages are gone for the
		// rest of the program: nothing may touch them again.
		if g := s.region(c.Args[0].Ref); g != nil && c.Args[0].Form == FormMem {
			from := c.Args[0].Val / PageSize
			to := roundPage(c.Args[0].Val+c.Args[1].Val) / PageSize
			for p := from; p < to && p < uint64(len(g.live)); p++ {
				g.live[p] = false
			}
		}
	case "close":
		if c.Args[0].Form == FormRef {
			s.closed[c.Args[0].Ref] = true
		}
	}
	s.regions = append(s.regions, reg)
}

// Validate checks that p is safe to run: every call is described, every
// argument has its type, references name earlier calls that made a
// resource of a fitting kind, paths stay in the work dir, memory calls
// name only pages of regions the program mapped and has not unmapped,
// every length fits the memory it measures, no call can block beyond
// MaxSleepNs, and the program stays within MaxCalls, MaxBufTotal and
// MaxMapped.
func Validate(p *Program) error {
	if p == nil {
		return errors.New("nil program")
	}
	if len(p.Calls) > MaxCalls {
		return fmt.Errorf("%d calls, more than %d", len(p.Calls), MaxCalls)
	}
	s := newState()
	for i, c := range p.Calls {
		if c == nil || c.Meta == nil || syscallByName[c.Meta.Name] != c.Meta {
			return fmt.Errorf("call %d: not a described call", i)
		}
		if err := s.check(c, i); err != nil {
			return fmt.Errorf("call %d: %s: %w", i, c.Meta.Name, err)
		}
		s.apply(c)
		if s.bufs > MaxBufTotal {
			return fmt.Errorf("call %d: buffers exceed %d bytes", i, MaxBufTotal)
		}
		if s.mapped > MaxMapped {
			return fmt.Errorf("call %d: mappings exceed %d bytes", i, MaxMapped)
		}
	}
	return nil
}

func (s *state) check(c *Call, idx int) error {
	m := c.Meta
	if len(c.Args) != len(m.Args) {
		return fmt.Errorf("%d arguments, want %d", len(c.Args), len(m.Args))
	}
	for i := range c.Args {
		if err := s.checkArg(c, idx, i); err != nil {
			return fmt.Errorf("%s: %w", m.Args[i].Name, err)
		}
	}
	return nil
}

var errForm = errors.New("wrong form")

// used is how many bytes the kernel may touch through argument i (a
// KindBuf, KindOut or KindMem).
func used(c *Call, i int) uint64 {
	t := &c.Meta.Args[i]
	if t.Kind == KindOut {
		return t.Size
	}
	if l := c.Meta.lenOf[i]; l >= 0 && c.Meta.Args[l].Kind == KindLen {
		n := c.Args[l].Val
		unit := max(c.Meta.Args[l].Unit, 1)
		if n > MaxMap/unit {
			return MaxMap + 1
		}
		if t.Kind == KindMem {
			return roundPage(n)
		}
		return max(n*unit, t.Size)
	}
	return t.Size
}

func (s *state) checkMem(c *Call, a *Arg, i int) error {
	g := s.region(a.Ref)
	if g == nil || a.Ref.Call >= len(s.kinds) {
		return fmt.Errorf("%s is not a region mapped earlier", a.Ref)
	}
	if a.Val > uint64(len(g.live))*PageSize {
		return fmt.Errorf("offset %#x beyond %s", a.Val, a.Ref)
	}
	if c.Meta.Args[i].Kind == KindMem && a.Val%PageSize != 0 {
		return errors.New("offset not page aligned")
	}
	if n := used(c, i); n > g.liveBytes(a.Val) {
		return fmt.Errorf("%#x bytes at offset %#x of %s are not all mapped", n, a.Val, a.Ref)
	}
	return nil
}

func (s *state) checkArg(c *Call, idx, i int) error {
	t := &c.Meta.Args[i]
	a := &c.Args[i]
	switch t.Kind {
	case KindInt:
		if a.Form != FormNum {
			return errForm
		}
		if v := int64(a.Val); v < t.Min || v > t.Max {
			return fmt.Errorf("%s out of [%d, %d]", fmtNum(a.Val), t.Min, t.Max)
		}
	case KindConst:
		if a.Form != FormNum || a.Val != t.Val {
			return fmt.Errorf("must be %s", fmtFlags(t.Set, t.Val))
		}
	case KindFlags:
		if a.Form != FormNum || !t.Set.Valid(a.Val) {
			return fmt.Errorf("%s is not a value of the set (required: %s)", fmtNum(a.Val), fmtNum(t.Set.Req))
		}
	case KindFd:
		switch a.Form {
		case FormNum:
			if a.Val != u(-1) && !(t.AtFdcwd && a.Val == u(-100)) {
				return errors.New("a literal fd must be -1 (or AT_FDCWD for a dirfd)")
			}
		case FormRef:
			if a.Ref.Call >= idx {
				return fmt.Errorf("%s is not an earlier call", a.Ref)
			}
			k := s.refKind(a.Ref)
			if k&ResFd == 0 || k&t.Res == 0 {
				return fmt.Errorf("%s is not a %s", a.Ref, t.Res)
			}
		default:
			return errForm
		}
	case KindPath:
		if a.Form != FormStr || !ValidPath(a.Str) {
			return fmt.Errorf("path %q is not a work dir name", a.Str)
		}
	case KindString:
		if a.Form != FormStr || len(a.Str) > 64 || strings.IndexByte(a.Str, 0) >= 0 {
			return errors.New("bad string")
		}
	case KindBuf:
		switch a.Form {
		case FormNil:
		case FormBuf:
			if a.Val > MaxBuf || a.Val < t.Size || uint64(len(a.Data)) > a.Val {
				return fmt.Errorf("buffer size %s out of [%d, %d] or shorter than its data", fmtNum(a.Val), t.Size, MaxBuf)
			}
			if l := c.Meta.lenOf[i]; l >= 0 && c.Meta.Args[l].Kind == KindLen {
				if n := c.Args[l].Val; n > a.Val/max(c.Meta.Args[l].Unit, 1) {
					return fmt.Errorf("length %s exceeds the buffer", fmtNum(n))
				}
			}
		case FormMem:
			if t.GoOnly {
				return errors.New("must be Go memory")
			}
			if l := c.Meta.lenOf[i]; l >= 0 && c.Args[l].Val > MaxBuf {
				return errors.New("length exceeds the limit")
			}
			return s.checkMem(c, a, i)
		default:
			return errForm
		}
	case KindLen:
		if a.Form != FormNum {
			return errForm
		}
		b := &c.Args[t.Of]
		switch bt := &c.Meta.Args[t.Of]; bt.Kind {
		case KindBuf:
			if b.Form == FormNil && a.Val > MaxBuf {
				return errors.New("length exceeds the limit")
			}
			// FormBuf, FormMem: checked with the buffer
		case KindMem:
			if a.Val > MaxMap {
				return errors.New("length exceeds the limit")
			}
		case KindStruct:
			lim := uint64(MaxBuf)
			if b.Form == FormStruct {
				switch b.Name {
				case "iov":
					lim = uint64(len(b.Elems))
				case "int":
					lim = 4
				}
			}
			if a.Val > lim {
				return fmt.Errorf("length %s exceeds %d", fmtNum(a.Val), lim)
			}
		case KindAddr:
			if b.Form == FormStruct && b.Name == "unix" {
				if a.Val != unixAddrLen {
					return fmt.Errorf("a unix() address takes length %#x", unixAddrLen)
				}
			} else if a.Val > sockaddrSize {
				return fmt.Errorf("length exceeds %d", sockaddrSize)
			}
		}
	case KindOut:
		switch a.Form {
		case FormOut:
		case FormNil:
			if !t.Opt {
				return errors.New("must not be nil")
			}
		case FormMem:
			if t.Slots > 0 {
				return errors.New("must be &out")
			}
			return s.checkMem(c, a, i)
		default:
			return errForm
		}
	case KindLenPtr:
		if a.Form != FormLenPtr && a.Form != FormNil {
			return errForm
		}
		if f := c.Args[t.Of].Form; f != FormBuf && f != FormNil {
			return errors.New("measures memory that is not a buf() or nil")
		}
	case KindMem:
		if a.Form != FormMem {
			return errForm
		}
		return s.checkMem(c, a, i)
	case KindStruct:
		if a.Form == FormNil {
			if !t.Opt {
				return errors.New("must not be nil")
			}
			return nil
		}
		if a.Form != FormStruct || a.Name != t.Struct {
			return fmt.Errorf("must be %s()", t.Struct)
		}
		return checkStruct(t, a)
	case KindAddr:
		switch {
		case a.Form == FormNil:
		case a.Form == FormStruct && isAddr(a.Name):
			return checkStruct(t, a)
		default:
			return errForm
		}
	default:
		return errors.New("unknown argument kind")
	}
	return nil
}

func checkStruct(t *ArgType, a *Arg) error {
	sd := structs[a.Name]
	switch {
	case sd == nil:
		return errForm
	case sd.str:
		if a.Vals != nil || a.Elems != nil {
			return errForm
		}
	case sd.elems:
		if len(a.Elems) > maxIov || a.Vals != nil {
			return fmt.Errorf("more than %d iovecs", maxIov)
		}
		for _, e := range a.Elems {
			if e.Form != FormBuf || e.Val > MaxBuf || uint64(len(e.Data)) > e.Val {
				return errors.New("bad iovec buffer")
			}
		}
	default:
		if len(a.Vals) != len(sd.fields) || a.Elems != nil {
			return errForm
		}
		for i, f := range sd.fields {
			if f != nil && !f.Valid(a.Vals[i]) {
				return fmt.Errorf("%s is not a value of the set", fmtNum(a.Vals[i]))
			}
		}
	}
	switch a.Name {
	case "timespec":
		if t.MaxNs <= 0 || a.Vals[0] != 0 || a.Vals[1] > uint64(t.MaxNs) {
			return fmt.Errorf("timeout longer than %d ns", t.MaxNs)
		}
	case "int":
		if v := a.Vals[0]; v > 0xffffffff && int64(v) < -0x80000000 {
			return errors.New("not a 32-bit value")
		}
	case "inet", "inet6":
		if v := a.Vals[0]; v != 0 && (v < portBase || v >= portBase+portCount) {
			return fmt.Errorf("port must be 0 or %d..%d", portBase, portBase+portCount-1)
		}
	case "nl":
		if a.Vals[0] > 0xffffffff {
			return errors.New("not a 32-bit value")
		}
	case "unix":
		if a.Str == "" || a.Str == "." || !ValidPath(a.Str) {
			return fmt.Errorf("path %q is not a work dir name", a.Str)
		}
	}
	return nil
}
