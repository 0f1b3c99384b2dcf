package symbolize

import (
	"bytes"
	"cmp"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Build indexes the DWARF of the ELF file at path (a vmlinux with debug info):
// one pass over the DIEs and one over the line table of each compilation unit,
// the units spread over all CPUs. progress, if not nil, is called with the
// number of units done and their total. Build does not look at the cache; see
// Open for that.
func Build(path string, progress func(done, total int)) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open vmlinux: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat vmlinux: %w", err)
	}
	if err := notELF(path, ""); err != nil {
		return nil, err
	}
	// mmap: only the pages of the sections we read become resident.
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read vmlinux: %w", err)
		}
	} else {
		defer unix.Munmap(data)
	}
	ix, err := buildELF(data, progress)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	return ix, nil
}

// debugSections are the DWARF sections the index needs (no loclists, frames).
var debugSections = []string{
	".debug_info", ".debug_abbrev", ".debug_line", ".debug_str", ".debug_ranges",
	".debug_line_str", ".debug_addr", ".debug_str_offsets", ".debug_rnglists",
}

// noRecover makes panics inside the DWARF readers propagate (set by fuzz
// tests so that the fuzzer reports them instead of hiding them as errors).
var noRecover = false

// buildELF indexes an ELF image held in memory.
func buildELF(data []byte, progress func(done, total int)) (ix *Index, err error) {
	if !noRecover {
		defer func() {
			if r := recover(); r != nil {
				ix, err = nil, fmt.Errorf("corrupt ELF or DWARF data (reader panicked: %v)", r)
			}
		}()
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("damaged ELF file: %w", err)
	}
	var layout []uint64 // ET_REL (a kernel module): the address of each section
	var allSyms []elf.Symbol
	if ef.Type == elf.ET_REL {
		if ef.Machine != elf.EM_X86_64 {
			return nil, fmt.Errorf("relocatable ELF file for %s: only x86-64 modules are supported", ef.Machine)
		}
		if layout, err = relLayout(ef); err != nil {
			return nil, err
		}
		if allSyms, err = ef.Symbols(); err != nil {
			return nil, fmt.Errorf("module symbols: %w", err)
		}
	}
	secs := map[string][]byte{}
	for _, name := range debugSections {
		s := ef.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		var b []byte
		if s.Flags&elf.SHF_COMPRESSED == 0 && s.Offset+s.Size <= uint64(len(data)) && s.Offset <= s.Offset+s.Size {
			b = data[s.Offset : s.Offset+s.Size : s.Offset+s.Size]
		} else if b, err = s.Data(); err != nil {
			return nil, fmt.Errorf("read section %s: %w", name, err)
		}
		if layout != nil {
			if b, err = relocateDebug(ef, allSyms, layout, name, b); err != nil {
				return nil, err
			}
		}
		secs[name] = b
	}
	in := buildInput{sections: secs, buildID: elfBuildID(ef)}
	if layout != nil {
		if in.exec, err = execSections(ef, layout); err != nil {
			return nil, err
		}
	}
	syms, _ := ef.Symbols() // no .symtab: DWARF alone still works
	for _, s := range syms {
		if layout != nil && int(s.Section) > 0 && int(s.Section) < len(layout) {
			s.Value += layout[s.Section] // section-relative in a relocatable file
		}
		if s.Name == "_text" {
			in.text = s.Value
		}
		// Assembly entry points are often NOTYPE symbols with a size.
		typ := elf.ST_TYPE(s.Info)
		exec := int(s.Section) < len(ef.Sections) && ef.Sections[s.Section].Flags&elf.SHF_EXECINSTR != 0
		// __pfx_/__cfi_ symbols are the padding/CFI preamble before each
		// function (CONFIG_CALL_PADDING), not functions.
		pad := strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_")
		if (typ == elf.STT_FUNC || typ == elf.STT_NOTYPE) && exec && !pad && s.Size > 0 && s.Value != 0 {
			in.syms = append(in.syms, symbol{name: s.Name, addr: s.Value, size: s.Size})
		}
	}
	if len(secs[".debug_info"]) == 0 && layout != nil {
		return nil, fmt.Errorf("%w: no .debug_info section (a stripped module): use the one of the kernel's debug package (Debian: linux-image-<release>-dbg, /usr/lib/debug/lib/modules/<release>/kernel/…)", ErrNoDebugInfo)
	}
	if len(secs[".debug_info"]) == 0 {
		return nil, fmt.Errorf("%w: no .debug_info section (a stripped vmlinux?): use the one of the kernel's debug package (Debian: linux-image-<release>-dbg, /usr/lib/debug/boot/vmlinux-<release>)", ErrNoDebugInfo)
	}
	ix, err = buildFromSections(in, progress)
	if err == nil && layout != nil {
		ix.module = modinfoName(ef)
	}
	return ix, err
}

