package symbolize

import (
	"cmp"
	"encoding/binary"
	"iter"
	"slices"
	"sort"
)

// Index maps kernel functions to the source lines their machine code comes
// from. Addresses are link-time (vmlinux) addresses; subtract the KASLR
// offset (see Kernel.Offset) from runtime addresses first. An Index is safe
// for concurrent use.
type Index struct {
	buildID string
	text    uint64
	strs    []string
	funcs   []Function
	ranges  []Range   // contiguous per function
	owner   []uint32  // function of ranges[i]
	byAddr  []uint32  // range indices sorted by Lo
	byName  []nameRef // names and aliases, sorted by name, then entry
	lines   []byte
	module  string    // "" for vmlinux
	secs    []Section // a module's executable sections
}

type nameRef struct{ name, fn uint32 }

// Range is a half-open address range [Lo, Hi).
type Range struct{ Lo, Hi uint64 }

// Line is a source line: a kernel-tree path such as "fs/read_write.c" and a
// 1-based line number.
type Line struct {
	File string
	Line int
}

// Function is one kernel function as the linker placed it: the code of one
// symbol, with all of its address ranges (its .cold part included) and its
// lines. A compiler clone (foo.isra.0, foo.constprop.0, foo.part.0) is a
// Function of its own, with the C name of the function it was cloned from.
type Function struct {
	Name   string  // C name, without compiler suffixes ("foo")
	Symbol string  // ELF symbol at Entry ("foo.isra.0"; "foo" for the original)
	File   string  // file of the definition ("" if unknown)
	Line   int     // line of the definition (0 if unknown)
	Entry  uint64  // entry address (link-time)
	Ranges []Range // every address range, sorted (shared: do not modify)

	// Estimated is set when no line table covers the function: LineCount is
	// then Size()/BytesPerLine, and Lines returns nothing. Never exact.
	Estimated bool

	ix                 *Index
	linesOff, linesLen uint32
	nOwn, nInl, est    uint32
	flags              uint32
}

// Size is the number of code bytes in all of the function's ranges.
func (f *Function) Size() uint64 {
	var n uint64
	for _, r := range f.Ranges {
		n += r.Hi - r.Lo
	}
	return n
}

// Lines returns the distinct (file, line) pairs the function's code comes
// from: exactly the lines llvm-symbolizer --inlining prints over all of the
// function's addresses (line 0 excepted). That is the line of every
// line-table row that owns at least one byte of the function's ranges (a
// row owns the bytes from its address up to the next row of its sequence;
// rows at the same address as the next own none), and the call site
// (DW_AT_call_file, DW_AT_call_line) of every inlined subroutine that
// covers a byte of the function, or holds inlined code that does.
//
// The lines are split by where they lie in the source, each part sorted by
// file then line: own lines lie in the function's own text (its file, from
// its declaration up to the next function definition there), so they
// include the call sites of the functions inlined directly into it;
// inlined lines are everything else (static and header functions inlined
// into it, and the call sites inside them). The split does not use the
// address ranges of inlined subroutines: gcc's do not cover every
// instruction of the inlined code. Both are empty for an Estimated function.
func (f *Function) Lines() (own, inlined []Line) {
	if f.ix == nil {
		return nil, nil
	}
	b := f.ix.lines[f.linesOff : f.linesOff+f.linesLen]
	own, b = f.ix.decodeLines(b, int(f.nOwn))
	inlined, _ = f.ix.decodeLines(b, int(f.nInl))
	return own, inlined
}

// LineCount is the number of distinct lines (own ∪ inlined), or the
// size-based estimate when Estimated.
func (f *Function) LineCount() int {
	if f.Estimated {
		return int(f.est)
	}
	own, inl := f.Lines()
	n := len(own)
	for _, l := range inl {
		if _, dup := slices.BinarySearchFunc(own, l, compareLine); !dup {
			n++
		}
	}
	return n
}

func compareLine(a, b Line) int {
	if c := cmp.Compare(a.File, b.File); c != 0 {
		return c
	}
	return cmp.Compare(a.Line, b.Line)
}

// decodeLines reads n delta-encoded keys; it stops early on corrupt input.
func (ix *Index) decodeLines(b []byte, n int) ([]Line, []byte) {
	out := make([]Line, 0, min(n, len(b))) // a key takes at least one byte
	var k uint64
	for range n {
		d, m := binary.Uvarint(b)
		if m <= 0 {
			return out, nil
		}
		b = b[m:]
		k += d
		file := k >> 32
		if file >= uint64(len(ix.strs)) {
			return out, nil
		}
		out = append(out, Line{File: ix.strs[file], Line: int(k & 0xffffffff)})
	}
	return out, b
}

// BuildID is the GNU build-id (hex) of the vmlinux the index was built from.
func (ix *Index) BuildID() string { return ix.buildID }

// Module is the name of the kernel module the index describes, "" for
// vmlinux.
func (ix *Index) Module() string { return ix.module }

// Sections are a module's executable sections at the index's addresses
// (nil for vmlinux).
func (ix *Index) Sections() []Section { return slices.Clone(ix.secs) }

// Text is the link-time address of _text in that vmlinux (0 if unknown).
func (ix *Index) Text() uint64 { return ix.text }

// Len is the number of functions.
func (ix *Index) Len() int { return len(ix.funcs) }

// All yields every function, in index order.
func (ix *Index) All() iter.Seq[*Function] {
	return func(yield func(*Function) bool) {
		for i := range ix.funcs {
			if !yield(&ix.funcs[i]) {
				return
			}
		}
	}
}

// FuncAt returns the function whose code contains the link-time address
// addr, or nil.
func (ix *Index) FuncAt(addr uint64) *Function {
	i := sort.Search(len(ix.byAddr), func(i int) bool { return ix.ranges[ix.byAddr[i]].Lo > addr })
	if i == 0 {
		return nil
	}
	r := ix.byAddr[i-1]
	if addr >= ix.ranges[r].Hi {
		return nil
	}
	return &ix.funcs[ix.owner[r]]
}

// Lookup returns the functions a name stands for, sorted by entry address.
// A C name finds every function of that name: static functions of
// different files, and compiler clones (Lookup("foo") finds foo and
// foo.isra.0). A symbol name finds the function holding that symbol:
// Lookup("foo.isra.0") finds only that clone, Lookup("foo.cold") the
// function whose ranges include the cold part, Lookup("__x64_sys_sync") the
// function DWARF calls __do_sys_sync.
func (ix *Index) Lookup(name string) []*Function {
	i := sort.Search(len(ix.byName), func(i int) bool { return ix.strs[ix.byName[i].name] >= name })
	var out []*Function
	for ; i < len(ix.byName) && ix.strs[ix.byName[i].name] == name; i++ {
		if f := &ix.funcs[ix.byName[i].fn]; !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
