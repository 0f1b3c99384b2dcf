//go:build linux && amd64

package sysfuzz

import (
	"math/rand/v2"
	"strconv"

	"golang.org/x/sys/unix"
)

// DefaultCalls is the program length the sysfuzz command and the lab test
// use.
const DefaultCalls = 20

// NewRand returns the generator's random source for seed: a PCG, so that
// one seed gives one program stream on every machine and Go release.
func NewRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x68617073636f7065))
}

// gen builds calls into p at pos, knowing the state s of p.Calls[:pos].
type gen struct {
	r     *rand.Rand
	p     *Program
	s     *state
	pos   int
	depth int
}

// genAt returns a generator that inserts into p at pos.
func genAt(r *rand.Rand, p *Program, pos int) *gen {
	g := &gen{r: r, p: p, s: newState()}
	for _, c := range p.Calls[:pos] {
		g.s.apply(c)
	}
	g.pos = pos
	return g
}

// Generate returns a program of n calls (at most MaxCalls) drawn from r.
// The same source state gives the same program. Arguments name the
// results of earlier calls, making them first where none fits, and only
// rarely an invalid value (-1, a closed fd).
func Generate(r *rand.Rand, n int) *Program {
	n = min(max(n, 0), MaxCalls)
	g := genAt(r, &Program{}, 0)
	for len(g.p.Calls) < n {
		g.addCall(pickSyscall(r), 0)
	}
	g.p.Calls = g.p.Calls[:n] // dropping the tail breaks no reference
	return g.p
}

// insertAt inserts c at pos, renumbering references to later calls.
func (p *Program) insertAt(pos int, c *Call) {
	p.Calls = append(p.Calls, nil)
	copy(p.Calls[pos+1:], p.Calls[pos:])
	p.Calls[pos] = c
	for _, d := range p.Calls[pos+1:] {
		for i := range d.Args {
			if a := &d.Args[i]; (a.Form == FormRef || a.Form == FormMem) && a.Ref.Call >= pos {
				a.Ref.Call++
			}
		}
	}
}

// removeAt removes call pos; references to it become dangling (Call -1).
func (p *Program) removeAt(pos int) {
	p.Calls = append(p.Calls[:pos], p.Calls[pos+1:]...)
	for _, d := range p.Calls[pos:] {
		for i := range d.Args {
			if a := &d.Args[i]; a.Form == FormRef || a.Form == FormMem {
				switch {
				case a.Ref.Call == pos:
					a.Ref.Call = -1
				case a.Ref.Call > pos:
					a.Ref.Call--
				}
			}
		}
	}
}

func (g *gen) insert(c *Call) {
	g.p.insertAt(g.pos, c)
	g.s.apply(c)
	g.pos++
}

// addCall generates a call of m at g.pos (after any calls it needs) and
// reports whether it could. want, if not 0, is the resource kind the call
// is made for.
func (g *gen) addCall(m *Syscall, want Res) bool {
	c := &Call{Meta: m, Args: make([]Arg, len(m.Args))}
	for i := range m.Args {
		a, ok := g.genArg(c, i)
		if !ok {
			return false
		}
		c.Args[i] = a
	}
	if m.Name == "mmap" {
		left := (MaxMapped - min(g.s.mapped, MaxMapped)) &^ (PageSize - 1)
		if want != 0 && c.Args[1].Val == 0 {
			c.Args[1].Val = (1 + g.r.Uint64N(16)) * PageSize
		}
		c.Args[1].Val = min(c.Args[1].Val, left)
	}
	if m.Name == "openat" && want != 0 {
		fl := c.Args[2].Val &^ (unix.O_TMPFILE | unix.O_PATH)
		if want&ResFile == 0 {
			c.Args[2].Val = fl&^unix.O_CREAT | unix.O_DIRECTORY
			c.Args[1].Str = g.dirPath()
		} else {
			c.Args[2].Val = fl&^unix.O_DIRECTORY | unix.O_CREAT
		}
	}
	g.insert(c)
	return true
}

var producers, consumers = func() (ps, cs []*Syscall) {
	for _, s := range Syscalls {
		if s.Ret != 0 || s.Outs != 0 || s.Name == "openat" {
			ps = append(ps, s)
		} else {
			cs = append(cs, s)
		}
	}
	return ps, cs
}()

// pickSyscall picks the next call to add: mostly one that uses resources,
// which makes what it needs itself.
func pickSyscall(r *rand.Rand) *Syscall {
	if r.IntN(4) == 0 {
		return producers[r.IntN(len(producers))]
	}
	return consumers[r.IntN(len(consumers))]
}