// modinfoName is the module name recorded in a .ko's .modinfo ("name=…"),
// or "".
func modinfoName(ef *elf.File) string {
	s := ef.Section(".modinfo")
	if s == nil {
		return ""
	}
	b, err := s.Data()
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("name=")); ok {
			return string(v)
		}
	}
	return ""
}

type symbol struct {
	name       string
	addr, size uint64
}

type buildInput struct {
	sections map[string][]byte
	buildID  string
	text     uint64
	syms     []symbol  // ELF function symbols (for code without subprogram DIEs)
	exec     []Section // a module's executable sections, at their layout addresses
}

// elfBuildID returns the hex NT_GNU_BUILD_ID of ef, or "".
func elfBuildID(ef *elf.File) string {
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		b, err := s.Data()
		if err != nil {
			continue
		}
		if id := buildIDFromNotes(b, ef.ByteOrder); id != "" {
			return id
		}
	}
	return ""
}

// cuResult is what one compilation unit contributes.
type cuResult struct {
	files   []string // normalised names, local index = line table file index
	funcs   []cuFunc
	orphans []orphanRow // rows owning bytes outside every subprogram of the unit
}

type cuFunc struct {
	key      dwarf.Offset // identity: root of the abstract_origin/specification chain
	name     string
	declFile int // local file index, -1 if unknown
	declLine int
	entry    uint64
	ranges   [][2]uint64
	own, inl []uint64 // keys: localFile<<32 | line
}

type orphanRow struct {
	addr, end uint64 // the row covers [addr, end)
	key       uint64 // localFile<<32 | line
}

// dieInfo is what we keep of every subprogram DIE of a unit to resolve names.
type dieInfo struct {
	name     string
	declFile int
	declLine int
	origin   dwarf.Offset // abstract_origin or specification, 0 if none
	defn     bool         // a definition, not a DW_AT_declaration
}

func buildFromSections(in buildInput, progress func(done, total int)) (*Index, error) {
	s := in.sections
	d, err := dwarf.New(s[".debug_abbrev"], nil, nil, s[".debug_info"], s[".debug_line"], nil, s[".debug_ranges"], s[".debug_str"])
	if err != nil {
		return nil, fmt.Errorf("parse DWARF: %w", err)
	}
	for _, name := range []string{".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists"} {
		if b := s[name]; len(b) > 0 {
			if err := d.AddSection(name, b); err != nil {
				return nil, fmt.Errorf("parse DWARF section %s: %w", name, err)
			}
		}
	}
	units, err := compileUnitOffsets(s[".debug_info"])
	if err != nil {
		return nil, err
	}
	// debug/dwarf fills in each DWARF 5 unit's str_offsets/addr/rnglists
	// bases lazily, on a reader's first visit, and publishes the struct
	// before filling it: concurrent first visits race and can read base 0
	// (wrong names and addresses). Visit every unit once, here, alone.
	warm := d.Reader()
	for _, off := range units {
		warm.Seek(off)
	}
	results := make([]cuResult, len(units))
	errs := make([]error, len(units))
	var next, done atomic.Int64
	workers := min(runtime.GOMAXPROCS(0), max(len(units), 1))
	var wg sync.WaitGroup
	var panicked atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !noRecover {
				defer func() {
					if r := recover(); r != nil {
						panicked.Store(fmt.Sprint(r))
					}
				}()
			}
			r := d.Reader()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(units) {
					return
				}
				results[i], errs[i] = indexUnit(d, r, units[i], s[".debug_line"])
				n := done.Add(1)
				if progress != nil && (n%16 == 0 || int(n) == len(units)) {
					progress(int(n), len(units))
				}
			}
		}()
	}
	wg.Wait()
	if p := panicked.Load(); p != nil {
		return nil, fmt.Errorf("corrupt DWARF data (reader panicked: %v)", p)
	}
	for i, e := range errs {
		if e != nil {
			return nil, fmt.Errorf("compilation unit at .debug_info+%#x: %w", units[i], e)
		}
	}
	return assemble(d, in, results)
}

