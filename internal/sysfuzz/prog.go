//go:build linux && amd64

package sysfuzz

import (
	"fmt"
	"strconv"
	"strings"
)

// Program is a list of calls. An argument may name a resource made by an
// earlier call of the same program.
type Program struct {
	Calls []*Call
}

// Call is one system call with its arguments, one per Meta.Args entry.
type Call struct {
	Meta *Syscall
	Args []Arg
}

// Form is the shape of an argument value.
type Form uint8

const (
	FormNum    Form = iota // a number: Val
	FormRef                // rN or rN.K: Ref
	FormNil                // nil: a NULL pointer
	FormBuf                // buf(Val[, "Data"]): Val bytes of Go memory starting with Data
	FormMem                // mem(rN, Val): Val bytes into the region mapped by call N
	FormOut                // &out: Go memory of the size the description gives
	FormLenPtr             // &len: an int32 holding the size of the measured argument
	FormStr                // "Str"
	FormStruct             // Name(Vals...) or iov(Elems...) or unix("Str")
)

// Ref names a resource: the return value of call Call (Slot -1) or the
// Slot'th fd it wrote (pipe2, socketpair).
type Ref struct {
	Call int
	Slot int
}

func (r Ref) String() string {
	if r.Slot < 0 {
		return "r" + strconv.Itoa(r.Call)
	}
	return "r" + strconv.Itoa(r.Call) + "." + strconv.Itoa(r.Slot)
}

// Arg is an argument value.
type Arg struct {
	Form  Form
	Val   uint64   // FormNum: the value; FormBuf: the size; FormMem: the offset
	Ref   Ref      // FormRef; FormMem: the mmap call
	Data  []byte   // FormBuf: leading bytes, the rest is zero; nil if none
	Str   string   // FormStr; FormStruct unix(): the path
	Name  string   // FormStruct: timespec, itimerspec, epev, sigset, int, iov, inet, inet6, unix, nl
	Vals  []uint64 // FormStruct: the fields
	Elems []Arg    // FormStruct iov: FormBuf elements
}

type structDesc struct {
	fields []*FlagSet // one per numeric field (nil: a plain number)
	str    bool       // one string field
	elems  bool       // a list of buf()
}

var structs = map[string]*structDesc{
	"timespec":   {fields: make([]*FlagSet, 2)},             // tv_sec, tv_nsec
	"itimerspec": {fields: make([]*FlagSet, 4)},             // it_interval sec, nsec, it_value sec, nsec
	"epev":       {fields: []*FlagSet{setEpollEvents, nil}}, // events, data
	"sigset":     {fields: []*FlagSet{setSigset}},
	"int":        {fields: make([]*FlagSet, 1)},
	"iov":        {elems: true},
	"inet":       {fields: make([]*FlagSet, 1)}, // 127.0.0.1:port
	"inet6":      {fields: make([]*FlagSet, 1)}, // [::1]:port
	"nl":         {fields: make([]*FlagSet, 1)}, // nl_groups
	"unix":       {str: true},                   // a path in the work dir
}

func fmtNum(v uint64) string {
	if i := int64(v); i < 0 && i >= -0x100000 {
		return "-0x" + strconv.FormatUint(uint64(-i), 16)
	}
	return "0x" + strconv.FormatUint(v, 16)
}

func fmtFlags(s *FlagSet, v uint64) string {
	if s == nil {
		return fmtNum(v)
	}
	var parts []string
	rest := v
	if len(s.Enum) > 0 {
		e := v &^ s.mask()
		for _, n := range s.Enum {
			if n.Val == e {
				parts = append(parts, n.Name)
				rest &^= e
				break
			}
		}
	}
	for _, n := range s.Bits {
		if n.Val != 0 && rest&n.Val == n.Val {
			parts = append(parts, n.Name)
			rest &^= n.Val
		}
	}
	if rest != 0 || len(parts) == 0 {
		parts = append(parts, fmtNum(rest))
	}
	return strings.Join(parts, "|")
}

func (p *Program) String() string {
	var b strings.Builder
	for i, c := range p.Calls {
		c.write(&b, i)
		b.WriteByte('\n')
	}
	return b.String()
}

