//go:build amd64

package bpf

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// MaxScopes is the number of cgroup subtrees counted at the same time.
const MaxScopes = 16

// Program flavours; all share the same maps.
type Kind int

const (
	KprobeMulti Kind = iota // one program, attached with link.KprobeMulti
	Kprobe                  // one program, attached once per function
	Fentry                  // one program per function, see Objects.Fentry
)

func (k Kind) String() string {
	switch k {
	case KprobeMulti:
		return "kprobe.multi"
	case Kprobe:
		return "kprobe"
	case Fentry:
		return "fentry"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Context is the execution context an event was counted in: each scope has
// one row of counters per context (see HitsIn).
type Context int

const (
	// ContextTask: the scope's task ran the function itself (system call,
	// fault, kernel thread work), outside any interrupt.
	ContextTask Context = iota
	// ContextOwnSoftirq: soft-IRQ work the scope's task ran synchronously
	// on its own path, inside do_softirq() (local_bh_enable or netif_rx
	// after its own send, e.g. the receive side of a loopback or veth
	// packet). Counted only while the guard is attached (AttachSoftirq);
	// without it such work is ContextInterrupt. Any soft IRQ pending on the
	// CPU at that point runs there too and is counted alike.
	ContextOwnSoftirq
	// ContextInterrupt: any other interrupt context while a scope's task
	// was current: hard IRQ, NMI, soft IRQ run at hard-IRQ exit. Counted
	// only with Config.Interrupts (else skipped, see Stats.Interrupt).
	// ksoftirqd's work is never any scope's unless ksoftirqd is in it.
	ContextInterrupt
)

// Contexts is the number of Context rows per scope.
const Contexts = 3

func (c Context) String() string {
	switch c {
	case ContextTask:
		return "task"
	case ContextOwnSoftirq:
		return "own-softirq"
	case ContextInterrupt:
		return "interrupt"
	}
	return fmt.Sprintf("Context(%d)", int(c))
}

// Config sizes the counters.
type Config struct {
	Functions int // number of function indices known at New (cookies 0..Functions-1)
	// Reserve adds indices Functions..Functions+Reserve-1 for functions
	// added after New (modules loaded later): fentry and kprobe attach
	// them with their index as cookie, KprobeMulti finds them through
	// AddAddrs, which holds up to Reserve addresses. Every counter row has
	// Functions+Reserve elements (Indices).
	Reserve    int
	Interrupts bool // also count events in ContextInterrupt
	// Addrs[i] is the entry address of function i (as in /proc/kallsyms).
	// The KprobeMulti program finds the index from the address it was
	// entered at (no cookie: see hap.bpf.c); needed only for KprobeMulti.
	Addrs []uint64
	// Attribution also counts every counted event by Origin, in a hash of
	// (function index, scope slot, origin) keys: Origins reads it. Call
	// AttachFaults too, or user page faults count as OriginOther.
	Attribution bool
	// OriginKeys sizes that hash (default DefaultOriginKeys); events whose
	// key finds no room are counted in Stats.OriginsDropped.
	OriginKeys int
}

// DefaultOriginKeys is Config.OriginKeys when it is 0: about 40 origins
// over 6,000 functions in each of 4 scopes is 2^20 keys. The hash is
// preallocated: about 70 bytes of kernel memory a key (element header,
// 16-byte key, 8-byte count), 70 MiB at the default.
const DefaultOriginKeys = 1 << 20

// Origin says where a scope's task came from when it entered a function:
// the system call it was in (x86-64 numbering, below SyscallOrigins), or
// one of OriginFault, OriginIOWorker, OriginInterrupt and OriginOther.
//
// It is read from the task's user entry frame (task_pt_regs), where the
// entry code stores the system call number in orig_ax on a system call and
// -1 on an exception or interrupt. So a system call's origin covers all the
// kernel does for it: its seccomp check (before the sys_enter tracepoint),
// ptrace stops, the call, the soft IRQ the task runs itself inside it, and
// the signal delivery and rescheduling on its way back to user mode.
// orig_ax of -1 is a user page fault when the frame is the one the fault
// tracepoint (AttachFaults) saw, else OriginOther: work on the way back to
// user mode after an interrupt, a 32-bit (int 0x80) or out-of-range system
// call, a kernel thread in the scope.
type Origin uint16

// SyscallOrigins bounds the system call numbers an Origin holds.
const SyscallOrigins = 1024

const (
	OriginFault     Origin = SyscallOrigins + iota // a user page fault
	OriginIOWorker                                 // an io_uring worker thread (it has no system call)
	OriginInterrupt                                // interrupt context, counted with Config.Interrupts
	OriginOther                                    // none of the above
)

// OriginCount is how often a scope's tasks entered one function from one origin.
type OriginCount struct {
	Index  int // function index
	Origin Origin
	Count  uint64
}

// Stats are per-CPU event counters summed: what the counter did not record,
// and how often a program ran at all.
type Stats struct {
	Dropped   uint64 // events with an out-of-range index or a failed map lookup
	Interrupt uint64 // events skipped because they ran in interrupt context
	// OriginsDropped counts counted events whose origin was not recorded:
	// the origins hash was full (Config.OriginKeys) or busy.
	OriginsDropped uint64
	// Events counts every run of a program, any task and context, in scope
	// or not: the probe hits tracing makes the whole machine pay for.
	Events uint64
}

// SampleGap is the mean gap between the events Sampled records.
const SampleGap = 64

// Objects are the live maps plus the programs loaded so far.
type Objects struct {
	cfg    Config
	n      int // index space: Functions + Reserve
	spec   *ebpf.CollectionSpec
	maps   map[string]*ebpf.Map // hits, scopes, stats, .rodata
	cache  *btf.Cache
	mem    *ebpf.Memory
	mode   int
	ctxSrc string
	sorted []uint64 // Config.Addrs, sorted

	mu     sync.Mutex
	progs  map[string]*ebpf.Program
	used   [MaxScopes]bool // scope slots set
	bh     []link.Link     // the soft-IRQ guard, entry first
	bhSrc  string
	fault  link.Link         // AttachFaults
	epochs [MaxScopes]uint32 // each slot's origin epoch
	// Each slot's origin counts of closed epochs since its last reset
	// (Origins drains them from the hash), and that reset's epoch.
	closed    [MaxScopes]map[originID]uint64
	resetFrom [MaxScopes]uint32
	scratch   []uint64
}

// New creates the maps for cfg. Close releases them.
func New(cfg Config) (*Objects, error) {
	if cfg.Functions <= 0 {
		return nil, errors.New("bpf: Config.Functions must be positive")
	}
	if cfg.Reserve < 0 {
		return nil, fmt.Errorf("bpf: Config.Reserve %d is negative", cfg.Reserve)
	}
	if cfg.Addrs != nil && len(cfg.Addrs) != cfg.Functions {
		return nil, fmt.Errorf("bpf: Config.Addrs has %d addresses for %d functions", len(cfg.Addrs), cfg.Functions)
	}
	if cfg.OriginKeys < 0 {
		return nil, fmt.Errorf("bpf: Config.OriginKeys %d is negative", cfg.OriginKeys)
	}
	if cfg.OriginKeys == 0 {
		cfg.OriginKeys = DefaultOriginKeys
	}
	if cfg.Functions >= 1<<17 {
		return nil, fmt.Errorf("bpf: %d functions is more than the in-kernel address search covers (%d)", cfg.Functions, 1<<17-1)
	}
	n := cfg.Functions + cfg.Reserve
	if uint64(n)*(MaxScopes*Contexts+1) > 1<<31 {
		return nil, fmt.Errorf("bpf: %d function indices is too many for %d scopes × %d contexts: lower Config.Reserve", n, MaxScopes, Contexts)
	}
	spec, err := loadHap()
	if err != nil {
		return nil, err
	}
	cache := btf.NewCache()
	kernel, err := cache.Kernel()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF (needed for CO-RE and interrupt detection; does /sys/kernel/btf/vmlinux exist?): %w", err)
	}
	mode, ctxSrc, err := preemptMode(kernel, cfg.Interrupts)
	if err != nil {
		return nil, err
	}
	for _, p := range spec.Programs {
		if err := patchKsyms(p.Instructions, kernel, mode); err != nil {
			return nil, err
		}
	}
	countIrq, attribute := uint32(0), uint32(0)
	if cfg.Interrupts {
		countIrq = 1
	}
	if cfg.Attribution {
		attribute = 1
	}
	for name, v := range map[string]uint32{hapVarNfuncs: uint32(n), hapVarNaddrs: uint32(len(cfg.Addrs)),
		hapVarPreemptMode: uint32(mode), hapVarCountIrq: countIrq, hapVarAttribute: attribute} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("bpf: set %s: %w", name, err)
		}
	}
	spec.Maps[hapMapHits].MaxEntries = uint32(n * (MaxScopes*Contexts + 1)) // + the samples' row
	spec.Maps[hapMapAddrs].MaxEntries = uint32(max(len(cfg.Addrs), 1))
	spec.Maps[hapMapLateAddrs].MaxEntries = uint32(max(cfg.Reserve, 1))
	spec.Maps[hapMapOrigins].MaxEntries, spec.Maps[hapMapFaults].MaxEntries = 1, 1
	if cfg.Attribution {
		spec.Maps[hapMapOrigins].MaxEntries = uint32(cfg.OriginKeys)
		spec.Maps[hapMapFaults].MaxEntries = faultThreads
	}

	o := &Objects{cfg: cfg, n: n, spec: spec, cache: cache, mode: mode, ctxSrc: ctxSrc,
		maps: map[string]*ebpf.Map{}, progs: map[string]*ebpf.Program{}}
	// A collection without programs creates every map, .rodata filled from
	// the variables and frozen.
	c, err := ebpf.NewCollection(&ebpf.CollectionSpec{Maps: spec.Maps, Variables: spec.Variables, Types: spec.Types})
	if err != nil {
		return nil, fmt.Errorf("create maps: %w", err)
	}
	for _, name := range []string{hapMapHits, hapMapScopes, hapMapScopeEnd, hapMapStats, hapMapCpu, hapMapAddrs, hapMapLateAddrs, hapMapOrigins, hapMapFaults, ".rodata"} {
		if o.maps[name] = c.DetachMap(name); o.maps[name] == nil {
			c.Close()
			o.Close()
			return nil, fmt.Errorf("create maps: %s missing", name)
		}
	}
	c.Close()
	if o.mem, err = o.maps[hapMapHits].Memory(); err != nil {
		o.Close()
		return nil, fmt.Errorf("mmap hits: %w", err)
	}
	if err := o.fillAddrs(); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