// compileUnitOffsets lists the offset of the first DIE of every unit in
// .debug_info by walking the unit headers.
func compileUnitOffsets(info []byte) ([]dwarf.Offset, error) {
	var out []dwarf.Offset
	for off := uint64(0); off < uint64(len(info)); {
		start := off
		if off+4 > uint64(len(info)) {
			return nil, fmt.Errorf("truncated unit header at .debug_info+%#x", start)
		}
		length := uint64(binary.LittleEndian.Uint32(info[off:]))
		off += 4
		dwarf64 := false
		if length == 0xffffffff {
			if off+8 > uint64(len(info)) {
				return nil, fmt.Errorf("truncated unit header at .debug_info+%#x", start)
			}
			length = binary.LittleEndian.Uint64(info[off:])
			off += 8
			dwarf64 = true
		} else if length >= 0xfffffff0 {
			return nil, fmt.Errorf("bad unit length %#x at .debug_info+%#x", length, start)
		}
		end := off + length
		if end < off || end > uint64(len(info)) || off+2 > end {
			return nil, fmt.Errorf("unit at .debug_info+%#x overruns the section", start)
		}
		version := binary.LittleEndian.Uint16(info[off:])
		off += 2
		offSize := uint64(4)
		if dwarf64 {
			offSize = 8
		}
		hdr := uint64(0)
		switch {
		case version >= 2 && version <= 4:
			hdr = offSize + 1
		case version == 5:
			if off >= end {
				return nil, fmt.Errorf("truncated unit header at .debug_info+%#x", start)
			}
			switch unitType := info[off]; unitType {
			case 0x01, 0x03: // DW_UT_compile, DW_UT_partial
				hdr = 2 + offSize
			case 0x04, 0x05: // DW_UT_skeleton, DW_UT_split_compile
				hdr = 2 + offSize + 8
			case 0x02, 0x06: // DW_UT_type, DW_UT_split_type
				hdr = 2 + offSize + 8 + offSize
			default:
				return nil, fmt.Errorf("unknown DWARF 5 unit type %#x at .debug_info+%#x", unitType, start)
			}
		default:
			return nil, fmt.Errorf("unsupported DWARF version %d at .debug_info+%#x", version, start)
		}
		if off+hdr > end {
			return nil, fmt.Errorf("truncated unit header at .debug_info+%#x", start)
		}
		if off+hdr < end { // an empty unit has no DIE to seek to
			out = append(out, dwarf.Offset(off+hdr))
		}
		off = end
	}
	return out, nil
}

type frame struct {
	fn   int // index into res.funcs, -1 outside concrete code
	site int // index into the unit's inlined call sites, -1 in the subprogram itself
}

// callSite is one DW_TAG_inlined_subroutine of concrete code.
type callSite struct {
	fn     int    // the function it is inlined into
	parent int    // the call site it is nested in, -1 if none
	key    uint64 // its call file and line; 0 if it has none
	covers bool   // it or a call site nested in it covers a byte of fn
}

