package coverage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf/btf"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

// Function is one attachable kernel function. Its index in
// Catalogue.Functions is the BPF cookie that identifies it.
type Function struct {
	// Name is the kallsyms symbol: a compiler clone keeps its suffix
	// (foo.isra.0), so its hits are its own.
	Name string
	// Module is the kernel module the function belongs to ("" for
	// vmlinux). The same name in vmlinux and in a module, or in two
	// modules, is two functions.
	Module string
	Addr   uint64 // start address from /proc/kallsyms

	noFentry Reason // why fentry cannot take it ("" if it can)
}

// String is the name, followed by " [module]" for module code, as
// /proc/kallsyms and tracefs write it.
func (f Function) String() string {
	if f.Module == "" {
		return f.Name
	}
	return f.Name + " [" + f.Module + "]"
}

// Reason says why a function is not traced.
type Reason string

// Reasons for leaving a kernel function out. Attach failures add reasons of
// the form "attach: EBUSY" (see Snapshot.Excluded). NotInBTF, Varargs,
// ManyArgs, StructArg and NotUnique keep a function from fentry only: the
// fentry backend probes such functions with kprobes by address instead, and
// excludes them for that reason only when kprobes do not work.
const (
	NotInBTF     Reason = "no BTF FUNC (asm, clone like .isra/.constprop, or a module without BTF)"
	NotTraceable Reason = "not in available_filter_functions (notrace)"
	Denied       Reason = "deny list (tracing it breaks or recurses into the tracer)"
	Ambiguous    Reason = "same name at several addresses, and the kernel does not say which are traceable (no available_filter_functions_addrs)"
	NotUnique    Reason = "name not unique in kallsyms or BTF (fentry attaches by name)"
	Varargs      Reason = "varargs (fentry)"
	ManyArgs     Reason = "more than 6 arguments (fentry)"
	StructArg    Reason = "struct passed or returned by value (fentry)"
	Alias        Reason = "alias: another name has the same address (the first in kallsyms, as ftrace prints, is kept)"
	Filtered     Reason = "left out by Catalogue.Subset"
)

// Catalogue is the set of kernel functions a tracer may attach to: every
// text symbol of /proc/kallsyms, vmlinux's and loaded modules', that
// tracefs available_filter_functions lists (when readable), minus the deny
// list and aliases. Compiler clones and functions without BTF are in it
// (the backends that attach by address take them). It is plain data:
// inspect or Subset it before Open.
//
// A Tracer opened on a catalogue from LoadCatalogue also attaches to the
// modules that load while it runs; one opened on a Subset probes exactly
// the functions it holds.
type Catalogue struct {
	Functions []Function
	Excluded  map[Reason]int // kallsyms text symbols left out, by reason
	Notes     []string       // what could not be checked, and why

	// loaded: the modules in kallsyms when LoadCatalogue read it; nil for
	// a Subset or a catalogue built by hand, which Open does not grow.
	loaded map[string]bool
}

// String summarises the catalogue in one line per fact.
func (c *Catalogue) String() string {
	var b strings.Builder
	mods := map[string]bool{}
	nmod := 0
	for _, f := range c.Functions {
		if f.Module != "" {
			nmod++
			mods[f.Module] = true
		}
	}
	fmt.Fprintf(&b, "%d functions (%d vmlinux, %d in %d modules)", len(c.Functions), len(c.Functions)-nmod, nmod, len(mods))
	writeExcluded(&b, c.Excluded)
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "\nnote: %s", n)
	}
	return b.String()
}

// Modules counts the catalogue's functions by module ("" is vmlinux).
func (c *Catalogue) Modules() map[string]int {
	m := map[string]int{}
	for _, f := range c.Functions {
		m[f.Module]++
	}
	return m
}

func writeExcluded(b *strings.Builder, ex map[Reason]int) {
	rs := make([]Reason, 0, len(ex))
	for r := range ex {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return ex[rs[i]] > ex[rs[j]] || ex[rs[i]] == ex[rs[j]] && rs[i] < rs[j] })
	for _, r := range rs {
		fmt.Fprintf(b, ", %d %s", ex[r], r)
	}
}

// Subset returns a catalogue with the functions keep accepts, in the same
// order; the others are counted as Filtered. Useful to bound slow backends.
func (c *Catalogue) Subset(keep func(Function) bool) *Catalogue {
	n := &Catalogue{Excluded: map[Reason]int{}, Notes: slices.Clone(c.Notes)}
	for r, v := range c.Excluded {
		n.Excluded[r] = v
	}
	for _, f := range c.Functions {
		if keep(f) {
			n.Functions = append(n.Functions, f)
		} else {
			n.Excluded[Filtered]++
		}
	}
	return n
}