// produce adds a call that makes a resource of a kind in want and returns
// a reference to it.
func (g *gen) produce(want Res) (Ref, bool) {
	if g.depth >= 3 {
		return Ref{}, false
	}
	var cands []*Syscall
	for _, s := range producers {
		if (s.Ret|s.Outs)&want != 0 || s.Name == "openat" && want&(ResFile|ResDir) != 0 {
			cands = append(cands, s)
		}
	}
	if len(cands) == 0 {
		return Ref{}, false
	}
	m := cands[g.r.IntN(len(cands))]
	g.depth++
	ok := g.addCall(m, want)
	g.depth--
	if !ok {
		return Ref{}, false
	}
	ref := Ref{Call: g.pos - 1, Slot: -1}
	if m.Outs != 0 {
		ref.Slot = g.r.IntN(2)
	}
	if g.s.refKind(ref)&want == 0 {
		return Ref{}, false
	}
	return ref, true
}

func num(v uint64) Arg { return Arg{Form: FormNum, Val: v} }

func (g *gen) chance(n int) bool { return g.r.IntN(n) == 0 }

func (g *gen) genArg(c *Call, i int) (Arg, bool) {
	t := &c.Meta.Args[i]
	switch t.Kind {
	case KindInt:
		return num(g.randInt(t.Min, t.Max)), true
	case KindConst:
		return num(t.Val), true
	case KindFlags:
		return num(g.randFlags(t.Set)), true
	case KindFd:
		return g.genFd(t), true
	case KindPath:
		return Arg{Form: FormStr, Str: g.randPath()}, true
	case KindString:
		if len(t.Strs) > 0 && !g.chance(10) {
			return Arg{Form: FormStr, Str: t.Strs[g.r.IntN(len(t.Strs))]}, true
		}
		return Arg{Form: FormStr, Str: "m" + strconv.Itoa(g.r.IntN(4))}, true
	case KindBuf:
		return g.genBuf(t), true
	case KindLen:
		return num(g.genLen(c, t)), true
	case KindOut:
		if t.Opt && g.chance(40) {
			return Arg{Form: FormNil}, true
		}
		if t.Slots == 0 && g.chance(10) {
			if a, ok := g.memBuf(t.Size); ok {
				return a, true
			}
		}
		return Arg{Form: FormOut}, true
	case KindLenPtr:
		if g.chance(40) {
			return Arg{Form: FormNil}, true
		}
		return Arg{Form: FormLenPtr}, true
	case KindMem:
		return g.genMem()
	case KindStruct:
		if t.Opt && g.chance(30) {
			return Arg{Form: FormNil}, true
		}
		return g.genStruct(t), true
	case KindAddr:
		if g.chance(30) {
			return Arg{Form: FormNil}, true
		}
		var k Res
		if c.Args[0].Form == FormRef {
			k = g.s.refKind(c.Args[0].Ref)
		}
		return g.genAddr(k), true
	}
	panic("sysfuzz: unknown argument kind")
}

func (g *gen) randInt(lo, hi int64) uint64 {
	var v int64
	switch r := g.r.IntN(10); {
	case r == 0:
		v = lo
	case r == 1:
		v = hi
	case r < 5:
		v = g.r.Int64N(17)
	case r < 6:
		v = g.r.Int64N(64) * PageSize
	default:
		v = lo + int64(g.r.Uint64N(uint64(hi-lo)+1))
	}
	return uint64(min(max(v, lo), hi))
}

func (g *gen) randFlags(s *FlagSet) uint64 {
	var v uint64
	if len(s.Enum) > 0 {
		v = s.Enum[g.r.IntN(len(s.Enum))].Val
	}
	for _, b := range s.Bits {
		if g.chance(4) {
			v |= b.Val
		}
	}
	return v | s.Req
}

// resources lists the references to resources of a kind in want, open
// ones first.
func (g *gen) resources(want Res) (open, closed []Ref) {
	for i := range g.s.kinds {
		for _, r := range []Ref{{i, -1}, {i, 0}, {i, 1}} {
			if kk := g.s.refKind(r); kk&want != 0 && kk&ResFd != 0 {
				if g.s.closed[r] {
					closed = append(closed, r)
				} else {
					open = append(open, r)
				}
			}
		}
	}
	return open, closed
}