type fnAddr struct {
	Addr uint64
	Idx  uint32
	_    uint32
}

// fillAddrs writes (address, index) pairs sorted by address: the search in
// hap.bpf.c needs the order. Without addresses every entry stays zero and the
// KprobeMulti program finds nothing (counted as dropped).
func (o *Objects) fillAddrs() error {
	if o.cfg.Addrs == nil {
		return nil
	}
	v := make([]fnAddr, len(o.cfg.Addrs))
	for i, a := range o.cfg.Addrs {
		v[i] = fnAddr{Addr: a, Idx: uint32(i)}
	}
	slices.SortFunc(v, func(a, b fnAddr) int { return cmp.Compare(a.Addr, b.Addr) })
	for i := 1; i < len(v); i++ {
		if v[i].Addr == v[i-1].Addr {
			return fmt.Errorf("bpf: functions %d and %d share address %#x: pass one index per address", v[i-1].Idx, v[i].Idx, v[i].Addr)
		}
	}
	o.sorted = make([]uint64, len(v))
	for i := range v {
		o.sorted[i] = v[i].Addr
	}
	keys := make([]uint32, len(v))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := o.maps[hapMapAddrs].BatchUpdate(keys, v, nil); err != nil {
		// Batch ops on arrays need 5.6+; fall back to one update each.
		for i := range v {
			if err := o.maps[hapMapAddrs].Put(keys[i], v[i]); err != nil {
				return fmt.Errorf("fill function addresses: %w", err)
			}
		}
	}
	return nil
}