// Paths of the kernel interfaces LoadCatalogue reads.
const (
	kallsymsPath   = "/proc/kallsyms"
	tracefsDefault = "/sys/kernel/tracing"
	tracefsDebug   = "/sys/kernel/debug/tracing"
)

// LoadCatalogue builds the catalogue of the running kernel, vmlinux and the
// modules loaded now. It fails only if kallsyms or vmlinux BTF cannot be
// read; an unreadable available_filter_functions (ftrace off or locked down)
// or module BTF becomes a note.
func LoadCatalogue() (*Catalogue, error) {
	// Before kallsyms: a module that loads in between is then in the
	// catalogue and attached again by a tracer (which skips it), never
	// counted as loaded and missing.
	loaded := loadedModules()
	f, err := os.Open(kallsymsPath)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	syms, err := kallsyms.Parse(f, func(t byte, mod string) bool { return kallsyms.IsText(t) })
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	if len(syms) > 0 && allZero(syms) {
		return nil, errors.New("catalogue: /proc/kallsyms shows no addresses: run as root (CAP_SYSLOG) or set kernel.kptr_restrict=0")
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("catalogue: kernel BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): %w", err)
	}
	var notes []string
	funcs := btfFuncs(spec, "", nil)
	var noBTF []string
	for _, m := range modulesOf(syms) {
		ms, err := loadModuleBTF(m, spec)
		if err != nil {
			noBTF = append(noBTF, m)
			continue
		}
		funcs = btfFuncs(ms, m, funcs)
	}
	if len(noBTF) > 0 {
		notes = append(notes, fmt.Sprintf("modules without BTF (fentry cannot take their functions; kprobe.multi and kprobe can): %s", strings.Join(noBTF, ", ")))
	}
	trace, withAddrs, err := readFilterFunctions()
	if err != nil {
		notes = append(notes, fmt.Sprintf("traceability not checked: %v", err))
	}
	c := buildCatalogue(syms, funcs, trace, withAddrs, notes)
	c.loaded = map[string]bool{}
	for _, m := range modulesOf(syms) {
		c.loaded[m] = true
	}
	for _, m := range loaded { // modules without text symbols too
		c.loaded[m] = true
	}
	return c, nil
}

// loadModuleBTF reads /sys/kernel/btf/<module>, split BTF on top of vmlinux's.
func loadModuleBTF(module string, base *btf.Spec) (*btf.Spec, error) {
	return btf.LoadSplitSpec("/sys/kernel/btf/"+module, base)
}

// modulesOf lists the modules that symbols belong to, in first-seen order.
func modulesOf(syms []kallsyms.Symbol) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range syms {
		if s.Module != "" && !seen[s.Module] {
			seen[s.Module] = true
			out = append(out, s.Module)
		}
	}
	return out
}

func allZero(s []kallsyms.Symbol) bool {
	for _, k := range s {
		if k.Addr != 0 {
			return false
		}
	}
	return true
}

// readFilterFunctions prefers available_filter_functions_addrs (6.5+), which
// tells which of several same-named functions is traceable.
func readFilterFunctions() ([]traceable, bool, error) {
	return readFilterFunctionsOf("")
}

// readFilterFunctionsOf is readFilterFunctions over the lines that end with
// suffix (" [module]"), or all with "".
func readFilterFunctionsOf(suffix string) ([]traceable, bool, error) {
	var errs []error
	for _, dir := range []string{tracefsDefault, tracefsDebug} {
		for _, withAddrs := range []bool{true, false} {
			name := dir + "/available_filter_functions"
			if withAddrs {
				name += "_addrs"
			}
			var r io.Reader
			if suffix == "" {
				f, err := os.Open(name)
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) {
						errs = append(errs, err)
					}
					continue
				}
				defer f.Close()
				r = f
			} else {
				b, err := moduleLines(name, suffix)
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) {
						errs = append(errs, err)
					}
					continue
				}
				r = bytes.NewReader(b)
			}
			t, err := parseFilterFunctions(r, withAddrs)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			return t, withAddrs, nil
		}
	}
	if len(errs) == 0 {
		return nil, false, errors.New("no available_filter_functions (is tracefs mounted at /sys/kernel/tracing? CONFIG_FUNCTION_TRACER?)")
	}
	return nil, false, fmt.Errorf("%w (ftrace unreadable here; under kernel lockdown this is expected)", errors.Join(errs...))
}

// fkey names a function within its object: module "" is vmlinux.
type fkey struct{ module, name string }