// indexUnit walks the DIEs and the line table of the unit whose first DIE is
// at off.
func indexUnit(d *dwarf.Data, r *dwarf.Reader, off dwarf.Offset, lineSec []byte) (cuResult, error) {
	var res cuResult
	r.Seek(off)
	cu, err := r.Next()
	if err != nil {
		return res, err
	}
	if cu == nil || (cu.Tag != dwarf.TagCompileUnit && cu.Tag != dwarf.TagPartialUnit) {
		return res, nil // type units and the like carry no code
	}
	compDir, _ := cu.Val(dwarf.AttrCompDir).(string)
	if so, ok := cu.Val(dwarf.AttrStmtList).(int64); ok {
		if err := checkLineHeader(lineSec, uint64(so)); err != nil {
			return res, err
		}
	}
	lr, err := d.LineReader(cu)
	if err != nil {
		return res, fmt.Errorf("line table: %w", err)
	}
	// A file can be listed twice (DWARF 5 repeats the primary file as
	// entries 0 and 1): every index maps to the first with the same name.
	fileIdx := map[*dwarf.LineFile]int{}
	byName := map[string]int{}
	var canon []int
	addFile := func(name string) int {
		if name == "" {
			canon = append(canon, -1)
			res.files = append(res.files, "")
			return -1
		}
		c, ok := byName[name]
		if !ok {
			c = len(res.files)
			byName[name] = c
		}
		canon = append(canon, c)
		res.files = append(res.files, name)
		return c
	}
	if lr != nil {
		for _, f := range lr.Files() {
			if f == nil {
				addFile("")
				continue
			}
			fileIdx[f] = addFile(normalizePath(compDir, f.Name))
		}
	}
	validFile := func(v any) int {
		i, ok := v.(int64)
		if !ok || i < 0 || i >= int64(len(canon)) {
			return -1
		}
		return canon[i]
	}

	// DIE pass.
	dies := map[dwarf.Offset]*dieInfo{}
	var sites []callSite
	var stack []frame
	cur := frame{fn: -1, site: -1}
	if cu.Children {
		for {
			e, err := r.Next()
			if err != nil {
				return res, err
			}
			if e == nil {
				break
			}
			if e.Tag == 0 {
				if len(stack) == 0 {
					break // end of the unit's children
				}
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
				continue
			}
			child := cur
			descend := false
			switch e.Tag {
			case dwarf.TagSubprogram:
				di := &dieInfo{declFile: -1}
				di.name, _ = e.Val(dwarf.AttrName).(string)
				if v := e.Val(dwarf.AttrDeclFile); v != nil {
					di.declFile = validFile(v)
				}
				if v, ok := e.Val(dwarf.AttrDeclLine).(int64); ok {
					di.declLine = int(v)
				}
				if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
					di.origin = o
				} else if o, ok := e.Val(dwarf.AttrSpecification).(dwarf.Offset); ok {
					di.origin = o
				}
				decl, _ := e.Val(dwarf.AttrDeclaration).(bool)
				di.defn = !decl
				dies[e.Offset] = di
				child = frame{fn: -1, site: -1}
				if rg, err := d.Ranges(e); err == nil && len(liveRanges(rg)) > 0 {
					rg = liveRanges(rg)
					f := cuFunc{key: e.Offset, ranges: rg, entry: rg[0][0]}
					if lo, ok := e.Val(dwarf.AttrLowpc).(uint64); ok {
						f.entry = lo
					} else if ep, ok := e.Val(dwarf.AttrEntrypc).(uint64); ok {
						f.entry = ep
					}
					res.funcs = append(res.funcs, f)
					child = frame{fn: len(res.funcs) - 1, site: -1}
				}
				descend = true
			case dwarf.TagInlinedSubroutine:
				if cur.fn >= 0 {
					// The call site is a line of the caller: symbolizers
					// print it as the outer frame of every address that
					// this inlined code, or code inlined into it, covers.
					cs := callSite{fn: cur.fn, parent: cur.site}
					if rg, err := d.Ranges(e); err == nil {
						cs.covers = overlaps(liveRanges(rg), res.funcs[cur.fn].ranges)
					}
					if line, ok := e.Val(dwarf.AttrCallLine).(int64); ok && line > 0 && line < 1<<32 {
						if fi := validFile(e.Val(dwarf.AttrCallFile)); fi >= 0 {
							cs.key = uint64(fi)<<32 | uint64(line)
						}
					}
					sites = append(sites, cs)
					child = frame{fn: cur.fn, site: len(sites) - 1}
				}
				descend = true
			case dwarf.TagLexDwarfBlock, dwarf.TagNamespace, dwarf.TagModule:
				descend = true
			}
			if e.Children {
				if descend {
					stack = append(stack, cur)
					cur = child
				} else {
					r.SkipChildren()
				}
			}
		}
	}

	// A call site counts when it, or a call site nested in it, covers a
	// byte of the function: nested sites come after their parents.
	for i := len(sites) - 1; i >= 0; i-- {
		cs := &sites[i]
		if !cs.covers {
			continue
		}
		if cs.parent >= 0 {
			sites[cs.parent].covers = true
		}
		if cs.key != 0 {
			res.funcs[cs.fn].own = append(res.funcs[cs.fn].own, cs.key)
		}
	}

	// Names and identities: follow abstract_origin/specification to the root.
	for i := range res.funcs {
		f := &res.funcs[i]
		f.declFile = -1
		at := f.key
		for hop := 0; hop < 8; hop++ {
			di := dies[at]
			if di == nil {
				break // cross-unit reference: resolved in assemble
			}
			if f.name == "" {
				f.name = di.name
			}
			if f.declFile < 0 && di.declFile >= 0 {
				f.declFile, f.declLine = di.declFile, di.declLine
			}
			if di.origin == 0 {
				break
			}
			at = di.origin
		}
		f.key = at
	}

	// Line pass.
	if lr == nil {
		return res, nil
	}
	var spans spanTable
	for i, f := range res.funcs {
		for _, rg := range f.ranges {
			spans = append(spans, span{rg[0], rg[1], i})
		}
	}
	spans, aliases := spans.normalize()
	// A row owns the bytes from its address up to the next row's address
	// in the same sequence: those are the addresses a symbolizer gives its
	// line. A row at the same address as the next owns none and does not
	// count. The bytes can lie in several functions (a .cold part placed
	// right after another function's code, with no row of its own at its
	// start): each gets the line. Bytes outside every function of the unit
	// go to assemble, which places them in other units' functions and in
	// code without DWARF (assembly).
	var pend struct {
		ok   bool
		addr uint64
		key  uint64
	}
	closePending := func(next uint64) {
		if !pend.ok || next <= pend.addr {
			return
		}
		lo, hi := pend.addr, next
		covered := lo
		gap := false
		for j := sort.Search(len(spans), func(i int) bool { return spans[i].hi > lo }); j < len(spans) && spans[j].lo < hi; j++ {
			f := &res.funcs[spans[j].fn]
			f.own = append(f.own, pend.key)
			gap = gap || spans[j].lo > covered
			covered = spans[j].hi
		}
		if gap || covered < hi {
			res.orphans = append(res.orphans, orphanRow{addr: lo, end: hi, key: pend.key})
		}
	}
	var row dwarf.LineEntry
	var lastFile *dwarf.LineFile
	lastIdx := -1
	for {
		if err := lr.Next(&row); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return res, fmt.Errorf("line table: %w", err)
		}
		closePending(row.Address)
		pend.ok = false
		if row.EndSequence || row.Line <= 0 || row.Line >= 1<<32 || row.File == nil {
			continue
		}
		if row.File != lastFile {
			lastFile = row.File
			idx, ok := fileIdx[row.File]
			if !ok { // DW_LNE_define_file (DWARF 2-4)
				idx = addFile(normalizePath(compDir, row.File.Name))
				fileIdx[row.File] = idx
			}
			lastIdx = idx
		}
		if lastIdx < 0 {
			continue
		}
		pend.ok, pend.addr, pend.key = true, row.Address, uint64(lastIdx)<<32|uint64(row.Line)
	}
	for _, a := range aliases {
		res.funcs[a[0]].own = append(res.funcs[a[0]].own, res.funcs[a[1]].own...)
	}
	splitOwn(&res, dies)
	return res, nil
}