// String formats c as call number i would be.
func (c *Call) write(b *strings.Builder, i int) {
	if c.Meta.Produces() {
		fmt.Fprintf(b, "r%d = ", i)
	}
	b.WriteString(c.Meta.Name)
	b.WriteByte('(')
	for j := range c.Args {
		if j > 0 {
			b.WriteString(", ")
		}
		var t *ArgType
		if j < len(c.Meta.Args) {
			t = &c.Meta.Args[j]
		}
		writeArg(b, t, &c.Args[j])
	}
	b.WriteByte(')')
}

func writeArg(b *strings.Builder, t *ArgType, a *Arg) {
	switch a.Form {
	case FormNum:
		if t != nil && (t.Kind == KindFlags || t.Kind == KindConst || t.Kind == KindFd && t.AtFdcwd) {
			if t.Kind == KindFd && a.Val != u(-100) {
				b.WriteString(fmtNum(a.Val))
				return
			}
			b.WriteString(fmtFlags(t.Set, a.Val))
			return
		}
		b.WriteString(fmtNum(a.Val))
	case FormRef:
		b.WriteString(a.Ref.String())
	case FormNil:
		b.WriteString("nil")
	case FormBuf:
		b.WriteString("buf(")
		b.WriteString(fmtNum(a.Val))
		if len(a.Data) > 0 {
			b.WriteString(", ")
			b.WriteString(strconv.QuoteToASCII(string(a.Data)))
		}
		b.WriteByte(')')
	case FormMem:
		fmt.Fprintf(b, "mem(%s, %s)", a.Ref, fmtNum(a.Val))
	case FormOut:
		b.WriteString("&out")
	case FormLenPtr:
		b.WriteString("&len")
	case FormStr:
		b.WriteString(strconv.QuoteToASCII(a.Str))
	case FormStruct:
		b.WriteString(a.Name)
		b.WriteByte('(')
		sd := structs[a.Name]
		switch {
		case sd != nil && sd.str:
			b.WriteString(strconv.QuoteToASCII(a.Str))
		case sd != nil && sd.elems:
			for i := range a.Elems {
				if i > 0 {
					b.WriteString(", ")
				}
				writeArg(b, nil, &a.Elems[i])
			}
		default:
			for i, v := range a.Vals {
				if i > 0 {
					b.WriteString(", ")
				}
				var s *FlagSet
				if sd != nil && i < len(sd.fields) {
					s = sd.fields[i]
				}
				b.WriteString(fmtFlags(s, v))
			}
		}
		b.WriteByte(')')
	default:
		b.WriteString("?")
	}
}

// Parse reads a program in the text format (see the package doc). Blank
// lines and lines starting with # are skipped. Parse checks the syntax
// and the shape of every argument; Validate checks the rest.
func Parse(text string) (*Program, error) {
	p := &Program{}
	for ln, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		c, err := parseCall(line, len(p.Calls))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln+1, err)
		}
		p.Calls = append(p.Calls, c)
	}
	return p, nil
}

type nodeKind uint8

const (
	nNum nodeKind = iota
	nRef
	nStr
	nNil
	nOut
	nLenPtr
	nCall
)

type node struct {
	kind nodeKind
	val  uint64
	ref  Ref
	str  string
	name string
	args []node
}

type parser struct {
	s     string
	pos   int
	depth int
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("column %d: %s", p.pos+1, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func isIdent(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && (c >= '0' && c <= '9' || c == '$')
}

func (p *parser) ident() string {
	st := p.pos
	for p.pos < len(p.s) && isIdent(p.s[p.pos], p.pos == st) {
		p.pos++
	}
	return p.s[st:p.pos]
}

func (p *parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

// refIdent parses "r12" as 12.
func refIdent(id string) (int, bool) {
	if len(id) < 2 || id[0] != 'r' || len(id) > 7 {
		return 0, false
	}
	for i := 1; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return 0, false
		}
	}
	if len(id) > 2 && id[1] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(id[1:])
	return n, err == nil
}

func (p *parser) number() (uint64, error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.pos++
	}
	st := p.pos
	for p.pos < len(p.s) && (isIdent(p.s[p.pos], false) && p.s[p.pos] != '$') {
		p.pos++
	}
	v, err := strconv.ParseUint(p.s[st:p.pos], 0, 64)
	if err != nil {
		return 0, p.errf("bad number %q", p.s[st:p.pos])
	}
	if neg {
		if v > 1<<63 {
			return 0, p.errf("number out of range")
		}
		v = -v
	}
	return v, nil
}

func (p *parser) atom() (uint64, error) {
	c := p.peek()
	if c == '-' || c >= '0' && c <= '9' {
		return p.number()
	}
	id := p.ident()
	v, ok := constByName[id]
	if !ok {
		return 0, p.errf("unknown constant %q", id)
	}
	return v, nil
}