// AddAddrs tells the KprobeMulti program the entry addresses of functions
// added after New: addrs[i] is function idx[i]'s, an index below Indices
// (normally a reserved one). An address must not be one of Config.Addrs
// nor added twice; the table holds Config.Reserve addresses (RemoveAddrs
// frees them). Attach the addresses only after AddAddrs returns: events at
// an address not yet added are dropped (Stats.Dropped).
func (o *Objects) AddAddrs(idx []int, addrs []uint64) error {
	if len(idx) != len(addrs) {
		return fmt.Errorf("bpf: AddAddrs: %d indices for %d addresses", len(idx), len(addrs))
	}
	for i, a := range addrs {
		if idx[i] < 0 || idx[i] >= o.n {
			return fmt.Errorf("bpf: AddAddrs: index %d out of range [0,%d): raise Config.Reserve", idx[i], o.n)
		}
		if _, found := slices.BinarySearch(o.sorted, a); found {
			return fmt.Errorf("bpf: AddAddrs: address %#x (index %d) is already one of Config.Addrs", a, idx[i])
		}
	}
	m := o.maps[hapMapLateAddrs]
	for i, a := range addrs {
		if err := m.Update(a, uint32(idx[i]), ebpf.UpdateNoExist); err != nil {
			if errors.Is(err, ebpf.ErrKeyExist) {
				return fmt.Errorf("bpf: AddAddrs: address %#x (index %d) was added before: RemoveAddrs it first", a, idx[i])
			}
			if errors.Is(err, unix.E2BIG) {
				return fmt.Errorf("bpf: AddAddrs: the table of late addresses is full (Config.Reserve = %d): raise Config.Reserve or RemoveAddrs addresses of unloaded modules: %w", o.cfg.Reserve, err)
			}
			return fmt.Errorf("bpf: AddAddrs: add address %#x (index %d): %w", a, idx[i], err)
		}
	}
	return nil
}

