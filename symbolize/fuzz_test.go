package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
)

// exercise calls every read path of ix; with fuzzed input it must not panic.
func exercise(ix *Index) {
	for f := range ix.All() {
		f.Lines()
		f.LineCount()
		f.Size()
		ix.FuncAt(f.Entry)
		ix.Lookup(f.Name)
	}
	ix.FuncAt(0)
	ix.FuncAt(^uint64(0))
	ix.WriteTo(&bytes.Buffer{})
}

func fixtureIndexFile(t testing.TB) []byte {
	ix, err := Build(compileFixture(t, t.TempDir(), "gcc", "5").path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	ix.WriteTo(&b)
	return b.Bytes()
}

// FuzzReadIndex: index files from disk are outside input.
func FuzzReadIndex(f *testing.F) {
	good := fixtureIndexFile(f)
	f.Add(good)
	f.Add(good[:headerSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		if ix, err := ReadIndex(b); err == nil {
			exercise(ix)
		}
	})
}

// FuzzDecodeIndex skips the checksum, so that the fuzzer reaches the table
// checks of the payload.
func FuzzDecodeIndex(f *testing.F) {
	good := fixtureIndexFile(f)
	f.Add(good[headerSize:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if ix, err := decode(p); err == nil {
			exercise(ix)
		}
	})
}

// FuzzDWARF feeds corrupt DWARF sections to the builder; panics are not
// recovered here (noRecover), so the fuzzer reports them.
func FuzzDWARF(f *testing.F) {
	ef, err := elf.Open(compileFixture(f, f.TempDir(), "gcc", "5").path)
	if err != nil {
		f.Fatal(err)
	}
	sec := func(name string) []byte {
		if s := ef.Section(name); s != nil {
			b, _ := s.Data()
			return b
		}
		return nil
	}
	f.Add(sec(".debug_info"), sec(".debug_abbrev"), sec(".debug_line"), sec(".debug_str"), sec(".debug_line_str"), sec(".debug_rnglists"))
	ef.Close()
	clang, err := elf.Open(compileFixture(f, f.TempDir(), "clang", "4").path)
	if err != nil {
		f.Fatal(err)
	}
	sec = func(name string) []byte {
		if s := clang.Section(name); s != nil {
			b, _ := s.Data()
			return b
		}
		return nil
	}
	f.Add(sec(".debug_info"), sec(".debug_abbrev"), sec(".debug_line"), sec(".debug_str"), sec(".debug_line_str"), sec(".debug_ranges"))
	clang.Close()
	f.Fuzz(func(t *testing.T, info, abbrev, line, str, lineStr, ranges []byte) {
		noRecover = true
		defer func() { noRecover = false }()
		in := buildInput{sections: map[string][]byte{
			".debug_info": info, ".debug_abbrev": abbrev, ".debug_line": line, ".debug_str": str,
			".debug_line_str": lineStr, ".debug_rnglists": ranges, ".debug_ranges": ranges,
		}}
		if ix, err := buildFromSections(in, nil); err == nil {
			exercise(ix)
		}
	})
}

// FuzzBuildELF: a whole (corrupt) vmlinux. Panics inside debug/elf and
// debug/dwarf are reported as errors by Build; this target checks that.
func FuzzBuildELF(f *testing.F) {
	b, err := os.ReadFile(compileFixture(f, f.TempDir(), "clang", "5").path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if ix, err := buildELF(b, nil); err == nil {
			exercise(ix)
		}
	})
}

func FuzzBuildIDFromNotes(f *testing.F) {
	f.Add([]byte("\x04\x00\x00\x00\x14\x00\x00\x00\x03\x00\x00\x00GNU\x00" + strings.Repeat("\xab", 20)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if id := buildIDFromNotes(b, binary.LittleEndian); len(id)%2 != 0 {
			t.Errorf("odd hex build-id %q", id)
		}
	})
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add("ffffffff81000000 T _text\nffffffff81001000 t foo.isra.0\nffffffffc0000000 t modfn\t[ext4]\n")
	f.Fuzz(func(t *testing.T, s string) {
		syms, err := ParseKallsyms(strings.NewReader(s))
		if err != nil {
			return
		}
		for i := 1; i < len(syms); i++ {
			if syms[i].Addr < syms[i-1].Addr {
				t.Fatal("not sorted")
			}
		}
		if ix, err := Estimate(syms); err == nil {
			exercise(ix)
		}
	})
}

// FuzzBuildModule: a whole (corrupt) relocatable module, whose relocations
// of debug sections are applied before DWARF is read; then placed.
func FuzzBuildModule(f *testing.F) {
	b, err := os.ReadFile(compileModule(f, f.TempDir()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := buildELF(b, nil)
		if err != nil {
			return
		}
		exercise(ix)
		bases := map[string]uint64{}
		for i, s := range ix.Sections() {
			bases[s.Name] = 0xffffffffc0000000 + uint64(i)<<24
		}
		if p, err := ix.Place(bases); err == nil {
			exercise(p)
		}
	})
}

// FuzzApplyRela: relocation entries with arbitrary offsets, symbols, types
// and addends never write outside the section.
func FuzzApplyRela(f *testing.F) {
	rb := make([]byte, 48)
	putRela(rb, 0, 1, elf.R_X86_64_64, 8)
	putRela(rb[24:], 8, 2, elf.R_X86_64_PC32, -4)
	f.Add(rb, 16)
	f.Fuzz(func(t *testing.T, rb []byte, n int) {
		if n < 0 || n > 1<<12 {
			return
		}
		syms := []elf.Symbol{{Name: "a", Section: 1, Value: 4}, {Name: "b", Section: 2}, {Name: "u"}}
		out := make([]byte, n)
		applyRela(out, rb, syms, func(i elf.SectionIndex) (uint64, bool) { return uint64(i) << 20, i == 1 || i == 2 })
	})
}

// FuzzParseSectionAddr: /sys/module/<m>/sections/<s> contents.
func FuzzParseSectionAddr(f *testing.F) {
	f.Add([]byte("0xffffffffc0a5e000\n"))
	f.Add([]byte("0x0000000000000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseSectionAddr(b)
		if err == nil && !strings.Contains(strings.ToLower(string(b)), strconv.FormatUint(a, 16)) {
			t.Errorf("%q parsed as %#x", b, a)
		}
	})
}
