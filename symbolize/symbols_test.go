package symbolize

import (
	"debug/elf"
	"slices"
	"strings"
	"testing"
)

// symbolAgreement checks that every text symbol (as kallsyms lists them,
// padding excluded) resolves by address to a function of the same C name.
// It returns how many did, of how many, and examples of the rest.
func symbolAgreement(ix *Index, syms []Symbol, offset uint64) (ok, total int, bad []string) {
	for _, s := range syms {
		if s.Module != "" || strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_") || s.Addr < offset {
			continue
		}
		total++
		f := ix.FuncAt(s.Addr - offset)
		switch {
		case f != nil && (f.Name == baseName(s.Name) || slices.Contains(ix.Lookup(s.Name), f)):
			ok++
		case len(bad) < 15:
			name := "<none>"
			if f != nil {
				name = f.Name
			}
			bad = append(bad, s.Name+" → "+name)
		}
	}
	return ok, total, bad
}

func TestVmlinuxSymbols(t *testing.T) {
	path := testVMLinux(t)
	ix, err := Build(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, total, bad := symbolAgreement(ix, sizedTextSymbols(t, path), 0)
	t.Logf("%d of %d sized text symbols resolve to a function of their name; others: %v", ok, total, bad)
	if ok < total {
		t.Errorf("%d symbols do not resolve to their function", total-ok)
	}
}

// sizedTextSymbols are the function symbols of the vmlinux's ELF symbol
// table that have a size (kallsyms also lists labels inside functions).
func sizedTextSymbols(t testing.TB, path string) []Symbol {
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	es, _ := ef.Symbols()
	var syms []Symbol
	for _, s := range es {
		typ := elf.ST_TYPE(s.Info)
		if int(s.Section) < len(ef.Sections) && ef.Sections[s.Section].Flags&elf.SHF_EXECINSTR != 0 && s.Value != 0 && (typ == elf.STT_FUNC || typ == elf.STT_NOTYPE) && s.Size > 0 {
			syms = append(syms, Symbol{Addr: s.Value, Name: s.Name})
		}
	}
	return syms
}
