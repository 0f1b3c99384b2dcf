package symbolize

import (
	"cmp"
	"debug/dwarf"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// rawIndex is the index before encoding; encode/decode turn it into an Index.
type rawIndex struct {
	buildID string
	text    uint64
	strs    []string
	funcs   []rawFunc
	aliases [][2]uint32 // [name string, function]: symbol names that are not the function's C name
	module  string      // a module's name ("" for vmlinux)
	secs    []Section   // a module's executable sections
}

type rawFunc struct {
	name, file uint32 // string table indices
	sym        uint32 // string table index of the ELF symbol at entry
	line       uint32
	flags      uint32
	entry      uint64
	ranges     [][2]uint64
	own, inl   []uint64 // fileString<<32 | line, sorted, unique
	est        uint32   // estimated line count (flagEstimated)
}

const (
	flagEstimated  = 1 << iota // no line table for this code: est holds a size-based line count
	flagFromSymbol             // no subprogram DIE: ranges come from the ELF symbol
)

type interner struct {
	idx  map[string]uint32
	strs []string
}

func (in *interner) id(s string) uint32 {
	if i, ok := in.idx[s]; ok {
		return i
	}
	i := uint32(len(in.strs))
	in.idx[s] = i
	in.strs = append(in.strs, s)
	return i
}

// assemble merges the per-unit results. Every concrete subprogram is its own
// function, named by the ELF symbol at its entry: clones such as foo.isra.0,
// foo.constprop.0 and foo.part.0 are functions of their own (C name foo),
// and a .cold part is a range of the subprogram whose ranges include it.
// Code that has no subprogram DIE (assembly) is taken from the ELF symbols.
func assemble(d *dwarf.Data, in buildInput, results []cuResult) (*Index, error) {
	strs := &interner{idx: map[string]uint32{}}
	strs.id("") // index 0: unknown
	symsAt := map[uint64][]string{}
	for _, s := range in.syms {
		symsAt[s.addr] = append(symsAt[s.addr], s.name)
	}
	// entrySymbol picks the entry of a subprogram and the symbol there: the
	// first range start with a symbol of its name that is not a .cold part,
	// else one with any such symbol, else the DWARF entry.
	entrySymbol := func(cf *cuFunc) (uint64, string) {
		for _, strict := range []bool{true, false} {
			for _, r := range cf.ranges {
				for _, n := range symsAt[r[0]] {
					if !strings.HasSuffix(n, ".cold") && !strings.Contains(n, ".cold.") && (!strict || baseName(n) == cf.name) {
						return r[0], n
					}
				}
			}
		}
		return cf.entry, cf.name
	}

	type orphan struct {
		addr, end uint64
		key       uint64
	}
	var orphans []orphan
	var fns []rawFunc
	for ri := range results {
		res := &results[ri]
		gfile := make([]uint32, len(res.files))
		for i, f := range res.files {
			gfile[i] = strs.id(f)
		}
		remap := func(ks []uint64) []uint64 {
			for i, k := range ks {
				ks[i] = uint64(gfile[k>>32])<<32 | k&0xffffffff
			}
			return ks
		}
		for _, o := range res.orphans {
			orphans = append(orphans, orphan{o.addr, o.end, uint64(gfile[o.key>>32])<<32 | o.key&0xffffffff})
		}
		for i := range res.funcs {
			cf := &res.funcs[i]
			if cf.name == "" {
				resolveForeign(d, cf)
			}
			entry, sym := entrySymbol(cf)
			f := rawFunc{name: strs.id(cf.name), sym: strs.id(sym), entry: entry, ranges: mergeRanges(cf.ranges), own: remap(cf.own), inl: remap(cf.inl)}
			if cf.declFile >= 0 && cf.declFile < len(gfile) {
				f.file, f.line = gfile[cf.declFile], uint32(cf.declLine)
			}
			fns = append(fns, f)
		}
	}
	raw := &rawIndex{buildID: in.buildID, text: in.text, secs: in.exec}
	// Subprograms with identical ranges are one function under two names
	// (gas emits memmove and __memmove): keep the first, alias the others.
	byRanges := map[string]int{}
	var dupNames [][2]uint32
	for _, g := range fns {
		key := fmt.Sprint(g.ranges)
		if i, ok := byRanges[key]; ok {
			f := &raw.funcs[i]
			f.own, f.inl = append(f.own, g.own...), append(f.inl, g.inl...)
			dupNames = append(dupNames, [2]uint32{g.name, uint32(i)}, [2]uint32{g.sym, uint32(i)})
			continue
		}
		byRanges[key] = len(raw.funcs)
		raw.funcs = append(raw.funcs, g)
	}
	for i := range raw.funcs {
		raw.funcs[i].own, raw.funcs[i].inl = sortUniq(raw.funcs[i].own), sortUniq(raw.funcs[i].inl)
	}

	// ELF function symbols outside every subprogram: assembly, or C built
	// without -g. Their lines come from the rows no subprogram holds.
	var spans spanTable
	for i, f := range raw.funcs {
		for _, r := range f.ranges {
			spans = append(spans, span{r[0], r[1], i})
		}
	}
	spans, _ = spans.normalize()
	syms := slices.Clone(in.syms)
	slices.SortFunc(syms, func(a, b symbol) int { return cmp.Compare(a.addr, b.addr) })
	for i, s := range syms {
		if i > 0 && syms[i-1].addr == s.addr {
			continue // alias
		}
		if spans.find(s.addr) >= 0 {
			continue // part of a DWARF function (foo.cold, foo.isra.0, …)
		}
		raw.funcs = append(raw.funcs, rawFunc{name: strs.id(baseName(s.name)), sym: strs.id(s.name), entry: s.addr, flags: flagFromSymbol, ranges: [][2]uint64{{s.addr, s.addr + s.size}}})
	}
	spans = spans[:0]
	for i, f := range raw.funcs {
		for _, r := range f.ranges {
			spans = append(spans, span{r[0], r[1], i})
		}
	}
	spans, _ = spans.normalize()
	// Rows that own bytes outside their unit's subprograms: each function
	// that holds some of those bytes gets the line (assembly, code of one
	// unit described by another's subprogram).
	slices.SortFunc(orphans, func(a, b orphan) int { return cmp.Compare(a.addr, b.addr) })
	for _, o := range orphans {
		for j := sort.Search(len(spans), func(i int) bool { return spans[i].hi > o.addr }); j < len(spans) && spans[j].lo < o.end; j++ {
			f := &raw.funcs[spans[j].fn]
			if f.flags&flagFromSymbol != 0 && len(f.own) == 0 {
				f.file = uint32(o.key >> 32) // the file of its first row
			}
			f.own = append(f.own, o.key)
		}
	}
	for i := range raw.funcs {
		f := &raw.funcs[i]
		f.own = sortUniq(f.own)
		if f.flags&flagFromSymbol != 0 && len(f.own) == 0 {
			f.flags |= flagEstimated
			f.est = estimateLines(f.ranges[0][1] - f.ranges[0][0])
		}
	}
	// Symbol names find the function that holds them: clones by their full
	// name (foo.isra.0), .cold parts, and code whose DWARF calls it
	// something else (aliases such as __x64_sys_sync of __do_sys_sync,
	// folded identical code, labels inside a function) also by the name
	// without suffixes.
	seen := map[[2]uint32]bool{}
	for _, a := range dupNames {
		if !seen[a] && a[0] != raw.funcs[a[1]].name {
			seen[a] = true
			raw.aliases = append(raw.aliases, a)
		}
	}
	for _, s := range in.syms {
		j := spans.find(s.addr)
		if j < 0 {
			continue
		}
		fn := uint32(spans[j].fn)
		for _, n := range []string{s.name, baseName(s.name)} {
			a := [2]uint32{strs.id(n), fn}
			if a[0] == raw.funcs[fn].name || seen[a] {
				continue
			}
			seen[a] = true
			raw.aliases = append(raw.aliases, a)
		}
	}
	raw.strs = strs.strs
	return decode(encode(raw))
}

// resolveForeign follows an abstract_origin/specification chain that left
// the unit (DW_FORM_ref_addr, as LTO emits) to find the name and identity.
func resolveForeign(d *dwarf.Data, cf *cuFunc) {
	r := d.Reader()
	at := cf.key
	for hop := 0; hop < 8; hop++ {
		r.Seek(at)
		e, err := r.Next()
		if err != nil || e == nil {
			return
		}
		if cf.name == "" {
			cf.name, _ = e.Val(dwarf.AttrName).(string)
		}
		o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			o, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			break
		}
		at = o
	}
	cf.key = at
}

// baseName is the C identifier of a symbol name: compiler suffixes such as
// .isra.0, .constprop.0, .part.0 and .cold are dropped.
func baseName(sym string) string {
	if i := strings.IndexByte(sym, '.'); i > 0 {
		return sym[:i]
	}
	return sym
}
