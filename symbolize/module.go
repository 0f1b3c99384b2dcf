package symbolize

import (
	"cmp"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ModuleOptions say which kernel module to symbolize, where its debug info
// is and where the loaded module's code lies.
type ModuleOptions struct {
	// Name is the module's name as /sys/module and /proc/kallsyms spell it
	// ("nf_conntrack"; a file name's dashes become underscores).
	Name string
	// Path is the module's .ko with DWARF, or a directory tree to search
	// for it (an unpacked debug package). Empty: the distribution's places
	// for Kernel.Release (/usr/lib/debug/lib/modules/<release>, then
	// /lib/modules/<release>), then debuginfod (DEBUGINFOD_URLS) by
	// build-id. A tree is searched for kernel/**/<Name>.ko, then, if no file
	// of that name has the build-id asked for, every .ko by its build-id.
	Path string
	// Kernel gives the release to search for. Zero: the running kernel's.
	Kernel Kernel
	// BuildID is the build-id (hex) of the module the addresses come from;
	// the debug file must have it. Empty with Sections nil: the loaded
	// module's, from /sys/module/<Name>/notes/.note.gnu.build-id. Empty
	// with Sections set: no check.
	BuildID string
	// Sections are the runtime addresses of the loaded module's sections
	// by name (".text", ".text.unlikely", ".init.text", …). Nil: read from
	// /sys/module/<Name>/sections (root only). Empty, not nil: the index
	// keeps its own layout (see Index.Sections).
	Sections map[string]uint64
	// CacheDir holds indexes by build-id, as for Open.
	CacheDir string
	// Rebuild ignores a cached index (the new one replaces it).
	Rebuild bool
}

// OpenModule returns the index of a kernel module's code. Its functions are
// the module's symbols, as Open's are vmlinux's, and its addresses are the
// runtime addresses of o.Sections: FuncAt takes an address the loaded
// module's code runs at (a /proc/kallsyms address, a probe's IP), Entry and
// Ranges are runtime addresses, Module names the module. Functions of a
// section that o.Sections does not place are left out (their lines are in
// the cached index). The kernel frees a module's .init.* sections once its
// init function has returned, and /sys/module keeps showing their old
// addresses: an address there belongs to this module's init code only while
// the module initializes. The module's DWARF, relocated with every section at an
// address of its own, is indexed once per build-id and cached like
// vmlinux's.
//
// Errors wrap ErrNoDebugInfo when no .ko with DWARF was found (Estimate-
// Module is then the fallback) and ErrBuildIDMismatch when the debug file or
// cached index is of another build of the module.
func OpenModule(ctx context.Context, o ModuleOptions) (*Index, error) {
	if o.Name == "" {
		return nil, errors.New("open module index: no module name")
	}
	name := moduleName(o.Name)
	release := o.Kernel.Release
	if release == "" {
		k, err := RunningKernel()
		if err != nil {
			return nil, err
		}
		release = k.Release
	}
	id, sections := o.BuildID, o.Sections
	if sections == nil {
		s, err := ModuleSections(name)
		if err != nil {
			return nil, err
		}
		sections = s
		if id == "" {
			if id, err = ModuleBuildID(name); err != nil {
				return nil, err
			}
		}
	}
	cacheDir, err := cacheDirOr(o.CacheDir)
	if err != nil {
		return nil, err
	}
	place := func(ix *Index) (*Index, error) {
		if ix.module == "" {
			ix.module = name
		}
		if len(sections) == 0 {
			return ix, nil
		}
		return ix.Place(sections)
	}
	isFile := false
	if st, err := os.Stat(o.Path); err == nil && st.Mode().IsRegular() {
		isFile = true
	}
	if id != "" && !isFile && !o.Rebuild {
		if ix, err := loadCached(cacheDir, id); err == nil && ix.BuildID() == id && len(ix.secs) > 0 {
			return place(ix)
		}
	}
	path := o.Path
	if !isFile {
		p, err := findModuleDebug(ctx, name, release, id, o.Path, cacheDir)
		if err != nil {
			return nil, err
		}
		path = p
	}
	fid, err := fileBuildID(path, release)
	if err != nil {
		return nil, err
	}
	if id != "" && fid != id {
		return nil, fmt.Errorf("%w: %s has build-id %s but module %s has %s: its lines would be wrong; use the debug file of that exact build (Debian: linux-image-%s-dbg)", ErrBuildIDMismatch, path, orNone(fid), name, id, release)
	}
	if fid != "" && !o.Rebuild {
		if ix, err := loadCached(cacheDir, fid); err == nil && ix.BuildID() == fid && len(ix.secs) > 0 {
			return place(ix)
		}
	}
	ix, err := Build(path, nil)
	if err != nil {
		return nil, err
	}
	if len(ix.secs) == 0 {
		return nil, fmt.Errorf("%s is not a kernel module (not a relocatable ELF file with code)", path)
	}
	if ix.module == "" {
		ix.module = name
	}
	if fid != "" {
		_ = ix.writeFile(cachePath(cacheDir, fid)) // an unwritable cache costs a rebuild
	}
	return place(ix)
}

// moduleName spells a module name as the kernel does: dashes become
// underscores.
func moduleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Place returns a copy of a module index with its sections moved to the
// runtime addresses in bases (section name → address of its first byte), as
// /sys/module/<m>/sections gives them. Functions of sections bases does not
// name are left out. The placed sections must not overlap.
func (ix *Index) Place(bases map[string]uint64) (*Index, error) {
	if len(ix.secs) == 0 {
		return nil, errors.New("place: not a module index (no sections)")
	}
	var placed []Section
	for _, s := range ix.secs {
		if b, ok := bases[s.Name]; ok {
			if b+s.Size < b {
				return nil, fmt.Errorf("place: section %s at %#x wraps around", s.Name, b)
			}
			placed = append(placed, Section{Name: s.Name, Addr: b, Size: s.Size})
		}
	}
	if len(placed) == 0 {
		return nil, fmt.Errorf("place module %s: none of its sections (%s) has an address", ix.module, sectionNames(ix.secs))
	}
	sorted := slices.Clone(placed)
	slices.SortFunc(sorted, func(a, b Section) int { return cmp.Compare(a.Addr, b.Addr) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Addr < sorted[i-1].Addr+sorted[i-1].Size {
			return nil, fmt.Errorf("place module %s: sections %s and %s overlap", ix.module, sorted[i-1].Name, sorted[i].Name)
		}
	}
	// move maps an index address (hi: the end of a range) to its runtime
	// address, or reports that its section is not placed.
	move := func(a uint64, hi bool) (uint64, bool) {
		for _, s := range ix.secs {
			if a >= s.Addr && (a < s.Addr+s.Size || hi && a == s.Addr+s.Size) {
				b, ok := bases[s.Name]
				return b + (a - s.Addr), ok
			}
		}
		return 0, false
	}
	raw := ix.raw()
	newIdx := make([]int, len(raw.funcs))
	var funcs []rawFunc
	for i, f := range raw.funcs {
		newIdx[i] = -1
		e, ok := move(f.entry, false)
		if !ok {
			continue
		}
		f.entry = e
		rs := make([][2]uint64, 0, len(f.ranges))
		for _, r := range f.ranges {
			lo, ok1 := move(r[0], false)
			hi, ok2 := move(r[1], true)
			if !ok1 || !ok2 || hi-lo != r[1]-r[0] {
				ok = false
				break
			}
			rs = append(rs, [2]uint64{lo, hi})
		}
		if !ok {
			continue
		}
		slices.SortFunc(rs, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
		f.ranges = rs
		newIdx[i] = len(funcs)
		funcs = append(funcs, f)
	}
	var aliases [][2]uint32
	for _, a := range raw.aliases {
		if j := newIdx[a[1]]; j >= 0 {
			aliases = append(aliases, [2]uint32{a[0], uint32(j)})
		}
	}
	raw.funcs, raw.aliases, raw.secs = funcs, aliases, placed
	out, err := decode(encode(raw))
	if err != nil {
		return nil, fmt.Errorf("place module %s: %w", ix.module, err)
	}
	return out, nil
}

func sectionNames(secs []Section) string {
	var n []string
	for _, s := range secs {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// sysModule is where the kernel describes loaded modules (a variable for
// tests).
var sysModule = "/sys/module"

// ModuleSections reads the runtime address of every section of a loaded
// module from /sys/module/<name>/sections. The kernel shows them to root
// only (others read zeros): that is an error, not a layout.
func ModuleSections(name string) (map[string]uint64, error) {
	dir := filepath.Join(sysModule, moduleName(name), "sections")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read the sections of module %s: %w (is it loaded? built into the kernel?)", name, err)
	}
	out := map[string]uint64{}
	hidden := true
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read the sections of module %s: %w", name, err)
		}
		a, err := parseSectionAddr(b)
		if err != nil {
			return nil, fmt.Errorf("module %s section %s: %w", name, e.Name(), err)
		}
		hidden = hidden && a == 0
		out[e.Name()] = a
	}
	if hidden {
		return nil, fmt.Errorf("module %s: %s shows no addresses: run as root (the kernel hides module addresses from others)", name, dir)
	}
	return out, nil
}

// parseSectionAddr parses a /sys/module/<m>/sections/<s> file: one hex
// address ("0xffffffffc0a5e000\n").
func parseSectionAddr(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	h, ok := strings.CutPrefix(s, "0x")
	if !ok || len(h) == 0 || len(h) > 16 {
		return 0, fmt.Errorf("not a section address: %q", trimQuote(s))
	}
	a, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("not a section address: %q", trimQuote(s))
	}
	return a, nil
}

func trimQuote(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// ModuleBuildID reads the build-id of a loaded module from
// /sys/module/<name>/notes/.note.gnu.build-id (an ELF note).
func ModuleBuildID(name string) (string, error) {
	p := filepath.Join(sysModule, moduleName(name), "notes", ".note.gnu.build-id")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read the build-id of module %s: %w (is it loaded?)", name, err)
	}
	id := buildIDFromNotes(b, binary.NativeEndian)
	if id == "" {
		return "", fmt.Errorf("module %s: %s holds no GNU build-id note", name, p)
	}
	return id, nil
}

// findModuleDebug finds the .ko with DWARF of module name: under root (or
// the distribution's places for release) by file name, then by build-id,
// then from debuginfod.
func findModuleDebug(ctx context.Context, name, release, buildID, root, cacheDir string) (string, error) {
	roots := []string{root}
	if root == "" {
		roots = []string{"/usr/lib/debug/lib/modules/" + release, "/lib/modules/" + release}
	}
	var tried []string
	var all []string
	for _, r := range roots {
		err := filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable parts of the tree: not ours to fix
			}
			if !d.IsDir() && strings.HasSuffix(p, ".ko") {
				all = append(all, p)
			}
			return nil
		})
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", r, err))
			continue
		}
		tried = append(tried, r)
	}
	var mismatch []string
	for _, p := range all {
		if moduleName(strings.TrimSuffix(filepath.Base(p), ".ko")) != name {
			continue
		}
		if buildID == "" {
			return p, nil
		}
		id, err := fileBuildID(p, release)
		if err == nil && id == buildID {
			return p, nil
		}
		mismatch = append(mismatch, fmt.Sprintf("%s (build-id %s)", p, orNone(id)))
	}
	if buildID != "" {
		for _, p := range all {
			if id, err := koBuildID(p); err == nil && id == buildID {
				return p, nil
			}
		}
		if urls := strings.Fields(os.Getenv("DEBUGINFOD_URLS")); len(urls) > 0 {
			p, err := fetchDebuginfod(ctx, urls, buildID, cacheDir, name+".ko")
			if err == nil {
				return p, nil
			}
			tried = append(tried, err.Error())
		} else {
			tried = append(tried, "debuginfod (DEBUGINFOD_URLS not set)")
		}
	}
	if len(mismatch) > 0 {
		return "", fmt.Errorf("%w: module %s has build-id %s but the debug files of that name are of other builds: %s; install the debug package of the running kernel (Debian: linux-image-%s-dbg)", ErrBuildIDMismatch, name, buildID, strings.Join(mismatch, ", "), release)
	}
	return "", fmt.Errorf("%w: no %s.ko with DWARF for kernel %q (build-id %s); tried %s. Install the debug package (Debian: linux-image-%s-dbg) or pass the .ko; compressed modules (.ko.xz, .ko.zst) of /lib/modules carry no DWARF",
		ErrNoDebugInfo, name, release, orNone(buildID), strings.Join(tried, ", "), release)
}

// koBuildID reads only the build-id note of an ELF file.
func koBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if s := f.Section(".note.gnu.build-id"); s != nil {
		if b, err := s.Data(); err == nil {
			return buildIDFromNotes(b, f.ByteOrder), nil
		}
	}
	return elfBuildID(f), nil
}
