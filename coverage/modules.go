package coverage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/hapscope/hapscope/bpf"
	"github.com/hapscope/hapscope/internal/kallsyms"
)

// Modules loaded after Open. A Tracer opened on a whole catalogue (from
// LoadCatalogue, not a Subset of it) watches the module:module_load
// tracepoint and attaches to the traceable functions of every module that
// loads while it runs, once the module's init function has returned (its
// init code runs once, in the loading task, and is freed after), within a
// fraction of a second. A scope's window (AddScope, Reset) does not start
// while such an attach is pending.

// lateReserve is how many function indices Open keeps for modules loaded
// later: more than Debian's bridge, netfilter, overlay and veth modules
// hold together.
const lateReserve = 16384

// ModuleLoad reports a module loaded after Open (Options.ModuleLoaded).
type ModuleLoad struct {
	Module    string
	Functions int // functions attached
	// Latency is from the kernel's module_load tracepoint to the
	// module's probes attached: the time its code ran unprobed.
	Latency time.Duration
	// Init is the part of Latency the module's init function took
	// (module_load to its init returning): the tracer attaches only then,
	// to the module's code that stays.
	Init time.Duration
	Err  error // why some or all of its functions are not probed
}

// pendingWait bounds how long a window waits for module attaches.
const pendingWait = 60 * time.Second

// moduleWatch is the tracer's module_load listener.
type moduleWatch struct {
	w    *bpf.ModuleWatch
	done chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	pending int
	loads   []ModuleLoad

	// fentry only: vmlinux's BTF functions, read once in the background
	// when the watch starts (tens of milliseconds on hardware, seconds
	// under emulation: not on the path of a module load).
	vmlinuxOnce sync.Once
	vmlinux     *btfInfo
	vmlinuxErr  error
	// names counts the kallsyms text symbols of each name when the watch
	// started (fentry only, read with vmlinux's BTF).
	names map[string]int
}

// watchModules starts the listener, then attaches the modules loaded since
// the catalogue was read.
func (t *Tracer) watchModules() error {
	w, err := bpf.WatchModules()
	if err != nil {
		return err
	}
	mw := &moduleWatch{w: w, done: make(chan struct{})}
	mw.cond = sync.NewCond(&mw.mu)
	t.mods = mw
	if t.backend == Fentry {
		go mw.vmlinuxBTF()
	}
	go func() {
		defer close(mw.done)
		for {
			ev, err := w.Next()
			if err != nil {
				return // closed
			}
			mw.add(1)
			go t.lateModule(ev)
		}
	}()
	// Loaded between LoadCatalogue and the watch.
	now := bpf.Monotonic()
	for _, m := range loadedModules() {
		if !t.cat.loaded[m] {
			mw.add(1)
			go t.lateModule(bpf.ModuleLoad{Name: m, At: now})
		}
	}
	return nil
}

func (mw *moduleWatch) add(n int) {
	mw.mu.Lock()
	mw.pending += n
	if mw.pending == 0 {
		mw.cond.Broadcast()
	}
	mw.mu.Unlock()
}