func (p *parser) expr() (node, error) {
	p.space()
	c := p.peek()
	switch {
	case c == '"':
		q, err := strconv.QuotedPrefix(p.s[p.pos:])
		if err != nil {
			return node{}, p.errf("bad string")
		}
		s, err := strconv.Unquote(q)
		if err != nil {
			return node{}, p.errf("bad string")
		}
		p.pos += len(q)
		return node{kind: nStr, str: s}, nil
	case c == '&':
		p.pos++
		switch p.ident() {
		case "out":
			return node{kind: nOut}, nil
		case "len":
			return node{kind: nLenPtr}, nil
		}
		return node{}, p.errf("expected &out or &len")
	case isIdent(c, true):
		st := p.pos
		id := p.ident()
		if n, ok := refIdent(id); ok {
			r := Ref{Call: n, Slot: -1}
			if p.peek() == '.' {
				p.pos++
				s := p.pos
				for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' && p.pos-s < 3 {
					p.pos++
				}
				k, err := strconv.Atoi(p.s[s:p.pos])
				if err != nil {
					return node{}, p.errf("bad reference")
				}
				r.Slot = k
			}
			return node{kind: nRef, ref: r}, nil
		}
		if id == "nil" {
			return node{kind: nNil}, nil
		}
		if p.peek() == '(' {
			return p.call(id)
		}
		p.pos = st
	case c == '-' || c >= '0' && c <= '9':
	default:
		return node{}, p.errf("unexpected %q", string(c))
	}
	v, err := p.atom()
	if err != nil {
		return node{}, err
	}
	for {
		p.space()
		if p.peek() != '|' {
			return node{kind: nNum, val: v}, nil
		}
		p.pos++
		p.space()
		w, err := p.atom()
		if err != nil {
			return node{}, err
		}
		v |= w
	}
}

// call parses "(args...)" after name.
func (p *parser) call(name string) (node, error) {
	if p.depth >= 3 {
		return node{}, p.errf("nested too deep")
	}
	p.depth++
	defer func() { p.depth-- }()
	p.pos++ // (
	n := node{kind: nCall, name: name}
	p.space()
	if p.peek() == ')' {
		p.pos++
		return n, nil
	}
	for {
		a, err := p.expr()
		if err != nil {
			return node{}, err
		}
		n.args = append(n.args, a)
		if len(n.args) > 16 {
			return node{}, p.errf("too many arguments")
		}
		p.space()
		switch p.peek() {
		case ',':
			p.pos++
		case ')':
			p.pos++
			return n, nil
		default:
			return node{}, p.errf("expected , or )")
		}
	}
}

func parseCall(line string, idx int) (*Call, error) {
	p := &parser{s: line}
	st := p.pos
	id := p.ident()
	if n, ok := refIdent(id); ok {
		p.space()
		if p.peek() != '=' {
			return nil, p.errf("expected =")
		}
		p.pos++
		if n != idx {
			return nil, fmt.Errorf("result r%d of call %d", n, idx)
		}
		p.space()
		st = p.pos
		id = p.ident()
	}
	meta := syscallByName[id]
	if meta == nil {
		p.pos = st
		return nil, p.errf("unknown call %q", id)
	}
	if p.peek() != '(' {
		return nil, p.errf("expected (")
	}
	n, err := p.call(id)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.s) {
		return nil, p.errf("junk after call")
	}
	if len(n.args) != len(meta.Args) {
		return nil, fmt.Errorf("%s: %d arguments, want %d", id, len(n.args), len(meta.Args))
	}
	c := &Call{Meta: meta, Args: make([]Arg, len(n.args))}
	for i, a := range n.args {
		v, err := convert(&meta.Args[i], a)
		if err != nil {
			return nil, fmt.Errorf("%s: argument %s: %w", id, meta.Args[i].Name, err)
		}
		c.Args[i] = v
	}
	return c, nil
}

func (n node) is(name string, nargs int) bool {
	return n.kind == nCall && n.name == name && len(n.args) == nargs
}

func convertBuf(n node) (Arg, bool) {
	switch {
	case n.is("buf", 1) && n.args[0].kind == nNum:
		return Arg{Form: FormBuf, Val: n.args[0].val}, true
	case n.is("buf", 2) && n.args[0].kind == nNum && n.args[1].kind == nStr:
		a := Arg{Form: FormBuf, Val: n.args[0].val}
		if n.args[1].str != "" {
			a.Data = []byte(n.args[1].str)
		}
		return a, true
	}
	return Arg{}, false
}