// RemoveAddrs forgets addresses given to AddAddrs (a module unloaded):
// events there are dropped from then on. Addresses never added are ignored.
func (o *Objects) RemoveAddrs(addrs []uint64) error {
	m := o.maps[hapMapLateAddrs]
	for _, a := range addrs {
		if err := m.Delete(a); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: RemoveAddrs %#x: %w", a, err)
		}
	}
	return nil
}

// Indices is the number of function indices: Config.Functions +
// Config.Reserve, the length of every counter row.
func (o *Objects) Indices() int { return o.n }

// Interrupts says how interrupt context is told apart and whether it is
// counted: the per-CPU variable read ("pcpu_hot.preempt_count",
// "__preempt_count") when ContextInterrupt is skipped; "counted (contexts
// from VAR)" with Config.Interrupts; "counted (...)" with the reason when
// this kernel's preempt count cannot be read, and then every event counts
// as ContextTask.
func (o *Objects) Interrupts() string { return o.ctxSrc }

// Softirq says which rule attributes soft-IRQ work: "" before
// AttachSoftirq (no event is ContextOwnSoftirq), else where the guard is
// attached, e.g. "kprobe/kretprobe on do_softirq, do_softirq.part.0".
func (o *Objects) Softirq() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bhSrc
}

// AttachSoftirq attaches the soft-IRQ guard: programs on entry and exit of
// do_softirq() that keep a per-CPU depth, so that soft-IRQ work a scope's
// task runs itself through do_softirq() counts as ContextOwnSoftirq and any
// other as ContextInterrupt. The guard goes on do_softirq and on every
// compiler clone of it in /proc/kallsyms (Debian's 6.1 and 6.12 kernels
// call do_softirq.part.0 from local_bh_enable, never do_softirq itself),
// with kprobe/kretprobe; fentry/fexit only where the kernel has no clone
// and kprobes fail. Call it before the counter runs; again is a no-op. o
// owns the links, Close detaches them.
func (o *Objects) AttachSoftirq() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bh != nil {
		return nil
	}
	if o.mode == modeCount {
		return fmt.Errorf("bpf: cannot attribute soft-IRQ work on this kernel: the preempt count cannot be read (%s), so no context is told apart", o.ctxSrc)
	}
	syms, err := kallsymsFuncs(isSoftirqEntry)
	if err != nil {
		return fmt.Errorf("bpf: attach the soft-IRQ guard: %w", err)
	}
	if len(syms) == 0 {
		return errors.New("bpf: attach the soft-IRQ guard: do_softirq is not in /proc/kallsyms; soft-IRQ work cannot be told apart (it counts as interrupt context, Config.Interrupts)")
	}
	kerr := o.attachBH(hapProgHapBhKenter, hapProgHapBhKexit, syms,
		func(p *ebpf.Program, sym string) (link.Link, error) { return link.Kprobe(sym, p, nil) },
		func(p *ebpf.Program, sym string) (link.Link, error) { return link.Kretprobe(sym, p, nil) })
	if kerr == nil {
		o.bhSrc = "kprobe/kretprobe on " + strings.Join(syms, ", ")
		return nil
	}
	if len(syms) == 1 && syms[0] == "do_softirq" {
		tracing := func(p *ebpf.Program, _ string) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		}
		ferr := o.attachBH(hapProgHapBhEnter, hapProgHapBhExit, syms, tracing, tracing)
		if ferr == nil {
			o.bhSrc = "fentry/fexit on do_softirq"
			return nil
		}
		kerr = fmt.Errorf("%w; fentry/fexit: %w", kerr, ferr)
	}
	return fmt.Errorf("bpf: attach the soft-IRQ guard on %s (needed to count a task's own soft-IRQ work; without it, that work counts as interrupt context): the kernel needs CONFIG_KPROBES and the functions must not be on the kprobe blacklist: kprobe/kretprobe: %w", strings.Join(syms, ", "), kerr)
}

// faultThreads sizes the LRU hash of the threads' last user page fault
// frames: threads of the scopes that faulted recently.
const faultThreads = 1 << 14

