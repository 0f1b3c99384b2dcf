//go:build amd64

package bpf

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
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

// Config sizes the counters.
type Config struct {
	Functions  int  // number of function indices (cookies 0..Functions-1)
	Interrupts bool // also count events in interrupt context
	// Addrs[i] is the entry address of function i (as in /proc/kallsyms).
	// The KprobeMulti program finds the index from the address it was
	// entered at (no cookie: see hap.bpf.c); needed only for KprobeMulti.
	Addrs []uint64
}

// Stats are per-CPU event counters summed: what the counter did not record,
// and how often a program ran at all.
type Stats struct {
	Dropped   uint64 // events with an out-of-range index or a failed map lookup
	Interrupt uint64 // events skipped because they ran in interrupt context
	// Events counts every run of a program, any task and context, in scope
	// or not: the probe hits tracing makes the whole machine pay for.
	Events uint64
}

// SampleGap is the mean gap between the events Sampled records.
const SampleGap = 64

// Objects are the live maps plus the programs loaded so far.
type Objects struct {
	cfg    Config
	spec   *ebpf.CollectionSpec
	maps   map[string]*ebpf.Map // hits, scopes, stats, .rodata
	cache  *btf.Cache
	mem    *ebpf.Memory
	ctxSrc string

	mu    sync.Mutex
	progs map[string]*ebpf.Program
	used  [MaxScopes]bool // scope slots set
}

