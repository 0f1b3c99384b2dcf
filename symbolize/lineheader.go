package symbolize

import (
	"encoding/binary"
	"fmt"
)

// checkLineHeader rejects DWARF 5 line-table headers whose directory or file
// counts cannot fit in the header: debug/dwarf allocates and loops by those
// counts before checking them, which hangs or exhausts memory on corrupt
// input. Other versions pass through.
func checkLineHeader(sec []byte, off uint64) error {
	bad := func(what string) error {
		return fmt.Errorf("corrupt line table header at .debug_line+%#x: %s", off, what)
	}
	if off >= uint64(len(sec)) {
		return bad("offset past the section")
	}
	b := sec[off:]
	offSize := uint64(4)
	if len(b) < 4 {
		return bad("truncated")
	}
	unitLen := uint64(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if unitLen == 0xffffffff {
		if len(b) < 8 {
			return bad("truncated")
		}
		unitLen, b, offSize = binary.LittleEndian.Uint64(b), b[8:], 8
	}
	if unitLen > uint64(len(b)) {
		return bad("unit length past the section")
	}
	b = b[:unitLen]
	if len(b) < 2 {
		return bad("truncated")
	}
	if v := binary.LittleEndian.Uint16(b); v != 5 {
		return nil
	}
	// version 2, address_size 1, seg_sel_size 1, header_length offSize
	if uint64(len(b)) < 4+offSize {
		return bad("truncated")
	}
	var hdrLen uint64
	if offSize == 4 {
		hdrLen = uint64(binary.LittleEndian.Uint32(b[4:]))
	} else {
		hdrLen = binary.LittleEndian.Uint64(b[4:])
	}
	b = b[4+offSize:]
	if hdrLen > uint64(len(b)) {
		return bad("header length past the unit")
	}
	h := b[:hdrLen]
	// min_inst_length, max_ops, default_is_stmt, line_base, line_range, opcode_base
	if len(h) < 6 {
		return bad("truncated")
	}
	opBase := int(h[5])
	h = h[6:]
	if opBase < 1 || len(h) < opBase-1 {
		return bad("opcode lengths")
	}
	for i := 1; i < opBase; i++ { // standard_opcode_lengths
		h = h[1:]
	}
	for range 2 { // directories, then file names
		if len(h) < 1 {
			return bad("truncated entry formats")
		}
		nfmt := int(h[0])
		h = h[1:]
		forms := make([]uint64, nfmt)
		for i := range nfmt {
			for j := range 2 { // content type, form
				v, n := binary.Uvarint(h)
				if n <= 0 {
					return bad("entry format")
				}
				if j == 1 {
					forms[i] = v
				}
				h = h[n:]
			}
		}
		count, n := binary.Uvarint(h)
		if n <= 0 {
			return bad("entry count")
		}
		h = h[n:]
		// Every entry takes at least one byte per format.
		if count > 0 && (nfmt == 0 || count > uint64(len(h))/uint64(nfmt)) {
			return bad(fmt.Sprintf("%d entries cannot fit in %d header bytes", count, len(h)))
		}
		for range count {
			for _, form := range forms {
				k := skipForm(h, form, offSize)
				if k < 0 {
					return bad(fmt.Sprintf("entry with form %#x", form))
				}
				h = h[k:]
			}
		}
	}
	return nil
}

// skipForm returns the size of a value of form at the start of b, or -1.
func skipForm(b []byte, form, offSize uint64) int {
	fixed := func(n int) int {
		if n > len(b) {
			return -1
		}
		return n
	}
	switch form {
	case 0x08: // DW_FORM_string
		for i, c := range b {
			if c == 0 {
				return i + 1
			}
		}
		return -1
	case 0x0e, 0x1f, 0x17: // strp, line_strp, sec_offset
		return fixed(int(offSize))
	case 0x0b, 0x25: // data1, strx1
		return fixed(1)
	case 0x05, 0x26: // data2, strx2
		return fixed(2)
	case 0x27: // strx3
		return fixed(3)
	case 0x06, 0x28: // data4, strx4
		return fixed(4)
	case 0x07: // data8
		return fixed(8)
	case 0x1e: // data16
		return fixed(16)
	case 0x0f, 0x1a: // udata, strx
		_, n := binary.Uvarint(b)
		if n <= 0 {
			return -1
		}
		return n
	case 0x0d: // sdata
		_, n := binary.Varint(b)
		if n <= 0 {
			return -1
		}
		return n
	case 0x09: // block
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return -1
		}
		return n + int(l)
	}
	return -1
}