// AttachFaults attaches, with Config.Attribution, the program that tells
// a user page fault apart from other work after an exception or interrupt
// (a tp_btf program on the exceptions:page_fault_user tracepoint, x86-64,
// which it enables). Again is a no-op; Close detaches it.
func (o *Objects) AttachFaults() error {
	if !o.cfg.Attribution {
		return errors.New("bpf: AttachFaults needs Config.Attribution")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fault != nil {
		return nil
	}
	p := o.progs[hapProgHapFault]
	if p == nil {
		var err error
		if p, err = o.load(hapProgHapFault, ""); err != nil {
			return fmt.Errorf("bpf: load the page fault program (tp_btf/page_fault_user): %w", err)
		}
		o.progs[hapProgHapFault] = p
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		return fmt.Errorf("bpf: attach tp_btf/page_fault_user (without it user page faults count as OriginOther): %w", err)
	}
	o.fault = l
	return nil
}

// originKey is struct origin_key.
type originKey struct {
	Idx    uint32
	Scope  uint16
	Origin uint16
	Epoch  uint32
	_      uint32
}

// originID is an origin count's key within one slot.
type originID struct {
	idx    uint32
	origin uint16
}

// Origins returns the counts by origin of slot (Config.Attribution) since
// its last ResetHits, in no particular order. It closes the slot's epoch
// first, so the counts stop at the call's start and a caller that read
// the slot's hits just before sees the same events in both: the counts of
// closed epochs move from the kernel's hash to the Objects (the hash then
// holds only the running epoch, whatever the number of calls).
func (o *Objects) Origins(slot int) ([]OriginCount, error) {
	if slot < 0 || slot >= MaxScopes {
		return nil, fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	if !o.cfg.Attribution {
		return nil, errors.New("bpf: Origins needs Config.Attribution")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.nextEpoch(slot); err != nil {
		return nil, fmt.Errorf("bpf: read origins of scope slot %d: %w", slot, err)
	}
	if err := o.drainOrigins(slot); err != nil {
		return nil, fmt.Errorf("bpf: read origins of scope slot %d: %w", slot, err)
	}
	out := make([]OriginCount, 0, len(o.closed[slot]))
	for id, n := range o.closed[slot] {
		out = append(out, OriginCount{Index: int(id.idx), Origin: Origin(id.origin), Count: n})
	}
	return out, nil
}

// resetOrigins starts a new epoch of slot's origin keys, at once, in the
// slot's scope entry (unless the slot is unused), and forgets the counts of
// earlier epochs.
func (o *Objects) resetOrigins(slot int) error {
	if !o.cfg.Attribution {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.nextEpoch(slot); err != nil {
		return fmt.Errorf("bpf: reset origins of scope slot %d: %w", slot, err)
	}
	o.resetFrom[slot] = o.epochs[slot]
	o.closed[slot] = nil
	if err := o.drainOrigins(slot); err != nil {
		return fmt.Errorf("bpf: reset origins of scope slot %d: %w", slot, err)
	}
	return nil
}

// nextEpoch makes events of slot count under new keys from now on. Called
// with o.mu held.
func (o *Objects) nextEpoch(slot int) error {
	o.epochs[slot]++
	var cur scopeValue
	if err := o.maps[hapMapScopes].Lookup(uint32(slot), &cur); err != nil {
		return err
	}
	if cur.CgroupID != 0 {
		cur.Epoch = o.epochs[slot]
		return o.maps[hapMapScopes].Put(uint32(slot), cur)
	}
	return nil
}

// drainOrigins takes slot's keys of closed epochs out of the hash, adding
// the counts of those since the last reset to o.closed[slot]. A program
// that read the slot's epoch just before nextEpoch may still add a key of
// a closed epoch after the walk: the next drain takes it. Called with o.mu
// held.
func (o *Objects) drainOrigins(slot int) error {
	epoch := o.epochs[slot]
	var keys []originKey
	var k originKey
	var v uint64
	m := o.maps[hapMapOrigins]
	it := m.Iterate()
	for it.Next(&k, &v) {
		if int(k.Scope) == slot && k.Epoch != epoch {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.LookupAndDelete(k, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return err
		}
		// Epochs wrap (uint32): an epoch counts if it is between the last
		// reset's and the running one.
		if k.Epoch-o.resetFrom[slot] < epoch-o.resetFrom[slot] {
			if o.closed[slot] == nil {
				o.closed[slot] = map[originID]uint64{}
			}
			o.closed[slot][originID{k.Idx, k.Origin}] += v
		}
	}
	return nil
}

// isSoftirqEntry matches do_softirq and its clones (do_softirq.part.0).
func isSoftirqEntry(name string) bool {
	return name == "do_softirq" || strings.HasPrefix(name, "do_softirq.")
}

// kallsymsFuncs lists the vmlinux text symbols whose name match wants.
func kallsymsFuncs(match func(string) bool) ([]string, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKallsymsFuncs(f, match)
}

// parseKallsymsFuncs lists the names of the vmlinux text symbols in r (the
// format of /proc/kallsyms) that match wants, each once, in file order.
func parseKallsymsFuncs(r io.Reader, match func(string) bool) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// "ADDR TYPE NAME" or "ADDR TYPE NAME\t[module]"
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 || (fs[1] != "t" && fs[1] != "T") || !match(fs[2]) {
			continue
		}
		if !slices.Contains(names, fs[2]) {
			names = append(names, fs[2])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/kallsyms: %w", err)
	}
	return names, nil
}

// attachBH attaches the exit program to every symbol, then the entry
// program: a do_softirq() caught half-way then leaves the depth too low
// (clamped at 0), never too high. On error it detaches what it attached.
func (o *Objects) attachBH(enter, exit string, syms []string, attachEnter, attachExit func(*ebpf.Program, string) (link.Link, error)) error {
	var exits, enters []link.Link
	fail := func(err error) error {
		for _, l := range slices.Concat(enters, exits) {
			l.Close()
		}
		return err
	}
	for i, name := range []string{exit, enter} {
		attach, dst := attachExit, &exits
		if i == 1 {
			attach, dst = attachEnter, &enters
		}
		var p *ebpf.Program
		var err error
		if name == hapProgHapBhEnter || name == hapProgHapBhExit {
			p, err = o.load(name, syms[0])
		} else {
			p, err = o.load(name, "")
		}
		if err != nil {
			return fail(fmt.Errorf("load %s: %w", name, err))
		}
		for _, sym := range syms {
			l, err := attach(p, sym)
			if err != nil {
				p.Close()
				return fail(fmt.Errorf("%s on %s: %w", name, sym, err))
			}
			*dst = append(*dst, l)
		}
		p.Close() // the links hold it
	}
	o.bh = slices.Concat(enters, exits) // entry first, for Close
	return nil
}

const (
	modeCount        = 0
	modePcpuHot      = 1
	modePreemptCount = 2
)

func preemptMode(kernel *btf.Spec, include bool) (int, string, error) {
	mode, src, err := findPreemptCount(kernel)
	switch {
	case err == nil && include:
		return mode, "counted (contexts from " + src + ")", nil
	case err == nil:
		return mode, src, nil
	case include:
		return modeCount, "counted (all as task context: " + err.Error() + ")", nil
	}
	return 0, "", fmt.Errorf("%w; count interrupts instead (Interrupts option)", err)
}

func findPreemptCount(kernel *btf.Spec) (int, string, error) {
	var v *btf.Var
	name, mode, src := "", 0, ""
	switch {
	case kernel.TypeByName("pcpu_hot", &v) == nil:
		name, mode, src = "pcpu_hot", modePcpuHot, "pcpu_hot.preempt_count"
	case kernel.TypeByName("__preempt_count", &v) == nil:
		name, mode, src = "__preempt_count", modePreemptCount, "__preempt_count"
	default:
		return 0, "", errors.New("cannot tell interrupt context: kernel BTF has neither pcpu_hot nor __preempt_count (per-CPU variables missing from BTF?)")
	}
	// The verifier resolves typed ksyms through kallsyms, which lists data
	// symbols only with CONFIG_KALLSYMS_ALL.
	ok, err := inKallsyms(name)
	if err != nil {
		return 0, "", err
	}
	if !ok {
		return 0, "", fmt.Errorf("cannot tell interrupt context: per-CPU variable %s is not in /proc/kallsyms (kernel built without CONFIG_KALLSYMS_ALL), so BPF cannot read the preempt count", name)
	}
	return mode, src, nil
}

func inKallsyms(name string) (bool, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return false, fmt.Errorf("check kernel symbol %s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "ADDR TYPE NAME [module]"
		l := sc.Bytes()
		if i := bytes.LastIndexByte(l, ' '); i >= 0 && string(l[i+1:]) == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// patchKsyms turns loads of the extern per-CPU variables into typed BTF-id
// loads (BPF_PSEUDO_BTF_ID) for the variable in use and into 0 for the other,
// which the verifier then prunes as dead code.
func patchKsyms(insns asm.Instructions, kernel *btf.Spec, mode int) error {
	for i := range insns {
		ins := &insns[i]
		ref := ins.Reference()
		if !ins.OpCode.IsDWordLoad() || (ref != "pcpu_hot" && ref != "__preempt_count") {
			continue
		}
		want := (ref == "pcpu_hot" && mode == modePcpuHot) || (ref == "__preempt_count" && mode == modePreemptCount)
		n := asm.Instruction{OpCode: ins.OpCode, Dst: ins.Dst}
		if want {
			var v *btf.Var
			if err := kernel.TypeByName(ref, &v); err != nil {
				return fmt.Errorf("kernel BTF variable %s: %w", ref, err)
			}
			id, err := kernel.TypeID(v)
			if err != nil {
				return fmt.Errorf("kernel BTF variable %s: %w", ref, err)
			}
			n.Src = asm.R3 // BPF_PSEUDO_BTF_ID, btf_obj_fd 0 = vmlinux
			n.Constant = int64(id)
		}
		*ins = n
	}
	return nil
}

func (o *Objects) opts() ebpf.CollectionOptions {
	return ebpf.CollectionOptions{MapReplacements: o.maps, Cache: o.cache}
}

func (o *Objects) load(name string, attachTo string) (*ebpf.Program, error) {
	ps := o.spec.Programs[name].Copy()
	if attachTo != "" {
		ps.AttachTo = attachTo
	}
	cs := &ebpf.CollectionSpec{
		Maps:      map[string]*ebpf.MapSpec{},
		Programs:  map[string]*ebpf.ProgramSpec{name: ps},
		Variables: o.spec.Variables,
		Types:     o.spec.Types,
	}
	for n, m := range o.spec.Maps {
		cs.Maps[n] = m
	}
	c, err := ebpf.NewCollectionWithOptions(cs, o.opts())
	if err != nil {
		return nil, err
	}
	p := c.DetachProgram(name)
	c.Close()
	return p, nil
}

// Program returns the shared program of kind KprobeMulti or Kprobe, loading
// it on first use. It stays owned by o.
func (o *Objects) Program(kind Kind) (*ebpf.Program, error) {
	var name string
	switch kind {
	case KprobeMulti:
		name = hapProgHapKprobeMulti
	case Kprobe:
		name = hapProgHapKprobe
	default:
		return nil, fmt.Errorf("bpf: %v has one program per function: use Fentry", kind)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.progs[name]; p != nil {
		return p, nil
	}
	p, err := o.load(name, "")
	if err != nil {
		return nil, fmt.Errorf("load %v program: %w", kind, err)
	}
	o.progs[name] = p
	return p, nil
}

// Fentry loads a new fentry program for kernel function fn, sharing o's
// maps and BTF cache. The caller owns it and may close it once attached (the
// link keeps it alive). Safe for concurrent use.
func (o *Objects) Fentry(fn string) (*ebpf.Program, error) {
	p, err := o.load(hapProgHapFentry, fn)
	if err != nil {
		return nil, fmt.Errorf("load fentry program for %s: %w", fn, err)
	}
	return p, nil
}

// SysEnter loads a tp_btf/sys_enter program that records every syscall entry
// as function index idx. It needs no kprobe or fentry support, so it checks
// scoping and counting on kernels where those are locked. Owned by o.
func (o *Objects) SysEnter(idx int) (*ebpf.Program, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.progs[hapProgHapSysEnter]; p != nil {
		return p, nil
	}
	p, err := o.tracepoint("sys_enter", idx)
	if err != nil {
		return nil, err
	}
	o.progs[hapProgHapSysEnter] = p
	return p, nil
}

// tracepoint loads the self-test program for the BTF tracepoint tp,
// recording each event as function index idx. The caller owns it.
func (o *Objects) tracepoint(tp string, idx int) (*ebpf.Program, error) {
	// tp_index lives in .rodata, shared and already frozen: use a private copy.
	spec := o.spec.Copy()
	if err := spec.Variables[hapVarTpIndex].Set(uint32(idx)); err != nil {
		return nil, err
	}
	spec.Programs[hapProgHapSysEnter].AttachTo = tp
	maps := map[string]*ebpf.Map{}
	for _, n := range []string{hapMapHits, hapMapScopes, hapMapScopeEnd, hapMapStats, hapMapCpu, hapMapOrigins, hapMapFaults} {
		maps[n] = o.maps[n]
	}
	cs := &ebpf.CollectionSpec{Maps: spec.Maps, Types: spec.Types, Variables: spec.Variables,
		Programs: map[string]*ebpf.ProgramSpec{hapProgHapSysEnter: spec.Programs[hapProgHapSysEnter]}}
	c, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: maps, Cache: o.cache})
	if err != nil {
		return nil, fmt.Errorf("load tp_btf/%s program: %w", tp, err)
	}
	p := c.DetachProgram(hapProgHapSysEnter)
	c.Close()
	return p, nil
}

type scopeValue struct {
	CgroupID uint64
	Level    uint32
	Epoch    uint32 // of the slot's origin keys (see ResetHits)
}

// SetScope makes slot count tasks in the cgroup v2 subtree rooted at the
// cgroup with the given id, at the given depth below the cgroup2 root.
// Counters of the slot are not reset.
func (o *Objects) SetScope(slot int, cgroupID uint64, level int) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	if cgroupID == 0 || level < 0 {
		return fmt.Errorf("bpf: invalid cgroup id %d / level %d", cgroupID, level)
	}
	o.mu.Lock()
	v := scopeValue{CgroupID: cgroupID, Level: uint32(level), Epoch: o.epochs[slot]}
	err := o.maps[hapMapScopes].Put(uint32(slot), v) // under o.mu: no epoch starts meanwhile
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("set scope %d: %w", slot, err)
	}
	return o.markScope(slot, true)
}

// markScope records whether slot is in use and tells the programs where
// the slots in use end. A slot is marked after its value is written and
// unmarked after it is cleared, so no event reads a half-set slot.
func (o *Objects) markScope(slot int, used bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.used[slot] = used
	end := uint32(0)
	for i, u := range o.used {
		if u {
			end = uint32(i + 1)
		}
	}
	if err := o.maps[hapMapScopeEnd].Put(uint32(0), end); err != nil {
		return fmt.Errorf("bpf: mark scope slot %d in use=%v: %w", slot, used, err)
	}
	return nil
}

// ClearScope stops counting for slot.
func (o *Objects) ClearScope(slot int) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	if err := o.maps[hapMapScopes].Put(uint32(slot), scopeValue{}); err != nil {
		return fmt.Errorf("clear scope %d: %w", slot, err)
	}
	return o.markScope(slot, false)
}

// Layout of hits: row (slot*Contexts + ctx) holds the counters of one scope
// slot in one context, Indices() uint64s each; row MaxScopes*Contexts holds
// the samples.

// HitsIn copies the per-function counters of slot in context ctx into dst,
// which must have Indices() elements. Counters keep running while it copies.
func (o *Objects) HitsIn(slot int, ctx Context, dst []uint64) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	if ctx < 0 || ctx >= Contexts {
		return fmt.Errorf("bpf: %v out of range", ctx)
	}
	return o.read(slot*Contexts+int(ctx), dst)
}

// Hits copies into dst (Indices() elements) the counters of slot summed over
// every context: ContextTask, ContextOwnSoftirq once AttachSoftirq ran, and
// ContextInterrupt with Config.Interrupts.
func (o *Objects) Hits(slot int, dst []uint64) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	if len(dst) != o.n {
		return fmt.Errorf("bpf: dst has %d elements, want %d", len(dst), o.n)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.scratch) != Contexts*o.n {
		o.scratch = make([]uint64, Contexts*o.n)
	}
	if err := o.readRows(slot*Contexts, o.scratch); err != nil {
		return err
	}
	copy(dst, o.scratch[:o.n])
	for c := 1; c < Contexts; c++ {
		for i, v := range o.scratch[c*o.n : (c+1)*o.n] {
			dst[i] += v
		}
	}
	return nil
}

