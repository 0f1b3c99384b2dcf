package symbolize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The index file: a 32-byte header, then the payload.
//
//	magic "HAPSIDX\n" | version u32 | flags u32 | payload length u64 | CRC-32C of payload u32 | 0 u32
//
// Payload (little endian; "u32s" is a u32 count then that many u32):
//
//	text u64 | build-id (u32 len, bytes) | strings (u32 n, u32 blob len, blob, n+1 u32 offsets)
//	| functions (u32 n, n × 56 bytes) | ranges (u32 n, n × (lo u64, hi u64))
//	| by-address order u32s | names (u32 n, n × (string u32, function u32), sorted by string)
//	| lines (u32 len, bytes) | module name (u32 len, bytes)
//	| sections (u32 n, n × (name: u32 len, bytes; addr u64; size u64))
//
// A function's lines are its own keys then its inlined keys, each list sorted
// and delta-encoded as uvarints; a key is fileString<<32 | line.
//
// Version 4: one function per symbol (clones no longer merged), its symbol
// name recorded; lines are those of byte-owning rows (version 2 counted
// every row). Version 5: the module name and its executable sections (empty
// for vmlinux). An older file is rebuilt, not read.
const (
	indexMagic   = "HAPSIDX\n"
	indexVersion = 5
	headerSize   = 32
	funcRecSize  = 56
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encode(raw *rawIndex) []byte {
	sortStrings(raw)
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	u64(raw.text)
	u32(uint32(len(raw.buildID)))
	b = append(b, raw.buildID...)
	u32(uint32(len(raw.strs)))
	blobLen := 0
	for _, s := range raw.strs {
		blobLen += len(s)
	}
	u32(uint32(blobLen))
	for _, s := range raw.strs {
		b = append(b, s...)
	}
	off := 0
	u32(0)
	for _, s := range raw.strs {
		off += len(s)
		u32(uint32(off))
	}

	var lines []byte
	var ranges [][2]uint64
	u32(uint32(len(raw.funcs)))
	for _, f := range raw.funcs {
		lo := len(lines)
		lines = appendKeys(lines, f.own)
		lines = appendKeys(lines, f.inl)
		u32(f.name)
		u32(f.file)
		u32(f.line)
		u32(f.flags)
		u64(f.entry)
		u32(uint32(len(ranges)))
		u32(uint32(len(f.ranges)))
		u32(uint32(lo))
		u32(uint32(len(lines) - lo))
		u32(uint32(len(f.own)))
		u32(uint32(len(f.inl)))
		u32(f.est)
		u32(f.sym)
		ranges = append(ranges, f.ranges...)
	}
	u32(uint32(len(ranges)))
	for _, r := range ranges {
		u64(r[0])
		u64(r[1])
	}
	order := make([]uint32, len(ranges))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortStableFunc(order, func(x, y uint32) int {
		return cmpU64(ranges[x][0], ranges[y][0])
	})
	u32(uint32(len(order)))
	for _, v := range order {
		u32(v)
	}
	names := make([][2]uint32, 0, len(raw.funcs)+len(raw.aliases))
	for i, f := range raw.funcs {
		names = append(names, [2]uint32{f.name, uint32(i)})
	}
	names = append(names, raw.aliases...)
	slices.SortStableFunc(names, func(x, y [2]uint32) int {
		if c := strings.Compare(raw.strs[x[0]], raw.strs[y[0]]); c != 0 {
			return c
		}
		return cmpU64(raw.funcs[x[1]].entry, raw.funcs[y[1]].entry)
	})
	u32(uint32(len(names)))
	for _, v := range names {
		u32(v[0])
		u32(v[1])
	}
	u32(uint32(len(lines)))
	b = append(b, lines...)
	u32(uint32(len(raw.module)))
	b = append(b, raw.module...)
	u32(uint32(len(raw.secs)))
	for _, sec := range raw.secs {
		u32(uint32(len(sec.Name)))
		b = append(b, sec.Name...)
		u64(sec.Addr)
		u64(sec.Size)
	}
	return b
}

// sortStrings orders the string table, so that keys (fileString<<32|line)
// sort by file name, then line.
func sortStrings(raw *rawIndex) {
	perm := make([]uint32, len(raw.strs))
	for i := range perm {
		perm[i] = uint32(i)
	}
	slices.SortStableFunc(perm, func(x, y uint32) int { return strings.Compare(raw.strs[x], raw.strs[y]) })
	newID := make([]uint32, len(perm))
	strs := make([]string, len(perm))
	for to, from := range perm {
		newID[from] = uint32(to)
		strs[to] = raw.strs[from]
	}
	raw.strs = strs
	remap := func(ks []uint64) []uint64 {
		out := make([]uint64, len(ks))
		for i, k := range ks {
			out[i] = uint64(newID[k>>32])<<32 | k&0xffffffff
		}
		slices.Sort(out)
		return out
	}
	for i := range raw.funcs {
		f := &raw.funcs[i]
		f.name, f.file, f.sym = newID[f.name], newID[f.file], newID[f.sym]
		f.own, f.inl = remap(f.own), remap(f.inl)
	}
	for i := range raw.aliases {
		raw.aliases[i][0] = newID[raw.aliases[i][0]]
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func appendKeys(b []byte, keys []uint64) []byte {
	var prev uint64
	for _, k := range keys {
		b = binary.AppendUvarint(b, k-prev)
		prev = k
	}
	return b
}

// payloadReader reads the payload with bounds checks; the first failure sticks.
type payloadReader struct {
	b   []byte
	err error
}

func (r *payloadReader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *payloadReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

// u32s reads a count and that many u32s.
func (r *payloadReader) u32s() []uint32 {
	n := uint64(r.u32())
	raw := r.take(4 * n)
	if raw == nil {
		return nil
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return out
}

// decode checks every reference in the payload and builds the Index.
func decode(p []byte) (*Index, error) {
	r := &payloadReader{b: p}
	ix := &Index{}
	ix.text = r.u64()
	ix.buildID = string(r.take(uint64(r.u32())))
	nstr := uint64(r.u32())
	blob := string(r.take(uint64(r.u32())))
	offs := r.take(4 * (nstr + 1))
	if r.err != nil {
		return nil, fmt.Errorf("index strings: %w", r.err)
	}
	ix.strs = make([]string, nstr)
	prev := uint32(0)
	for i := range ix.strs {
		lo, hi := binary.LittleEndian.Uint32(offs[4*i:]), binary.LittleEndian.Uint32(offs[4*i+4:])
		if lo != prev || hi < lo || uint64(hi) > uint64(len(blob)) {
			return nil, errors.New("index strings: bad offsets")
		}
		ix.strs[i], prev = blob[lo:hi], hi
	}
	nfn := uint64(r.u32())
	recs := r.take(funcRecSize * nfn)
	nr := uint64(r.u32())
	rraw := r.take(16 * nr)
	ix.byAddr = r.u32s()
	nNames := uint64(r.u32())
	namesRaw := r.take(8 * nNames)
	ix.lines = r.take(uint64(r.u32()))
	ix.module = string(r.take(uint64(r.u32())))
	nsec := uint64(r.u32())
	if nsec > uint64(len(r.b))/20 { // each takes at least 20 bytes
		return nil, errors.New("index: section count past the payload")
	}
	for range nsec {
		sec := Section{Name: string(r.take(uint64(r.u32()))), Addr: r.u64(), Size: r.u64()}
		if r.err == nil && sec.Addr+sec.Size < sec.Addr {
			return nil, errors.New("index: section wraps around")
		}
		ix.secs = append(ix.secs, sec)
	}
	if r.err != nil {
		return nil, fmt.Errorf("index tables: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, errors.New("index: trailing bytes")
	}
	ix.ranges = make([]Range, nr)
	for i := range ix.ranges {
		ix.ranges[i] = Range{binary.LittleEndian.Uint64(rraw[16*i:]), binary.LittleEndian.Uint64(rraw[16*i+8:])}
	}
	ix.funcs = make([]Function, nfn)
	ix.owner = make([]uint32, nr)
	owned := make([]bool, nr)
	for i := range ix.funcs {
		rec := recs[funcRecSize*i:]
		u := func(at int) uint32 { return binary.LittleEndian.Uint32(rec[at:]) }
		name, file, sym := uint64(u(0)), uint64(u(4)), uint64(u(52))
		rOff, rN := uint64(u(24)), uint64(u(28))
		lOff, lLen := uint64(u(32)), uint64(u(36))
		if name >= nstr || file >= nstr || sym >= nstr || rOff+rN > nr || lOff+lLen > uint64(len(ix.lines)) {
			return nil, fmt.Errorf("index: function %d refers outside the tables", i)
		}
		f := &ix.funcs[i]
		*f = Function{
			Name: ix.strs[name], Symbol: ix.strs[sym], File: ix.strs[file], Line: int(u(8)),
			Entry:  binary.LittleEndian.Uint64(rec[16:]),
			Ranges: ix.ranges[rOff : rOff+rN : rOff+rN],
			ix:     ix, flags: u(12), linesOff: uint32(lOff), linesLen: uint32(lLen),
			nOwn: u(40), nInl: u(44), est: u(48),
		}
		f.Estimated = f.flags&flagEstimated != 0
		for j := rOff; j < rOff+rN; j++ {
			if owned[j] {
				return nil, fmt.Errorf("index: range %d shared by two functions", j)
			}
			owned[j], ix.owner[j] = true, uint32(i)
		}
	}
	if uint64(len(ix.byAddr)) != nr {
		return nil, errors.New("index: address order has the wrong length")
	}
	for i, v := range ix.byAddr {
		if uint64(v) >= nr || !owned[v] || (i > 0 && ix.ranges[ix.byAddr[i-1]].Lo > ix.ranges[v].Lo) {
			return nil, errors.New("index: bad address order")
		}
	}
	ix.byName = make([]nameRef, nNames)
	for i := range ix.byName {
		n := nameRef{binary.LittleEndian.Uint32(namesRaw[8*i:]), binary.LittleEndian.Uint32(namesRaw[8*i+4:])}
		if uint64(n.name) >= nstr || uint64(n.fn) >= nfn || (i > 0 && ix.strs[ix.byName[i-1].name] > ix.strs[n.name]) {
			return nil, errors.New("index: bad name table")
		}
		ix.byName[i] = n
	}
	return ix, nil
}

// WriteTo writes the index in its versioned, checksummed file format.
func (ix *Index) WriteTo(w io.Writer) (int64, error) {
	p := encode(ix.raw())
	var h [headerSize]byte
	copy(h[:], indexMagic)
	binary.LittleEndian.PutUint32(h[8:], indexVersion)
	binary.LittleEndian.PutUint64(h[16:], uint64(len(p)))
	binary.LittleEndian.PutUint32(h[24:], crc32.Checksum(p, castagnoli))
	n, err := w.Write(h[:])
	if err != nil {
		return int64(n), err
	}
	m, err := w.Write(p)
	return int64(n + m), err
}

// ReadIndex parses an index file written by WriteTo. Any damage (wrong
// version, bad checksum, truncation) is an error: rebuild the index.
func ReadIndex(data []byte) (*Index, error) {
	if len(data) < headerSize || string(data[:8]) != indexMagic {
		return nil, errors.New("not a hapscope index file")
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != indexVersion {
		return nil, fmt.Errorf("index file version %d, this hapscope reads %d: rebuild it with `hapscope index`", v, indexVersion)
	}
	n := binary.LittleEndian.Uint64(data[16:])
	if n != uint64(len(data)-headerSize) {
		return nil, fmt.Errorf("index file truncated or padded (%d payload bytes, header says %d)", len(data)-headerSize, n)
	}
	p := data[headerSize:]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(data[24:]) {
		return nil, errors.New("index file checksum mismatch: rebuild it with `hapscope index`")
	}
	return decode(bytes.Clone(p))
}

// raw turns the Index back into its unencoded form (for WriteTo).
func (ix *Index) raw() *rawIndex {
	raw := &rawIndex{buildID: ix.buildID, text: ix.text, strs: ix.strs, module: ix.module, secs: ix.secs}
	sid := make(map[string]uint32, len(ix.strs))
	for i := len(ix.strs) - 1; i >= 0; i-- {
		sid[ix.strs[i]] = uint32(i)
	}
	for i := range ix.funcs {
		f := &ix.funcs[i]
		rf := rawFunc{name: sid[f.Name], sym: sid[f.Symbol], file: sid[f.File], line: uint32(f.Line), flags: f.flags, entry: f.Entry, est: f.est}
		for _, r := range f.Ranges {
			rf.ranges = append(rf.ranges, [2]uint64{r.Lo, r.Hi})
		}
		b := ix.lines[f.linesOff : f.linesOff+f.linesLen]
		rf.own, b = decodeKeys(b, int(f.nOwn), len(ix.strs))
		rf.inl, _ = decodeKeys(b, int(f.nInl), len(ix.strs))
		raw.funcs = append(raw.funcs, rf)
	}
	for _, n := range ix.byName {
		if ix.strs[n.name] != ix.funcs[n.fn].Name {
			raw.aliases = append(raw.aliases, [2]uint32{n.name, n.fn})
		}
	}
	return raw
}

// decodeKeys reads n delta-encoded line keys (file string << 32 | line) of
// a string table of nstr; like decodeLines, it stops early on corrupt input,
// a key whose file is not in the table included.
func decodeKeys(b []byte, n, nstr int) ([]uint64, []byte) {
	out := make([]uint64, 0, min(n, len(b)))
	var k uint64
	for range n {
		d, m := binary.Uvarint(b)
		if m <= 0 {
			return out, nil
		}
		b, k = b[m:], k+d
		if k>>32 >= uint64(nstr) {
			return out, nil
		}
		out = append(out, k)
	}
	return out, b
}

// writeFileAtomic writes the index to path through a temporary file.
func (ix *Index) writeFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".index-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := ix.WriteTo(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
