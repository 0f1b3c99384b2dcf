package symbolize

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

// Kernel identifies the kernel that runtime addresses came from.
type Kernel struct {
	Release string // uname -r
	BuildID string // hex GNU build-id, from /sys/kernel/notes
	Text    uint64 // runtime address of _text, from /proc/kallsyms (0: unknown)
}

// RunningKernel describes the kernel this process runs on. Text stays 0 when
// /proc/kallsyms hides addresses (kptr_restrict, not root).
func RunningKernel() (Kernel, error) {
	var k Kernel
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return k, fmt.Errorf("uname: %w", err)
	}
	k.Release = unix.ByteSliceToString(u.Release[:])
	notes, err := os.ReadFile("/sys/kernel/notes")
	if err != nil {
		return k, fmt.Errorf("read the running kernel's build-id: %w", err)
	}
	k.BuildID = buildIDFromNotes(notes, binary.NativeEndian)
	if f, err := os.Open("/proc/kallsyms"); err == nil {
		defer f.Close()
		syms, err := ParseKallsyms(f)
		if err == nil {
			for _, s := range syms {
				if s.Name == "_text" {
					k.Text = s.Addr
					break
				}
			}
		}
	}
	return k, nil
}

// Offset is the KASLR slide: runtime address − Offset = vmlinux address.
// It is 0 when either _text is unknown.
func (k Kernel) Offset(ix *Index) uint64 {
	if k.Text == 0 || ix.Text() == 0 {
		return 0
	}
	return k.Text - ix.Text()
}

// buildIDFromNotes finds the NT_GNU_BUILD_ID in a sequence of ELF notes
// (the contents of /sys/kernel/notes or of a SHT_NOTE section).
func buildIDFromNotes(b []byte, bo binary.ByteOrder) string {
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		nameEnd := (namesz + 3) &^ 3
		descEnd := (descsz + 3) &^ 3
		if nameEnd > uint64(len(b)) || nameEnd+descEnd > uint64(len(b)) {
			return ""
		}
		name := b[:namesz]
		desc := b[nameEnd : nameEnd+descsz]
		b = b[nameEnd+descEnd:]
		if typ == 3 && string(bytes.TrimRight(name, "\x00")) == "GNU" && len(desc) > 0 {
			return hex.EncodeToString(desc)
		}
	}
	return ""
}

// Symbol is one /proc/kallsyms text symbol.
type Symbol struct {
	Addr   uint64
	Name   string
	Module string // "" for vmlinux
}

// ParseKallsyms reads the text (t/T) symbols of /proc/kallsyms format,
// sorted by address. Lines it cannot parse are an error.
func ParseKallsyms(r io.Reader) ([]Symbol, error) {
	ks, err := kallsyms.Parse(r, func(t byte, _ string) bool { return kallsyms.IsText(t) })
	if err != nil {
		return nil, fmt.Errorf("read kallsyms: %w", err)
	}
	out := make([]Symbol, len(ks))
	for i, k := range ks {
		out[i] = Symbol{Addr: k.Addr, Name: k.Name, Module: k.Module}
	}
	slices.SortStableFunc(out, func(a, b Symbol) int { return cmpU64(a.Addr, b.Addr) })
	return out, nil
}

// BytesPerLine converts code size to an estimated line count where there is
// no DWARF: Σ kallsyms sizes ÷ Σ distinct lines (own ∪ inlined, as Lines
// defines them) over the functions with DWARF of the Debian 6.12 cloud
// vmlinux (gcc 14). TestVmlinuxCalibrate measures it, and the error of the
// estimate, on any vmlinux with DWARF; TestVmlinuxEstimateOtherKernel checks
// it on Debian's 6.1 (gcc 12), a kernel it was not calibrated on. An
// estimate is a sum of per-function sizes: it cannot know which header
// lines two functions share, so it exceeds the union of exact lines.
const BytesPerLine = 12.97

func estimateLines(size uint64) uint32 {
	if size == 0 {
		return 0
	}
	return uint32(max(1, float64(size)/BytesPerLine+0.5))
}

// Estimate builds an Index without DWARF from kallsyms text symbols of
// vmlinux (Module ""): each function's size is the distance to the next
// symbol, and its LineCount the size-based estimate. Every function is
// marked Estimated. Addresses stay runtime addresses (Text is _text).
func Estimate(syms []Symbol) (*Index, error) {
	return estimate(syms, "")
}

// EstimateModule is Estimate for the kallsyms text symbols of one module
// (Symbol.Module == module), for a module without DWARF: runtime addresses,
// every function Estimated, Module set. The module's last symbol has no
// known end and is left out.
func EstimateModule(syms []Symbol, module string) (*Index, error) {
	if module == "" {
		return nil, errors.New("estimate module: no module name")
	}
	return estimate(syms, moduleName(module))
}

func estimate(syms []Symbol, module string) (*Index, error) {
	var vm []Symbol
	for _, s := range syms {
		if s.Module == module && s.Addr != 0 {
			vm = append(vm, s) // __pfx_ padding stays: it ends the function before it
		}
	}
	if len(vm) == 0 {
		what := "vmlinux"
		if module != "" {
			what = "module " + module
		}
		return nil, fmt.Errorf("no %s text symbols with addresses (as root, with kernel.kptr_restrict=0, /proc/kallsyms shows them)", what)
	}
	slices.SortStableFunc(vm, func(a, b Symbol) int { return cmpU64(a.Addr, b.Addr) })
	strs := &interner{idx: map[string]uint32{}}
	strs.id("")
	raw := &rawIndex{}
	for i, s := range vm {
		if s.Name == "_text" {
			raw.text = s.Addr
		}
		if i+1 == len(vm) || vm[i+1].Addr == s.Addr || strings.HasPrefix(s.Name, "__pfx_") || strings.HasPrefix(s.Name, "__cfi_") {
			continue // last symbol (unknown size), an alias, or padding
		}
		size := vm[i+1].Addr - s.Addr
		raw.funcs = append(raw.funcs, rawFunc{
			name: strs.id(baseName(s.Name)), sym: strs.id(s.Name), entry: s.Addr, flags: flagEstimated | flagFromSymbol,
			ranges: [][2]uint64{{s.Addr, vm[i+1].Addr}}, est: estimateLines(size),
		})
		if s.Name != baseName(s.Name) {
			raw.aliases = append(raw.aliases, [2]uint32{strs.id(s.Name), uint32(len(raw.funcs) - 1)})
		}
	}
	raw.strs = strs.strs
	raw.module = module
	return decode(encode(raw))
}