func (o *Objects) read(row int, dst []uint64) error {
	if len(dst) != o.n {
		return fmt.Errorf("bpf: dst has %d elements, want %d", len(dst), o.n)
	}
	return o.readRows(row, dst)
}

// readRows copies len(dst)/Indices() rows from row on.
func (o *Objects) readRows(row int, dst []uint64) error {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(dst)*8)
	_, err := o.mem.ReadAt(b, int64(row*o.n*8))
	runtime.KeepAlive(dst)
	if err != nil {
		return fmt.Errorf("bpf: read counters: %w", err)
	}
	return nil
}

// Sampled copies into dst (Indices() elements) how many events of each
// function no scope counted (other tasks', and interrupt context when it is
// not counted) were sampled since New: one in SampleGap on average, at
// random gaps. Sampled[i] × SampleGap estimates those calls: which
// functions a probe costs the machine most for, scope or not.
func (o *Objects) Sampled(dst []uint64) error {
	return o.read(MaxScopes*Contexts, dst)
}

// ResetHits zeroes the counters of slot, in every context, and its origin
// counts (Config.Attribution).
func (o *Objects) ResetHits(slot int) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range [0,%d)", slot, MaxScopes)
	}
	zero := make([]byte, Contexts*o.n*8)
	if _, err := o.mem.WriteAt(zero, int64(slot*Contexts*o.n*8)); err != nil {
		return fmt.Errorf("bpf: reset scope slot %d: %w", slot, err)
	}
	return o.resetOrigins(slot)
}

// Stats sums the per-CPU event counters.
func (o *Objects) Stats() (Stats, error) {
	var s Stats
	for k, dst := range []*uint64{&s.Dropped, &s.Interrupt, &s.OriginsDropped} {
		var per []uint64
		if err := o.maps[hapMapStats].Lookup(uint32(k), &per); err != nil {
			return s, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	var per []cpuState
	if err := o.maps[hapMapCpu].Lookup(uint32(0), &per); err != nil {
		return s, fmt.Errorf("read event counts: %w", err)
	}
	for _, c := range per {
		s.Events += c.Events
	}
	return s, nil
}

type cpuState struct {
	Events, NextSample, BhDepth uint64
}

// Close releases the maps and the programs o owns.
func (o *Objects) Close() error {
	var errs []error
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.bh {
		errs = append(errs, l.Close())
	}
	o.bh = nil
	if o.fault != nil {
		errs = append(errs, o.fault.Close())
		o.fault = nil
	}
	for _, p := range o.progs {
		errs = append(errs, p.Close())
	}
	o.progs = nil
	for _, m := range o.maps {
		errs = append(errs, m.Close())
	}
	o.maps = nil
	return errors.Join(errs...)
}