func (g *gen) genFd(t *ArgType) Arg {
	if t.AtFdcwd && !g.chance(4) {
		return num(u(-100))
	}
	open, closed := g.resources(t.Res)
	r := g.r.IntN(100)
	switch {
	case r < 2:
		return num(u(-1))
	case r < 4 && len(closed) > 0:
		return Arg{Form: FormRef, Ref: closed[g.r.IntN(len(closed))]}
	case len(open) > 0 && (r < 80 || g.depth > 0):
		return Arg{Form: FormRef, Ref: open[g.r.IntN(len(open))]}
	}
	if ref, ok := g.produce(t.Res); ok {
		return Arg{Form: FormRef, Ref: ref}
	}
	if t.AtFdcwd {
		return num(u(-100))
	}
	if open, _ = g.resources(t.Res); len(open) > 0 {
		return Arg{Form: FormRef, Ref: open[g.r.IntN(len(open))]}
	}
	return num(u(-1))
}

func (g *gen) randPath() string {
	switch r := g.r.IntN(100); {
	case r < 2:
		return ""
	case r < 5:
		return "."
	}
	p := ""
	depth := 1
	if g.chance(4) {
		depth = 2 + g.r.IntN(2)
	}
	for i := 1; i < depth; i++ {
		p += "d" + strconv.Itoa(g.r.IntN(4)) + "/"
	}
	switch r := g.r.IntN(10); {
	case r < 6:
		return p + "f" + strconv.Itoa(g.r.IntN(8))
	case r < 9:
		return p + "d" + strconv.Itoa(g.r.IntN(4))
	}
	return p + "s" + strconv.Itoa(g.r.IntN(4))
}

func (g *gen) dirPath() string {
	if g.chance(2) {
		return "."
	}
	return "d" + strconv.Itoa(g.r.IntN(4))
}

func (g *gen) randSize(lo uint64) uint64 {
	var n uint64
	switch r := g.r.IntN(100); {
	case r < 4:
		n = 0
	case r < 50:
		n = 1 + g.r.Uint64N(64)
	case r < 88:
		n = 65 + g.r.Uint64N(4096-64)
	default:
		n = 4097 + g.r.Uint64N(MaxBuf-4096)
	}
	if budget := (MaxBufTotal - min(g.s.bufs, MaxBufTotal)) / 16; n > budget {
		n = budget
	}
	return max(n, lo)
}

func (g *gen) randData(n uint64) []byte {
	if n == 0 || g.chance(8) {
		return nil
	}
	b := make([]byte, min(n, 1+g.r.Uint64N(32)))
	if g.chance(2) {
		for i := range b {
			b[i] = 'a' + byte(g.r.IntN(26))
		}
		return b
	}
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	return b
}

func (g *gen) genBuf(t *ArgType) Arg {
	if g.chance(50) {
		return Arg{Form: FormNil}
	}
	if !t.GoOnly && g.chance(8) {
		if a, ok := g.memBuf(max(t.Size, 1)); ok {
			return a
		}
	}
	n := g.randSize(t.Size)
	a := Arg{Form: FormBuf, Val: n}
	if !t.Out {
		a.Data = g.randData(n)
	}
	return a
}

// liveRegions lists the mmap calls with pages still mapped.
func (g *gen) liveRegions() []int {
	var rs []int
	for i, reg := range g.s.regions {
		if reg != nil && reg.anyLive() {
			rs = append(rs, i)
		}
	}
	return rs
}

func (r *region) anyLive() bool {
	for _, l := range r.live {
		if l {
			return true
		}
	}
	return false
}

// livePage picks a mapped page of region i.
func (g *gen) livePage(i int) uint64 {
	reg := g.s.regions[i]
	var ps []uint64
	for p, l := range reg.live {
		if l {
			ps = append(ps, uint64(p))
		}
	}
	return ps[g.r.IntN(len(ps))]
}

// memBuf picks need mapped bytes in a region, if the program has them.
func (g *gen) memBuf(need uint64) (Arg, bool) {
	rs := g.liveRegions()
	if len(rs) == 0 {
		return Arg{}, false
	}
	i := rs[g.r.IntN(len(rs))]
	off := g.livePage(i) * PageSize
	if !g.chance(3) {
		off += 4 * g.r.Uint64N(PageSize/4)
	}
	if g.s.regions[i].liveBytes(off) < need {
		return Arg{}, false
	}
	return Arg{Form: FormMem, Ref: Ref{Call: i, Slot: -1}, Val: off}, true
}

func (g *gen) genMem() (Arg, bool) {
	rs := g.liveRegions()
	if len(rs) == 0 || g.chance(10) && g.depth == 0 {
		g.depth++
		ok := g.addCall(Lookup("mmap"), ResRegion)
		g.depth--
		if ok {
			if reg := g.s.regions[g.pos-1]; reg != nil && reg.anyLive() {
				rs = []int{g.pos - 1}
			}
		}
	}
	if len(rs) == 0 {
		return Arg{}, false
	}
	i := rs[g.r.IntN(len(rs))]
	return Arg{Form: FormMem, Ref: Ref{Call: i, Slot: -1}, Val: g.livePage(i) * PageSize}, true
}