// waitPending waits until no module attach is pending.
func (t *Tracer) waitPending() error {
	mw := t.mods
	if mw == nil {
		return nil
	}
	timer := time.AfterFunc(pendingWait, func() {
		mw.mu.Lock()
		mw.cond.Broadcast()
		mw.mu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	mw.mu.Lock()
	defer mw.mu.Unlock()
	for mw.pending > 0 {
		if time.Since(start) >= pendingWait {
			return fmt.Errorf("%d module attaches still pending after %v", mw.pending, pendingWait)
		}
		mw.cond.Wait()
	}
	return nil
}

// ModuleLoads returns the modules attached after Open, in order.
func (t *Tracer) ModuleLoads() []ModuleLoad {
	if t.mods == nil {
		return nil
	}
	t.mods.mu.Lock()
	defer t.mods.mu.Unlock()
	return append([]ModuleLoad(nil), t.mods.loads...)
}

func (t *Tracer) stopModules() {
	if t.mods == nil {
		return
	}
	t.mods.w.Close()
	<-t.mods.done
	t.waitPending() // the attaches in flight see the tracer closed
}

// lateModule attaches the functions of a module loaded after Open.
func (t *Tracer) lateModule(ev bpf.ModuleLoad) {
	mw := t.mods
	ml := ModuleLoad{Module: ev.Name}
	n, err := t.attachModule(ev.Name, func() { ml.Init = bpf.Monotonic() - ev.At })
	ml.Functions, ml.Err = n, err
	ml.Latency = bpf.Monotonic() - ev.At
	mw.mu.Lock()
	if n > 0 || err != nil {
		mw.loads = append(mw.loads, ml)
	}
	mw.mu.Unlock()
	// No longer pending before the callback: it may start a window.
	mw.add(-1)
	if t.opts.ModuleLoaded != nil && (n > 0 || err != nil) {
		t.opts.ModuleLoaded(ml)
	}
}

// attachModule waits for module name to finish its init, finds its
// traceable functions and attaches to them.
func (t *Tracer) attachModule(name string, live func()) (int, error) {
	if err := waitLive(name, 30*time.Second); err != nil {
		return 0, err
	}
	live()
	fns, excluded, err := t.moduleFunctions(name)
	if err != nil {
		return 0, fmt.Errorf("module %s: %w", name, err)
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return 0, nil
	}
	t.stMu.Lock()
	for r, n := range excluded {
		t.excluded[r] += n
	}
	known := map[uint64]bool{}
	for _, f := range t.cat.Functions {
		known[f.Addr] = true
	}
	var add []Function
	for _, f := range fns {
		if !known[f.Addr] {
			add = append(add, f)
		}
	}
	room := t.capacity - len(t.cat.Functions)
	var errRoom error
	if len(add) > room {
		r := Reason("no room left for functions of modules loaded later")
		t.excluded[r] += len(add) - room
		errRoom = fmt.Errorf("module %s: %d of its %d functions not probed: the tracer's %d reserved indices are used up (open a new tracer)", name, len(add)-room, len(add), lateReserve)
		add = add[:room]
	}
	first := len(t.cat.Functions)
	t.cat.Functions = append(t.cat.Functions, add...)
	t.stMu.Unlock()
	if len(add) == 0 {
		return 0, errRoom
	}
	idx := make([]int, len(add))
	for j := range add {
		idx[j] = first + j
	}
	t.armed = append(t.armed, make([]bool, len(add))...)
	t.attachable = append(t.attachable, make([]bool, len(add))...)
	var err2 error
	switch t.backend {
	case KprobeMulti:
		addrs := make([]uint64, len(add))
		for j, f := range add {
			addrs[j] = f.Addr
		}
		if err := t.objs.AddAddrs(idx, addrs); err != nil {
			return 0, errors.Join(errRoom, fmt.Errorf("module %s: %w", name, err))
		}
		var ls []*multiLink
		for part := range slices.Chunk(idx, shardSize) {
			l, err := t.attachMultiSet(context.Background(), part, true)
			ls = append(ls, l...)
			if err != nil {
				err2 = err
				break
			}
		}
		t.stMu.Lock()
		t.multi = append(t.multi, ls...)
		t.stMu.Unlock()
	default:
		t.flinks = append(t.flinks, make([]link.Link, len(add))...)
		var todo []int
		for _, i := range idx {
			if t.backend == Fentry && t.cat.Functions[i].noFentry != "" && t.kprobeErr != nil {
				t.stMu.Lock()
				t.excluded[t.cat.Functions[i].noFentry]++
				t.stMu.Unlock()
				continue
			}
			if t.byKprobe(i) && t.backend == Fentry {
				t.besides++
			}
			todo = append(todo, i)
		}
		err2 = t.attachSet(context.Background(), todo, "attach")
	}
	n := 0
	for _, i := range idx {
		t.attachable[i] = t.armed[i]
		if t.armed[i] {
			n++
		}
	}
	t.stMu.Lock()
	t.attached += n
	t.stMu.Unlock()
	if err2 != nil {
		err2 = fmt.Errorf("module %s: %w", name, err2)
	}
	return n, errors.Join(errRoom, err2)
}

// waitLive waits until module name has run its init function.
func waitLive(name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		s, err := readSmall("/sys/module/" + name + "/initstate")
		switch {
		case err == nil && strings.TrimSpace(s) == "live":
			return nil
		case errors.Is(err, os.ErrNotExist):
			// Gone again (its init failed), or a module without sysfs
			// state: nothing to attach.
			if _, err := os.Stat("/sys/module/" + name); err != nil {
				return fmt.Errorf("module %s went away before its functions could be attached", name)
			}
			return nil
		case err != nil:
			return fmt.Errorf("module %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("module %s: still %q after %v", name, strings.TrimSpace(s), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// vmlinuxBTF reads vmlinux's BTF functions once.
func (mw *moduleWatch) vmlinuxBTF() (*btfInfo, error) {
	mw.vmlinuxOnce.Do(func() {
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			mw.vmlinuxErr = err
			return
		}
		mw.vmlinux = btfFuncs(spec, "", nil)
		f, err := os.Open(kallsymsPath)
		if err != nil {
			mw.vmlinuxErr = err
			return
		}
		defer f.Close()
		syms, err := kallsyms.Parse(f, func(typ byte, _ string) bool { return kallsyms.IsText(typ) })
		if err != nil {
			mw.vmlinuxErr = err
			return
		}
		mw.names = map[string]int{}
		for _, s := range syms {
			mw.names[s.Name]++
		}
	})
	return mw.vmlinux, mw.vmlinuxErr
}

// moduleFunctions is LoadCatalogue for one module: its traceable functions,
// and what was left out of them. Only fentry needs BTF and every kallsyms
// name (it attaches by name); the other backends attach by address.
func (t *Tracer) moduleFunctions(name string) ([]Function, map[Reason]int, error) {
	byName := t.backend == Fentry
	// The module's lines only: parsing all of /proc/kallsyms and
	// available_filter_functions takes seconds under emulation.
	ktext, err := moduleLines(kallsymsPath, "\t["+name+"]")
	if err != nil {
		return nil, nil, err
	}
	syms, err := kallsyms.Parse(bytes.NewReader(ktext), func(typ byte, _ string) bool { return kallsyms.IsText(typ) })
	if err != nil {
		return nil, nil, err
	}
	bi := &btfInfo{funcs: map[fkey]Reason{}, objects: map[string]int{}}
	if byName {
		v, err := t.mods.vmlinuxBTF()
		if err != nil {
			return nil, nil, err
		}
		for k, r := range v.funcs {
			bi.funcs[k] = r
		}
		for k, n := range v.objects {
			bi.objects[k] = n
		}
		bi.names = t.mods.names
		if base, err := btf.LoadKernelSpec(); err == nil {
			if ms, err := loadModuleBTF(name, base); err == nil {
				btfFuncs(ms, name, bi)
			}
		}
	}
	mine, withAddrs, err := readFilterFunctionsOf(" [" + name + "]")
	if err != nil {
		return nil, nil, fmt.Errorf("traceable functions: %w", err)
	}
	// Other objects' symbols count for the names fentry can take, but
	// only this module's become functions.
	c := buildCatalogueOf(syms, bi, mine, withAddrs, nil, func(m string) bool { return m == name })
	return c.Functions, c.Excluded, nil
}

// loadedModules lists /proc/modules.
func loadedModules() []string {
	s, err := readSmall("/proc/modules")
	if err != nil {
		return nil
	}
	return parseProcModules(s)
}

// parseProcModules returns the module names of /proc/modules text ("NAME
// SIZE REFS DEPS STATE ADDR" per line), in order.
func parseProcModules(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// moduleLines returns the lines of file that end with suffix.
func moduleLines(file, suffix string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Bytes(); bytes.HasSuffix(l, []byte(suffix)) {
			out = append(append(out, l...), '\n')
		}
	}
	return out, sc.Err()
}