// btfInfo is what BTF says about function names: per object, why fentry
// cannot take each BTF FUNC ("" if it can), and in how many objects each
// name has a BTF FUNC (fentry resolves a name in vmlinux first, then in the
// first module that has it).
type btfInfo struct {
	funcs   map[fkey]Reason
	objects map[string]int
	// names, when set, counts the kallsyms text symbols of each name in
	// objects whose symbols are not passed to buildCatalogue (a late
	// module's catalogue is built from its own symbols only).
	names map[string]int
}

// btfFuncs adds the BTF FUNCs of spec, the BTF of module ("" for vmlinux),
// to into (nil: a new one).
func btfFuncs(spec *btf.Spec, module string, into *btfInfo) *btfInfo {
	if into == nil {
		into = &btfInfo{funcs: map[fkey]Reason{}, objects: map[string]int{}}
	}
	for t := range spec.All() {
		fn, ok := t.(*btf.Func)
		if !ok || fn.Name == "" {
			continue
		}
		k := fkey{module, fn.Name}
		r := fentryReason(fn)
		if _, dup := into.funcs[k]; dup {
			// Several BTF FUNCs of one name: the kernel refuses to pick.
			r = NotUnique
		} else {
			into.objects[fn.Name]++
		}
		into.funcs[k] = r
	}
	return into
}

func fentryReason(fn *btf.Func) Reason {
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return StructArg
	}
	switch btf.UnderlyingType(proto.Return).(type) {
	case *btf.Struct, *btf.Union:
		return StructArg
	}
	ps := proto.Params
	if n := len(ps); n > 0 {
		if _, void := ps[n-1].Type.(*btf.Void); void {
			return Varargs
		}
	}
	if len(ps) > 6 {
		return ManyArgs
	}
	for _, p := range ps {
		switch btf.UnderlyingType(p.Type).(type) {
		case *btf.Struct, *btf.Union:
			return StructArg
		}
	}
	return ""
}

// denyExact and denyPrefix: functions never to trace (kernel's
// btf_id_deny set, libbpf selftests' skip list, and what the counter itself
// calls, which would only produce recursion misses).
var denyExact = map[string]bool{
	"migrate_disable": true, "migrate_enable": true, "rcu_read_unlock_strict": true,
	"preempt_count_add": true, "preempt_count_sub": true,
	"bpf_spin_lock": true, "bpf_spin_unlock": true,
	"bpf_get_smp_processor_id": true, "bpf_dispatcher_xdp_func": true, "bpf_get_numa_node_id": true,
	"update_prog_stats": true, "inc_misses_counter": true,
	"arch_cpu_idle": true, "default_idle": true,
	"bpf_get_current_ancestor_cgroup_id": true, "bpf_get_current_cgroup_id": true,
	"bpf_map_lookup_elem": true, "array_map_lookup_elem": true, "percpu_array_map_lookup_elem": true,
	"bpf_this_cpu_ptr": true, "bpf_prog_inc_misses_counter": true,
	// bpf_get_prandom_u32, which the counter calls to pick its samples: every
	// call of it runs inside the program, so every probe hit on it is a miss.
	"bpf_user_rnd_u32": true,
	// kprobe.multi's own path (cookie lookup, dispatch).
	"bpf_kprobe_multi_cookie_cmp": true, "bpf_kprobe_multi_addrs_cmp": true,
	"kprobe_multi_link_prog_run": true, "kprobe_multi_link_handler": true,
	// What the counter calls with Options.Attribution: the task, its user
	// entry frame, and the hash maps of origins and fault frames.
	"bpf_get_current_task_btf": true, "bpf_task_pt_regs": true, "bpf_get_current_pid_tgid": true,
	"bpf_map_update_elem": true, "alloc_htab_elem": true, "lookup_elem_raw": true, "lookup_nulls_elem_raw": true,
}

var denyPrefix = []string{
	"__rcu_read_", "rcu_", "__bpf_prog_enter", "__bpf_prog_exit", "__bpf_tramp_enter",
	"__bpf_tramp_exit", "__ftrace_invalid_address__", "bpf_get_attach_cookie",
	// Helpers the counter calls (only BPF programs call them).
	"bpf_get_func_ip",
	// BPF hash maps, which the counter updates with Options.Attribution.
	"htab_", "__htab_", "pcpu_freelist_", "__pcpu_freelist_", "bpf_lru_", "__bpf_lru_", "prealloc_lru_",
}