// liveRanges drops the ranges of code the linker discarded: their addresses
// were relocated against 0 (e.g. [0, size)).
func liveRanges(rs [][2]uint64) [][2]uint64 {
	out := rs[:0]
	for _, r := range rs {
		if r[0] != 0 && r[0] < r[1] {
			out = append(out, r)
		}
	}
	return out
}

type span struct {
	lo, hi uint64
	fn     int
}

// spanTable is a sorted list of non-overlapping code ranges.
type spanTable []span

// normalize sorts the spans and clips overlaps, so that find's binary search
// is sound. A span identical to the one before it (an alias: gas emits a
// subprogram per symbol name of the same code) is dropped and reported in
// aliases as [dropped fn, kept fn]; other overlaps only corrupt input has.
func (t spanTable) normalize() (spanTable, [][2]int) {
	var aliases [][2]int
	slices.SortFunc(t, func(a, b span) int {
		if c := cmp.Compare(a.lo, b.lo); c != 0 {
			return c
		}
		return cmp.Compare(a.hi, b.hi)
	})
	out := t[:0]
	for _, s := range t {
		if s.lo == 0 || s.lo >= s.hi {
			continue
		}
		if n := len(out); n > 0 && s.lo < out[n-1].hi {
			if s.lo == out[n-1].lo && s.hi == out[n-1].hi && s.fn != out[n-1].fn {
				aliases = append(aliases, [2]int{s.fn, out[n-1].fn})
			}
			if s.hi <= out[n-1].hi {
				continue
			}
			s.lo = out[n-1].hi
		}
		out = append(out, s)
	}
	return out, aliases
}