// New creates the maps for cfg. Close releases them.
func New(cfg Config) (*Objects, error) {
	if cfg.Functions <= 0 {
		return nil, errors.New("bpf: Config.Functions must be positive")
	}
	if cfg.Addrs != nil && len(cfg.Addrs) != cfg.Functions {
		return nil, fmt.Errorf("bpf: Config.Addrs has %d addresses for %d functions", len(cfg.Addrs), cfg.Functions)
	}
	if cfg.Functions >= 1<<17 {
		return nil, fmt.Errorf("bpf: %d functions is more than the in-kernel address search covers (%d)", cfg.Functions, 1<<17-1)
	}
	if uint64(cfg.Functions)*(MaxScopes+1) > 1<<31 {
		return nil, fmt.Errorf("bpf: %d functions is too many for %d scopes", cfg.Functions, MaxScopes)
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
	if err := spec.Variables[hapVarNfuncs].Set(uint32(cfg.Functions)); err != nil {
		return nil, err
	}
	if err := spec.Variables[hapVarPreemptMode].Set(uint32(mode)); err != nil {
		return nil, err
	}
	spec.Maps[hapMapHits].MaxEntries = uint32(cfg.Functions * (MaxScopes + 1)) // + the samples' slot
	spec.Maps[hapMapAddrs].MaxEntries = uint32(cfg.Functions)

	o := &Objects{cfg: cfg, spec: spec, cache: cache, ctxSrc: ctxSrc,
		maps: map[string]*ebpf.Map{}, progs: map[string]*ebpf.Program{}}
	// A collection without programs creates every map, .rodata filled from
	// the variables and frozen.
	c, err := ebpf.NewCollection(&ebpf.CollectionSpec{Maps: spec.Maps, Variables: spec.Variables, Types: spec.Types})
	if err != nil {
		return nil, fmt.Errorf("create maps: %w", err)
	}
	for _, name := range []string{hapMapHits, hapMapScopes, hapMapScopeEnd, hapMapStats, hapMapCpu, hapMapAddrs, ".rodata"} {
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

// Interrupts says how interrupt context is detected ("pcpu_hot.preempt_count",
// "__preempt_count") or "counted" when it is not excluded.
func (o *Objects) Interrupts() string { return o.ctxSrc }

const (
	modeCount        = 0
	modePcpuHot      = 1
	modePreemptCount = 2
)

func preemptMode(kernel *btf.Spec, include bool) (int, string, error) {
	if include {
		return modeCount, "counted", nil
	}
	var v *btf.Var
	name, mode, src := "", 0, ""
	switch {
	case kernel.TypeByName("pcpu_hot", &v) == nil:
		name, mode, src = "pcpu_hot", modePcpuHot, "pcpu_hot.preempt_count"
	case kernel.TypeByName("__preempt_count", &v) == nil:
		name, mode, src = "__preempt_count", modePreemptCount, "__preempt_count"
	default:
		return 0, "", errors.New("cannot exclude interrupt context: kernel BTF has neither pcpu_hot nor __preempt_count (per-CPU variables missing from BTF?); count interrupts instead (Interrupts option)")
	}
	// The verifier resolves typed ksyms through kallsyms, which lists data
	// symbols only with CONFIG_KALLSYMS_ALL.
	ok, err := inKallsyms(name)
	if err != nil {
		return 0, "", err
	}
	if !ok {
		return 0, "", fmt.Errorf("cannot exclude interrupt context: per-CPU variable %s is not in /proc/kallsyms (kernel built without CONFIG_KALLSYMS_ALL), so BPF cannot read the preempt count; count interrupts instead (Interrupts option)", name)
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
	// tp_index lives in .rodata, shared and already frozen: use a private copy.
	spec := o.spec.Copy()
	if err := spec.Variables[hapVarTpIndex].Set(uint32(idx)); err != nil {
		return nil, err
	}
	maps := map[string]*ebpf.Map{}
	for _, n := range []string{hapMapHits, hapMapScopes, hapMapScopeEnd, hapMapStats, hapMapCpu} {
		maps[n] = o.maps[n]
	}
	cs := &ebpf.CollectionSpec{Maps: spec.Maps, Types: spec.Types, Variables: spec.Variables,
		Programs: map[string]*ebpf.ProgramSpec{hapProgHapSysEnter: spec.Programs[hapProgHapSysEnter]}}
	c, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: maps, Cache: o.cache})
	if err != nil {
		return nil, fmt.Errorf("load tp_btf/sys_enter program: %w", err)
	}
	p := c.DetachProgram(hapProgHapSysEnter)
	c.Close()
	o.progs[hapProgHapSysEnter] = p
	return p, nil
}

type scopeValue struct {
	CgroupID uint64
	Level    uint32
	_        uint32
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
	v := scopeValue{CgroupID: cgroupID, Level: uint32(level)}
	if err := o.maps[hapMapScopes].Put(uint32(slot), v); err != nil {
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

// Hits copies the per-function counters of slot into dst, which must have
// Config.Functions elements. Counters keep running while it copies.
func (o *Objects) Hits(slot int, dst []uint64) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range", slot)
	}
	return o.read(slot, dst)
}

func (o *Objects) read(slot int, dst []uint64) error {
	if len(dst) != o.cfg.Functions {
		return fmt.Errorf("bpf: dst has %d elements, want %d", len(dst), o.cfg.Functions)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(dst)*8)
	_, err := o.mem.ReadAt(b, int64(slot*o.cfg.Functions*8))
	runtime.KeepAlive(dst)
	return err
}

// Sampled copies into dst (Config.Functions elements) how many events of
// each function no scope counted (other tasks', and interrupt context when
// it is not counted) were sampled since New: one in SampleGap on average,
// at random gaps. Sampled[i] × SampleGap estimates those calls: which
// functions a probe costs the machine most for, scope or not.
func (o *Objects) Sampled(dst []uint64) error {
	return o.read(MaxScopes, dst)
}

// ResetHits zeroes the counters of slot.
func (o *Objects) ResetHits(slot int) error {
	if slot < 0 || slot >= MaxScopes {
		return fmt.Errorf("bpf: scope slot %d out of range", slot)
	}
	zero := make([]byte, o.cfg.Functions*8)
	_, err := o.mem.WriteAt(zero, int64(slot*o.cfg.Functions*8))
	return err
}

// Stats sums the per-CPU event counters.
func (o *Objects) Stats() (Stats, error) {
	var s Stats
	for k, dst := range []*uint64{&s.Dropped, &s.Interrupt} {
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
	Events, NextSample uint64
}

// Close releases the maps and the programs o owns.
func (o *Objects) Close() error {
	var errs []error
	o.mu.Lock()
	defer o.mu.Unlock()
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