func denied(name string) bool {
	if denyExact[name] {
		return true
	}
	for _, p := range denyPrefix {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// cloneBase strips a compiler clone's suffixes: "foo.isra.0" -> "foo".
func cloneBase(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}

// buildCatalogue is LoadCatalogue's pure core. syms are kallsyms text
// symbols (vmlinux and modules); trace is nil when
// available_filter_functions could not be read.
func buildCatalogue(syms []kallsyms.Symbol, bi *btfInfo, trace []traceable, withAddrs bool, notes []string) *Catalogue {
	return buildCatalogueOf(syms, bi, trace, withAddrs, notes, nil)
}

// buildCatalogueOf is buildCatalogue over the objects (module "" is
// vmlinux) that only accepts, or all with nil; the others' symbols still
// count for the names fentry can take.
func buildCatalogueOf(syms []kallsyms.Symbol, bi *btfInfo, trace []traceable, withAddrs bool, notes []string, only func(module string) bool) *Catalogue {
	if bi == nil {
		bi = &btfInfo{funcs: map[fkey]Reason{}, objects: map[string]int{}}
	}
	c := &Catalogue{Excluded: map[Reason]int{}, Notes: notes}
	byKey := map[fkey][]uint64{}
	var keys []fkey
	nameCount := map[string]int{} // kallsyms text symbols of each name, all objects
	pos := map[kallsyms.Symbol]int{}
	for i, s := range syms {
		k := kallsyms.Symbol{Addr: s.Addr, Name: s.Name, Module: s.Module}
		if _, ok := pos[k]; ok {
			continue
		}
		pos[k] = i
		fk := fkey{s.Module, s.Name}
		if _, ok := byKey[fk]; !ok {
			keys = append(keys, fk)
		}
		byKey[fk] = append(byKey[fk], s.Addr)
		nameCount[s.Name]++
	}
	traceCount := map[fkey]int{}
	traceAddr := map[fkey]map[uint64]bool{} // kallsyms start addresses found traceable
	for _, t := range trace {
		fk := fkey{t.module, t.name}
		traceCount[fk]++
		if withAddrs {
			// The ftrace site follows the symbol start by up to 16 bytes
			// (endbr64, padding); match the nearest start below it.
			var best uint64
			for _, a := range byKey[fk] {
				if a <= t.addr && t.addr-a < 32 && a > best {
					best = a
				}
			}
			if best != 0 {
				if traceAddr[fk] == nil {
					traceAddr[fk] = map[uint64]bool{}
				}
				traceAddr[fk][best] = true
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].module != keys[j].module {
			return keys[i].module < keys[j].module // vmlinux ("") first
		}
		return keys[i].name < keys[j].name
	})
	for _, fk := range keys {
		if only != nil && !only(fk.module) {
			continue
		}
		addrs := byKey[fk]
		slices.Sort(addrs)
		switch {
		case denied(fk.name) || denied(cloneBase(fk.name)):
			c.Excluded[Denied] += len(addrs)
			continue
		case trace != nil && traceCount[fk] == 0:
			c.Excluded[NotTraceable] += len(addrs)
			continue
		}
		fr, inBTF := bi.funcs[fk]
		switch {
		case !inBTF:
			fr = NotInBTF
		case nameCount[fk.name]+bi.names[fk.name] > 1 || bi.objects[fk.name] > 1:
			fr = NotUnique
		case strings.Contains(fk.name, "___"):
			// cilium/ebpf looks BTF names up without a CO-RE flavour
			// suffix ("a___b" is "a"): such a name can match several.
			fr = NotUnique
		}
		for _, a := range addrs {
			switch {
			case trace != nil && withAddrs && !traceAddr[fk][a]:
				c.Excluded[NotTraceable]++
			case trace != nil && !withAddrs && len(addrs) > 1 && traceCount[fk] != len(addrs):
				// Cannot tell which copies are traceable.
				c.Excluded[Ambiguous]++
			default:
				c.Functions = append(c.Functions, Function{Name: fk.name, Module: fk.module, Addr: a, noFentry: fr})
			}
		}
	}
	// One function per address: aliases would share one BPF attach point.
	firstAt := map[uint64]int{} // address -> index in syms of its first name
	at := func(f Function) int { return pos[kallsyms.Symbol{Addr: f.Addr, Name: f.Name, Module: f.Module}] }
	for _, f := range c.Functions {
		if q, ok := firstAt[f.Addr]; !ok || at(f) < q {
			firstAt[f.Addr] = at(f)
		}
	}
	kept := c.Functions[:0]
	for _, f := range c.Functions {
		if firstAt[f.Addr] == at(f) {
			kept = append(kept, f)
		} else {
			c.Excluded[Alias]++
		}
	}
	c.Functions = kept
	return c
}

// readSmall reads a small proc/sys file.
func readSmall(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b), err
}
