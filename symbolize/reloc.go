package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

// Section is an executable section of a kernel module and the address the
// index gives it: Addr is the index address of its first byte. For a cached
// module index the addresses are a synthetic layout (sections apart, none at
// 0); an Index returned by OpenModule has the runtime addresses of the
// loaded module instead.
type Section struct {
	Name string
	Addr uint64
	Size uint64
}

// relLayout gives every allocated section of a relocatable ELF file (a
// kernel module) an address of its own: the sections do not overlap, no
// section starts at 0 (liveRanges drops code at 0 as discarded), and the
// whole layout stays below 4 GiB so that R_X86_64_32 relocations of debug
// sections against code still fit.
func relLayout(ef *elf.File) ([]uint64, error) {
	base := make([]uint64, len(ef.Sections))
	cur := uint64(0x100000)
	for i, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		align := max(s.Addralign, 16)
		if align&(align-1) != 0 || align > 1<<20 {
			return nil, fmt.Errorf("section %s: alignment %d", s.Name, s.Addralign)
		}
		cur = (cur + align - 1) &^ (align - 1)
		base[i] = cur
		// A gap of at least a page keeps ranges of two sections from
		// touching.
		cur = (cur + s.Size + 0x1fff) &^ 0xfff
		if cur >= 1<<32 || s.Size >= 1<<32 {
			return nil, fmt.Errorf("module sections exceed 4 GiB (section %s, %d bytes)", s.Name, s.Size)
		}
	}
	return base, nil
}

// execSections lists the executable sections of ef at the addresses of
// layout, in section order. Two executable sections of one name are an
// error: the kernel names a module's sections by name only
// (/sys/module/<m>/sections/<name>), so their runtime addresses could not be
// told apart.
func execSections(ef *elf.File, layout []uint64) ([]Section, error) {
	var out []Section
	seen := map[string]bool{}
	for i, s := range ef.Sections {
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("two executable sections named %s: runtime addresses are given by section name and could not be told apart", s.Name)
		}
		seen[s.Name] = true
		out = append(out, Section{Name: s.Name, Addr: layout[i], Size: s.Size})
	}
	return out, nil
}

// relocateDebug returns a copy of the debug section named name (contents
// data) of a relocatable ELF file with its relocations (.rela<name>)
// applied, every allocated section placed at layout[section index].
// References to non-allocated sections (.debug_str, .debug_line, …) resolve
// to offsets within them. A relocation type this reader does not know is an
// error that names it: skipping it would leave wrong addresses.
func relocateDebug(ef *elf.File, syms []elf.Symbol, layout []uint64, name string, data []byte) ([]byte, error) {
	var rela *elf.Section
	for _, s := range ef.Sections {
		if s.Type == elf.SHT_RELA && s.Name == ".rela"+name {
			rela = s
			break
		}
		if s.Type == elf.SHT_REL && s.Name == ".rel"+name {
			return nil, fmt.Errorf("section %s: REL relocations (without addend) are not supported", s.Name)
		}
	}
	if rela == nil {
		return data, nil
	}
	rb, err := rela.Data()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rela.Name, err)
	}
	out := make([]byte, len(data))
	copy(out, data)
	if err := applyRela(out, rb, syms, func(shndx elf.SectionIndex) (uint64, bool) {
		switch {
		case shndx == elf.SHN_ABS:
			return 0, true
		case int(shndx) > 0 && int(shndx) < len(layout):
			return layout[shndx], true
		}
		return 0, false
	}); err != nil {
		return nil, fmt.Errorf("relocate %s: %w", name, err)
	}
	return out, nil
}

// applyRela applies x86-64 RELA entries (rb, 24 bytes each) to out, the
// contents of a non-allocated section at address 0. syms are the symbols of
// .symtab without the null symbol (as debug/elf returns them); secBase gives
// the address of a section, or false for one that has none (undefined).
func applyRela(out, rb []byte, syms []elf.Symbol, secBase func(elf.SectionIndex) (uint64, bool)) error {
	if len(rb)%24 != 0 {
		return fmt.Errorf("relocation table of %d bytes is not a whole number of entries", len(rb))
	}
	for i := 0; i < len(rb); i += 24 {
		off := binary.LittleEndian.Uint64(rb[i:])
		info := binary.LittleEndian.Uint64(rb[i+8:])
		add := int64(binary.LittleEndian.Uint64(rb[i+16:]))
		typ := elf.R_X86_64(info & 0xffffffff)
		si := info >> 32
		if typ == elf.R_X86_64_NONE {
			continue
		}
		var s uint64
		if si != 0 {
			if si > uint64(len(syms)) {
				return fmt.Errorf("entry %d: symbol %d of %d", i/24, si, len(syms))
			}
			sym := syms[si-1]
			base, ok := secBase(sym.Section)
			if !ok {
				return fmt.Errorf("entry %d (%s): symbol %q is undefined or in section %d, which has no address", i/24, typ, sym.Name, sym.Section)
			}
			s = base + sym.Value
		}
		v := s + uint64(add)
		var size uint64
		switch typ {
		case elf.R_X86_64_64:
			size = 8
		case elf.R_X86_64_32:
			if v >= 1<<32 {
				return fmt.Errorf("entry %d (%s): value %#x does not fit in 32 bits", i/24, typ, v)
			}
			size = 4
		case elf.R_X86_64_32S:
			if int64(v) != int64(int32(v)) {
				return fmt.Errorf("entry %d (%s): value %#x does not fit in 32 bits", i/24, typ, v)
			}
			size = 4
		case elf.R_X86_64_PC32, elf.R_X86_64_PLT32:
			v -= off // the place is at its offset: the section's address is 0
			if int64(v) != int64(int32(v)) {
				return fmt.Errorf("entry %d (%s): value %#x does not fit in 32 bits", i/24, typ, v)
			}
			size = 4
		case elf.R_X86_64_PC64:
			v -= off
			size = 8
		default:
			return fmt.Errorf("entry %d: relocation type %s (%d) is not supported in debug sections", i/24, strings.TrimPrefix(typ.String(), "elf."), uint32(typ))
		}
		if off > uint64(len(out)) || size > uint64(len(out))-off {
			return fmt.Errorf("entry %d (%s): offset %#x past the section (%d bytes)", i/24, typ, off, len(out))
		}
		if size == 8 {
			binary.LittleEndian.PutUint64(out[off:], v)
		} else {
			binary.LittleEndian.PutUint32(out[off:], uint32(v))
		}
	}
	return nil
}