func convertMem(n node) (Arg, bool) {
	if n.is("mem", 2) && n.args[0].kind == nRef && n.args[1].kind == nNum {
		return Arg{Form: FormMem, Ref: n.args[0].ref, Val: n.args[1].val}, true
	}
	return Arg{}, false
}

func convertStruct(n node) (Arg, bool) {
	sd := structs[n.name]
	if n.kind != nCall || sd == nil {
		return Arg{}, false
	}
	a := Arg{Form: FormStruct, Name: n.name}
	switch {
	case sd.str:
		if len(n.args) != 1 || n.args[0].kind != nStr {
			return Arg{}, false
		}
		a.Str = n.args[0].str
	case sd.elems:
		for _, e := range n.args {
			b, ok := convertBuf(e)
			if !ok {
				return Arg{}, false
			}
			a.Elems = append(a.Elems, b)
		}
	default:
		if len(n.args) != len(sd.fields) {
			return Arg{}, false
		}
		for _, e := range n.args {
			if e.kind != nNum {
				return Arg{}, false
			}
			a.Vals = append(a.Vals, e.val)
		}
	}
	return a, true
}

func convert(t *ArgType, n node) (Arg, error) {
	bad := fmt.Errorf("does not fit a %s argument", kindNames[t.Kind])
	switch t.Kind {
	case KindInt, KindConst, KindFlags, KindLen:
		if n.kind == nNum {
			return Arg{Form: FormNum, Val: n.val}, nil
		}
	case KindFd:
		switch n.kind {
		case nNum:
			return Arg{Form: FormNum, Val: n.val}, nil
		case nRef:
			return Arg{Form: FormRef, Ref: n.ref}, nil
		}
	case KindPath, KindString:
		if n.kind == nStr {
			return Arg{Form: FormStr, Str: n.str}, nil
		}
	case KindBuf, KindOut, KindMem:
		if n.kind == nNil && t.Kind != KindMem {
			return Arg{Form: FormNil}, nil
		}
		if n.kind == nOut && t.Kind == KindOut {
			return Arg{Form: FormOut}, nil
		}
		if a, ok := convertMem(n); ok {
			return a, nil
		}
		if t.Kind == KindBuf {
			if a, ok := convertBuf(n); ok {
				return a, nil
			}
		}
	case KindLenPtr:
		switch n.kind {
		case nLenPtr:
			return Arg{Form: FormLenPtr}, nil
		case nNil:
			return Arg{Form: FormNil}, nil
		}
	case KindStruct, KindAddr:
		if n.kind == nNil {
			return Arg{Form: FormNil}, nil
		}
		a, ok := convertStruct(n)
		if ok && (t.Kind == KindStruct && a.Name == t.Struct || t.Kind == KindAddr && isAddr(a.Name)) {
			return a, nil
		}
	}
	return Arg{}, bad
}

func isAddr(name string) bool {
	return name == "inet" || name == "inet6" || name == "unix" || name == "nl"
}

var kindNames = map[Kind]string{
	KindInt: "int", KindConst: "const", KindFlags: "flags", KindFd: "fd", KindPath: "path", KindString: "string",
	KindBuf: "buffer", KindLen: "length", KindOut: "output", KindLenPtr: "length pointer", KindMem: "memory",
	KindStruct: "struct", KindAddr: "address",
}

// Clone returns a deep copy of p.
func (p *Program) Clone() *Program {
	q := &Program{Calls: make([]*Call, len(p.Calls))}
	for i, c := range p.Calls {
		q.Calls[i] = c.clone()
	}
	return q
}

func (c *Call) clone() *Call {
	d := &Call{Meta: c.Meta, Args: make([]Arg, len(c.Args))}
	for i := range c.Args {
		d.Args[i] = c.Args[i].clone()
	}
	return d
}

func (a Arg) clone() Arg {
	if a.Data != nil {
		a.Data = append([]byte(nil), a.Data...)
	}
	if a.Vals != nil {
		a.Vals = append([]uint64(nil), a.Vals...)
	}
	if a.Elems != nil {
		e := make([]Arg, len(a.Elems))
		for i := range a.Elems {
			e[i] = a.Elems[i].clone()
		}
		a.Elems = e
	}
	return a
}