// capacity is how many units argument j of c can take.
func (g *gen) capacity(c *Call, j int, unit uint64) uint64 {
	a := &c.Args[j]
	switch a.Form {
	case FormBuf:
		return a.Val / unit
	case FormNil:
		return g.r.Uint64N(65)
	case FormMem:
		reg := g.s.region(a.Ref)
		if reg == nil {
			return 0
		}
		n := reg.liveBytes(a.Val)
		if c.Meta.Args[j].Kind != KindMem {
			n = min(n, MaxBuf)
		}
		return n / unit
	case FormStruct:
		switch a.Name {
		case "iov":
			return uint64(len(a.Elems))
		case "int":
			return 4
		case "unix":
			return unixAddrLen
		case "inet":
			return 16
		case "inet6":
			return 28
		case "nl":
			return 12
		}
	}
	return 0
}

func (g *gen) genLen(c *Call, t *ArgType) uint64 {
	unit := max(t.Unit, 1)
	n := g.capacity(c, t.Of, unit)
	b := &c.Args[t.Of]
	if b.Form == FormStruct && b.Name == "unix" {
		return unixAddrLen
	}
	if c.Meta.Args[t.Of].Kind == KindMem {
		// Whole pages, or a length the kernel rounds up to them.
		pages := n / PageSize
		if pages == 0 {
			return PageSize
		}
		switch r := g.r.IntN(20); {
		case r == 0:
			return 0
		case r < 4:
			return (1+g.r.Uint64N(pages))*PageSize - g.r.Uint64N(PageSize)
		case r < 12:
			return PageSize
		}
		return (1 + g.r.Uint64N(pages)) * PageSize
	}
	switch r := g.r.IntN(20); {
	case r == 0:
		return 0
	case r < 4:
		return g.r.Uint64N(n + 1)
	}
	return n
}

func (g *gen) genStruct(t *ArgType) Arg {
	a := Arg{Form: FormStruct, Name: t.Struct}
	switch t.Struct {
	case "timespec":
		ns := []uint64{0, 1, 1000, g.r.Uint64N(uint64(t.MaxNs) + 1), uint64(t.MaxNs)}
		a.Vals = []uint64{0, ns[g.r.IntN(len(ns))]}
	case "itimerspec":
		ns := []uint64{0, 0, 1, 1000, 1000000, 999999999, 1000000000}
		a.Vals = []uint64{0, ns[g.r.IntN(len(ns))], g.r.Uint64N(2), ns[g.r.IntN(len(ns))]}
		if g.chance(2) {
			a.Vals[1] = 0
		}
	case "epev":
		a.Vals = []uint64{g.randFlags(setEpollEvents), g.r.Uint64N(16)}
	case "sigset":
		a.Vals = []uint64{g.randFlags(setSigset)}
	case "int":
		vs := []uint64{0, 1, 1, 2, u(-1), 0x7fffffff, 64, 4096, g.r.Uint64N(1 << 16)}
		a.Vals = []uint64{vs[g.r.IntN(len(vs))]}
	case "iov":
		for range 1 + g.r.IntN(4) {
			n := min(g.randSize(0), 4096)
			e := Arg{Form: FormBuf, Val: n}
			if !t.Out {
				e.Data = g.randData(n)
			}
			a.Elems = append(a.Elems, e)
		}
	default:
		panic("sysfuzz: unknown struct " + t.Struct)
	}
	return a
}

func (g *gen) genAddr(k Res) Arg {
	if k&ResSocket == 0 || k == ResFd || g.chance(20) {
		k = []Res{ResUnix, ResInet, ResInet6, ResNetlink}[g.r.IntN(4)]
	}
	port := uint64(0)
	if !g.chance(4) {
		port = portBase + g.r.Uint64N(portCount)
	}
	switch {
	case k&ResUnix != 0:
		p := "s" + strconv.Itoa(g.r.IntN(4))
		if g.chance(4) {
			p = "d" + strconv.Itoa(g.r.IntN(4)) + "/" + p
		}
		return Arg{Form: FormStruct, Name: "unix", Str: p}
	case k&ResInet != 0:
		return Arg{Form: FormStruct, Name: "inet", Vals: []uint64{port}}
	case k&ResInet6 != 0:
		return Arg{Form: FormStruct, Name: "inet6", Vals: []uint64{port}}
	}
	groups := uint64(0)
	if g.chance(3) {
		groups = 1 << g.r.IntN(8)
	}
	return Arg{Form: FormStruct, Name: "nl", Vals: []uint64{groups}}
}

