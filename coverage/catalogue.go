package coverage

import (
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
// the form "attach: EBUSY" (see Snapshot.Excluded).
const (
	NotInBTF     Reason = "no BTF FUNC (asm, clone like .isra/.constprop, or data)"
	NotTraceable Reason = "not in available_filter_functions (notrace)"
	Denied       Reason = "deny list (tracing it breaks or recurses into the tracer)"
	Ambiguous    Reason = "name with several addresses (backend attaches by name)"
	Varargs      Reason = "varargs (fentry)"
	ManyArgs     Reason = "more than 6 arguments (fentry)"
	StructArg    Reason = "struct passed or returned by value (fentry)"
	Alias        Reason = "alias: another name has the same address (the first in kallsyms, as ftrace prints, is kept)"
	Filtered     Reason = "left out by Catalogue.Subset"
)

// Catalogue is the set of kernel functions a tracer may attach to: BTF FUNC
// names ∩ kallsyms text symbols ∩ tracefs available_filter_functions (when
// readable), minus the deny list. It is plain data: inspect or Subset it
// before Open.
type Catalogue struct {
	Functions []Function
	Excluded  map[Reason]int // kallsyms text symbols left out, by reason
	Notes     []string       // what could not be checked, and why
}

// String summarises the catalogue in one line per fact.
func (c *Catalogue) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d functions", len(c.Functions))
	writeExcluded(&b, c.Excluded)
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "\nnote: %s", n)
	}
	return b.String()
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

// LoadCatalogue builds the catalogue of the running kernel. It fails only if
// kallsyms or BTF cannot be read; an unreadable available_filter_functions
// (ftrace off or locked down) becomes a note.
func LoadCatalogue() (*Catalogue, error) {
	f, err := os.Open(kallsymsPath)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	syms, err := kallsyms.Parse(f, func(t byte, mod string) bool { return mod == "" && kallsyms.IsText(t) })
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
	trace, withAddrs, err := readFilterFunctions()
	if err != nil {
		notes = append(notes, fmt.Sprintf("traceability not checked: %v", err))
	}
	return buildCatalogue(syms, btfFuncs(spec), trace, withAddrs, notes), nil
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
	var errs []error
	for _, dir := range []string{tracefsDefault, tracefsDebug} {
		for _, withAddrs := range []bool{true, false} {
			name := dir + "/available_filter_functions"
			if withAddrs {
				name += "_addrs"
			}
			f, err := os.Open(name)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			t, err := parseFilterFunctions(f, withAddrs)
			f.Close()
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

// btfFuncs maps each BTF FUNC name to why fentry cannot take it ("" if it can).
func btfFuncs(spec *btf.Spec) map[string]Reason {
	out := map[string]Reason{}
	for t := range spec.All() {
		fn, ok := t.(*btf.Func)
		if !ok || fn.Name == "" {
			continue
		}
		r := fentryReason(fn)
		if _, dup := out[fn.Name]; dup {
			// Several BTF FUNCs of one name: the kernel refuses to pick.
			r = Ambiguous
		}
		out[fn.Name] = r
	}
	return out
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
}

var denyPrefix = []string{
	"__rcu_read_", "rcu_", "__bpf_prog_enter", "__bpf_prog_exit", "__bpf_tramp_enter",
	"__bpf_tramp_exit", "__ftrace_invalid_address__", "bpf_get_attach_cookie",
	// Helpers the counter calls (only BPF programs call them).
	"bpf_get_func_ip",
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

// buildCatalogue is LoadCatalogue's pure core. trace is nil when
// available_filter_functions could not be read.
func buildCatalogue(syms []kallsyms.Symbol, funcs map[string]Reason, trace []traceable, withAddrs bool, notes []string) *Catalogue {
	c := &Catalogue{Excluded: map[Reason]int{}, Notes: notes}
	byName := map[string][]uint64{}
	firstAt := map[uint64]int{} // address -> index in syms of its first name
	pos := map[kallsyms.Symbol]int{}
	for i, s := range syms {
		k := kallsyms.Symbol{Addr: s.Addr, Name: s.Name}
		if _, ok := pos[k]; !ok {
			pos[k] = i
		}
		if !slices.Contains(byName[s.Name], s.Addr) {
			byName[s.Name] = append(byName[s.Name], s.Addr)
		}
	}
	traceCount := map[string]int{}
	traceAddr := map[uint64]bool{} // kallsyms start addresses found traceable
	for _, t := range trace {
		if t.module != "" {
			continue
		}
		traceCount[t.name]++
		if withAddrs {
			// The ftrace site follows the symbol start by up to 16 bytes
			// (endbr64, padding); match the nearest start below it.
			var best uint64
			for _, a := range byName[t.name] {
				if a <= t.addr && t.addr-a < 32 && a > best {
					best = a
				}
			}
			if best != 0 {
				traceAddr[best] = true
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		addrs := byName[name]
		slices.Sort(addrs)
		fr, inBTF := funcs[name]
		switch {
		case !inBTF:
			c.Excluded[NotInBTF] += len(addrs)
			continue
		case denied(name):
			c.Excluded[Denied] += len(addrs)
			continue
		case trace != nil && traceCount[name] == 0:
			c.Excluded[NotTraceable] += len(addrs)
			continue
		}
		for _, a := range addrs {
			switch {
			case trace != nil && withAddrs && !traceAddr[a]:
				c.Excluded[NotTraceable]++
			case trace != nil && !withAddrs && len(addrs) > 1 && traceCount[name] != len(addrs):
				// Cannot tell which copies are traceable.
				c.Excluded[Ambiguous]++
			default:
				c.Functions = append(c.Functions, Function{Name: name, Addr: a, noFentry: fr})
			}
		}
	}
	// One function per address: aliases would share one BPF attach point.
	for _, f := range c.Functions {
		p := pos[kallsyms.Symbol{Addr: f.Addr, Name: f.Name}]
		if q, ok := firstAt[f.Addr]; !ok || p < q {
			firstAt[f.Addr] = p
		}
	}
	kept := c.Functions[:0]
	for _, f := range c.Functions {
		if firstAt[f.Addr] == pos[kallsyms.Symbol{Addr: f.Addr, Name: f.Name}] {
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