// overlaps reports whether any range of a intersects any range of b.
func overlaps(a, b [][2]uint64) bool {
	for _, x := range a {
		for _, y := range b {
			if x[0] < y[1] && y[0] < x[1] {
				return true
			}
		}
	}
	return false
}

// find returns the index of the span holding a, or -1.
func (t spanTable) find(a uint64) int {
	j := sort.Search(len(t), func(i int) bool { return t[i].lo > a }) - 1
	if j < 0 || a >= t[j].hi {
		return -1
	}
	return j
}

// mergeRanges sorts and merges overlapping half-open ranges.
func mergeRanges(rs [][2]uint64) [][2]uint64 {
	slices.SortFunc(rs, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	out := rs[:0]
	for _, r := range rs {
		if r[0] >= r[1] {
			continue
		}
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// splitOwn divides each function's lines by source extent: own lines lie in
// its decl_file from its decl_line up to (not including) the next function
// definition in that file; all others come from inlined code. Inlined-
// subroutine address ranges are not used: gcc's do not cover every
// instruction of the inlined code, so they misfile lines both ways.
func splitOwn(res *cuResult, dies map[dwarf.Offset]*dieInfo) {
	defs := map[int][]int{} // file → sorted decl lines of definitions
	for _, di := range dies {
		if di.defn && di.declFile >= 0 && di.declLine > 0 {
			defs[di.declFile] = append(defs[di.declFile], di.declLine)
		}
	}
	for _, l := range defs {
		slices.Sort(l)
	}
	for i := range res.funcs {
		f := &res.funcs[i]
		all := sortUniq(f.own)
		if f.declFile < 0 || f.declLine <= 0 {
			f.own = all
			continue
		}
		lo, hi := uint64(f.declLine), uint64(1<<32)
		l := defs[f.declFile]
		if j, _ := slices.BinarySearch(l, f.declLine+1); j < len(l) {
			hi = uint64(l[j])
		}
		fk := uint64(f.declFile) << 32
		f.own, f.inl = nil, nil
		for _, k := range all {
			if k >= fk+lo && k < fk+hi {
				f.own = append(f.own, k)
			} else {
				f.inl = append(f.inl, k)
			}
		}
	}
}

func sortUniq(s []uint64) []uint64 {
	slices.Sort(s)
	return slices.Compact(s)
}

// normalizePath turns a DWARF file name into a kernel-tree path: cleaned,
// relative to the compilation directory when below it, and without a
// Debian-style out-of-tree build prefix (debian/build/build_*/).
func normalizePath(compDir, name string) string {
	if name == "" {
		return ""
	}
	p := path.Clean(name)
	if compDir != "" {
		cd := path.Clean(compDir)
		if !path.IsAbs(p) && path.IsAbs(cd) {
			p = path.Join(cd, p)
		}
		if cd != "." && strings.HasPrefix(p, cd+"/") {
			p = p[len(cd)+1:]
		}
	}
	// Build directories with a different comp_dir spelling (e.g. tools that
	// print the joined name): strip the Debian kernel build prefix.
	if i := strings.Index(p, "debian/build/build_"); i >= 0 && (i == 0 || p[i-1] == '/') {
		rest := p[i+len("debian/build/build_"):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			p = rest[j+1:]
		}
	}
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	return p
}