// Mutate returns a changed copy of p: a call inserted, removed, or one
// argument changed, or a generated sequence spliced in. The result
// passes Validate; p is not modified.
func Mutate(r *rand.Rand, p *Program) *Program {
	text := p.String()
	for range 16 {
		q := p.Clone()
		switch op := r.IntN(10); {
		case op < 3 && len(q.Calls) < MaxCalls || len(q.Calls) == 0:
			g := genAt(r, q, r.IntN(len(q.Calls)+1))
			g.addCall(pickSyscall(r), 0)
		case op < 5 && len(q.Calls) > 1:
			q.removeAt(r.IntN(len(q.Calls)))
			q = repair(r, q)
		case op < 9:
			if !changeArg(r, q) {
				continue
			}
		default:
			q = Splice(r, q, Generate(r, 1+r.IntN(8)))
		}
		if len(q.Calls) > MaxCalls {
			q.Calls = q.Calls[:MaxCalls]
		}
		if Validate(q) == nil && q.String() != text {
			return q
		}
	}
	return p.Clone()
}

// Splice returns p with the calls of q inserted at a random place
// (references inside q kept). The result may fail Validate (too much
// memory); Mutate retries then.
func Splice(r *rand.Rand, p, q *Program) *Program {
	p = p.Clone()
	pos := r.IntN(len(p.Calls) + 1)
	for k, c := range q.Calls {
		c = c.clone()
		for i := range c.Args {
			if a := &c.Args[i]; a.Form == FormRef || a.Form == FormMem {
				a.Ref.Call += pos
			}
		}
		p.insertAt(pos+k, c)
	}
	return p
}

func changeArg(r *rand.Rand, p *Program) bool {
	var cands []int
	for i, c := range p.Calls {
		for _, t := range c.Meta.Args {
			if t.Kind != KindConst {
				cands = append(cands, i)
				break
			}
		}
	}
	if len(cands) == 0 {
		return false
	}
	c := p.Calls[cands[r.IntN(len(cands))]]
	var args []int
	for j, t := range c.Meta.Args {
		if t.Kind != KindConst {
			args = append(args, j)
		}
	}
	j := args[r.IntN(len(args))]
	pos := 0
	for p.Calls[pos] != c {
		pos++
	}
	g := genAt(r, p, pos)
	a, ok := g.genArg(c, j)
	if !ok {
		return false
	}
	c.Args[j] = a
	if l := c.Meta.lenOf[j]; l >= 0 && c.Meta.Args[l].Kind == KindLen {
		c.Args[l] = num(g.genLen(c, &c.Meta.Args[l]))
	}
	return true
}

// repair regenerates the arguments that name a removed call; a call that
// cannot be repaired is removed too.
func repair(r *rand.Rand, p *Program) *Program {
	g := genAt(r, p, 0)
	for g.pos < len(p.Calls) {
		c := p.Calls[g.pos]
		ok := true
		for j := range c.Args {
			a := &c.Args[j]
			if (a.Form == FormRef || a.Form == FormMem) && a.Ref.Call < 0 {
				na, good := g.genArg(c, j)
				if !good {
					ok = false
					break
				}
				c.Args[j] = na
				if l := c.Meta.lenOf[j]; l >= 0 && c.Meta.Args[l].Kind == KindLen {
					c.Args[l] = num(g.genLen(c, &c.Meta.Args[l]))
				}
			}
		}
		if !ok {
			p.removeAt(g.pos)
			continue
		}
		g.s.apply(c)
		g.pos++
	}
	return p
}

// Stream is a deterministic stream of programs for a driver without
// feedback: fresh ones and mutations of recent ones.
type Stream struct {
	r     *rand.Rand
	calls int
	pool  []*Program
}

// NewStream returns the program stream for seed, calls calls a program.
func NewStream(seed uint64, calls int) *Stream {
	return &Stream{r: NewRand(seed), calls: calls}
}

// Next returns the next program.
func (s *Stream) Next() *Program {
	var p *Program
	if len(s.pool) > 0 && s.r.IntN(3) == 0 {
		p = Mutate(s.r, s.pool[s.r.IntN(len(s.pool))])
	} else {
		p = Generate(s.r, s.calls)
	}
	if len(s.pool) < 32 {
		s.pool = append(s.pool, p)
	} else {
		s.pool[s.r.IntN(len(s.pool))] = p
	}
	return p
}
