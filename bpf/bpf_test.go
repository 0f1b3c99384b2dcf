//go:build amd64

package bpf

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/internal/cgroupv2"
)

// cgroup2Root finds the cgroup v2 mount (/sys/fs/cgroup or, on hybrid
// systems, /sys/fs/cgroup/unified).
func cgroup2Root(t *testing.T) string {
	t.Helper()
	root, err := cgroupv2.Root()
	if err != nil {
		t.Fatalf("cannot create test cgroups: %v", err)
	}
	return root
}

func mkCgroup(t *testing.T, dir string) (id uint64) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// runIn runs a shell command that first moves itself into cgroup dir.
func runIn(t *testing.T, dir, script string) {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "echo $$ > "+dir+"/cgroup.procs && "+script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestSysEnterScopes runs on any kernel with tp_btf (this host included):
// it checks that the counter is accepted by the verifier (with interrupt
// detection patched in), attributes events to the right cgroup subtree only,
// and that Reset works.
func TestSysEnterScopes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, cgroup creation)")
	}
	root := cgroup2Root(t)
	// Indices 3 and 4 are reserved (Config.Reserve): the program counts
	// index 4 all the same.
	o, err := New(Config{Functions: 3, Reserve: 2})
	if err != nil && strings.Contains(err.Error(), "CONFIG_KALLSYMS_ALL") {
		// This kernel cannot exclude interrupt context (the host: no
		// KALLSYMS_ALL); the error said so. Count interrupts instead.
		t.Logf("default config refused as expected here: %v", err)
		o, err = New(Config{Functions: 3, Reserve: 2, Interrupts: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	t.Logf("interrupt detection: %s", o.Interrupts())
	if o.Indices() != 5 {
		t.Fatalf("Indices() = %d, want 3 functions + 2 reserved", o.Indices())
	}
	if err := o.Hits(0, make([]uint64, 3)); err == nil {
		t.Error("Hits accepted a buffer without the reserved indices")
	}
	p, err := o.SysEnter(4)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, "hapscope-bpftest-"+strings.ReplaceAll(t.Name(), "/", "_"))
	os.Remove(filepath.Join(base, "a", "child"))
	os.Remove(filepath.Join(base, "a"))
	os.Remove(filepath.Join(base, "b"))
	os.Remove(base)
	mkCgroup(t, base)
	idA := mkCgroup(t, filepath.Join(base, "a"))
	idB := mkCgroup(t, filepath.Join(base, "b"))
	level := strings.Count(strings.TrimPrefix(filepath.Join(base, "a"), root), "/")
	if err := o.SetScope(0, idA, level); err != nil {
		t.Fatal(err)
	}
	if err := o.SetScope(5, idB, level); err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// A descendant created after the scope was set is counted too.
	child := filepath.Join(base, "a", "child")
	mkCgroup(t, child)
	runIn(t, child, "dd if=/dev/zero of=/dev/null bs=1 count=2000 2>/dev/null")

	a := make([]uint64, 5)
	b := make([]uint64, 5)
	if err := o.Hits(0, a); err != nil {
		t.Fatal(err)
	}
	if err := o.Hits(5, b); err != nil {
		t.Fatal(err)
	}
	if a[4] < 4000 { // dd: one read and one write per byte
		t.Errorf("scope a: %d sys_enter events, want >= 4000 from dd", a[4])
	}
	if a[0] != 0 || a[1] != 0 || a[2] != 0 || a[3] != 0 {
		t.Errorf("scope a: hits on indices never used: %v", a)
	}
	if b[4] != 0 {
		t.Errorf("scope b (idle sibling) counted %d events", b[4])
	}
	// System call entry is task context: Hits (all contexts summed) is
	// the task row, the other rows are empty. Nothing of scope a runs now.
	for c := Context(0); c < Contexts; c++ {
		row := make([]uint64, 5)
		if err := o.HitsIn(0, c, row); err != nil {
			t.Fatal(err)
		}
		want := uint64(0)
		if c == ContextTask {
			want = a[4]
		}
		if row[4] != want {
			t.Errorf("scope a, %v: %d events, want %d", c, row[4], want)
		}
	}
	if err := o.HitsIn(0, Contexts, a); err == nil {
		t.Error("HitsIn accepted context 3")
	}
	if err := o.ResetHits(0); err != nil {
		t.Fatal(err)
	}
	o.Hits(0, a)
	if a[4] > 1000 {
		t.Errorf("after reset scope a still has %d events", a[4])
	}
	o.ClearScope(0)
	runIn(t, child, "dd if=/dev/zero of=/dev/null bs=1 count=2000 2>/dev/null")
	o.Hits(0, a)
	if a[4] > 1000 {
		t.Errorf("cleared scope still counts: %d", a[4])
	}
	// The programs look at slots up to the highest in use: a scope set in
	// a higher slot counts, and slots below it keep counting once it goes.
	if err := o.SetScope(9, idA, level); err != nil {
		t.Fatal(err)
	}
	if err := o.SetScope(0, idA, level); err != nil {
		t.Fatal(err)
	}
	if err := o.ClearScope(9); err != nil {
		t.Fatal(err)
	}
	o.ResetHits(0)
	hi := make([]uint64, 5)
	o.Hits(9, hi)
	if hi[4] != 0 {
		t.Errorf("slot 9 counted %d events with no task in scope", hi[4])
	}
	if err := o.SetScope(9, idA, level); err != nil {
		t.Fatal(err)
	}
	runIn(t, child, "dd if=/dev/zero of=/dev/null bs=1 count=2000 2>/dev/null")
	o.Hits(0, a)
	o.Hits(9, hi)
	if a[4] < 4000 || hi[4] < 4000 {
		t.Errorf("slots 0 and 9 on the same cgroup counted %d and %d events, want >= 4000 each", a[4], hi[4])
	}
	o.ClearScope(9)
	o.ClearScope(0)
	s, err := o.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Dropped != 0 {
		t.Errorf("dropped %d events", s.Dropped)
	}
	// Events of no scope are sampled, one in SampleGap on average: the
	// second dd alone ran 4000 system calls in no scope (expect ~62).
	smp := make([]uint64, 5)
	if err := o.Sampled(smp); err != nil {
		t.Fatal(err)
	}
	if smp[4] < 4000/SampleGap/4 || smp[0] != 0 || smp[1] != 0 || smp[2] != 0 || smp[3] != 0 {
		t.Errorf("samples %v: want index 4 only, at least %d", smp, 4000/SampleGap/4)
	}
	// Every run counts, in a scope or not: the three dd runs at least.
	if s.Events < 12000 {
		t.Errorf("stats count %d program runs, want >= 12000 (three dd runs of 4000 system calls)", s.Events)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New with zero functions succeeded")
	}
	if _, err := New(Config{Functions: 1, Reserve: -1}); err == nil {
		t.Error("New with a negative reserve succeeded")
	}
	if _, err := New(Config{Functions: 1, Reserve: 1 << 30}); err == nil {
		t.Error("New with 2^30 reserved indices succeeded")
	}
}

// TestProgramsVerify loads the shared programs with a sorted address table:
// the verifier must accept the kprobe.multi address search on this kernel.
func TestProgramsVerify(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF)")
	}
	cfg := Config{Functions: 5, Reserve: 2, Interrupts: true, Addrs: []uint64{0x50, 0x10, 0x40, 0x20, 0x30}}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// Late addresses: checked, then found in the hash.
	for _, bad := range []struct {
		idx   []int
		addrs []uint64
	}{
		{[]int{5}, []uint64{0x60, 0x70}}, // lengths differ
		{[]int{7}, []uint64{0x60}},       // index past the reserve
		{[]int{-1}, []uint64{0x60}},
		{[]int{5}, []uint64{0x30}}, // one of Config.Addrs
	} {
		if err := o.AddAddrs(bad.idx, bad.addrs); err == nil {
			t.Errorf("AddAddrs(%v, %#x) succeeded", bad.idx, bad.addrs)
		}
	}
	if err := o.AddAddrs([]int{5, 6}, []uint64{0x60, 0x5}); err != nil {
		t.Fatal(err)
	}
	if err := o.AddAddrs([]int{6}, []uint64{0x5}); err == nil {
		t.Error("AddAddrs added an address twice")
	}
	if err := o.AddAddrs([]int{6}, []uint64{0x70}); err == nil {
		t.Error("AddAddrs went past Config.Reserve addresses")
	}
	var idx uint32
	if err := o.maps[hapMapLateAddrs].Lookup(uint64(0x5), &idx); err != nil || idx != 6 {
		t.Errorf("late address 0x5: index %d, %v; want 6", idx, err)
	}
	if err := o.RemoveAddrs([]uint64{0x5, 0x99}); err != nil {
		t.Fatal(err)
	}
	if err := o.AddAddrs([]int{6}, []uint64{0x70}); err != nil {
		t.Errorf("AddAddrs after RemoveAddrs: %v", err)
	}
	for _, k := range []Kind{KprobeMulti, Kprobe} {
		if _, err := o.Program(k); err != nil {
			if errors.Is(err, unix.EPERM) {
				t.Skipf("%v: this kernel refuses to load it (%v)", k, err)
			}
			t.Errorf("%v: %v", k, err)
		}
	}
	// The soft-IRQ guard's kprobe programs (fentry ones need a kernel
	// that allows fentry: the lab test attaches them).
	for _, name := range []string{hapProgHapBhKenter, hapProgHapBhKexit} {
		p, err := o.load(name, "")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		p.Close()
	}
	if o.mode == modeCount {
		// No preempt count (this host): the guard would change nothing.
		if err := o.AttachSoftirq(); err == nil || !strings.Contains(err.Error(), "preempt count") {
			t.Errorf("AttachSoftirq without a preempt count: %v, want an error that says so", err)
		}
	}
	var got []fnAddr
	for i := uint32(0); i < 5; i++ {
		var v fnAddr
		if err := o.maps[hapMapAddrs].Lookup(i, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	for i, v := range got {
		if v.Addr != uint64(0x10*(i+1)) || cfg.Addrs[v.Idx] != v.Addr {
			t.Errorf("addrs[%d] = %#x idx %d: want sorted addresses with their indices", i, v.Addr, v.Idx)
		}
	}
	if _, err := New(Config{Functions: 2, Addrs: []uint64{1, 1}, Interrupts: true}); err == nil {
		t.Error("New accepted two functions at one address")
	}
}

func TestParseKallsymsFuncs(t *testing.T) {
	in := "ffffffff810c6070 t do_softirq.part.0\n" +
		"ffffffff810c6ea0 T do_softirq\n" +
		"ffffffff82000000 D do_softirq_data\n" +
		"ffffffffc0000000 t do_softirq.cold\t[somemod]\n" +
		"ffffffff810c6ea0 T do_softirq\n" +
		"ffffffff810c66b0 T __local_bh_enable_ip\n"
	got, err := parseKallsymsFuncs(strings.NewReader(in), isSoftirqEntry)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"do_softirq.part.0", "do_softirq"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (vmlinux text only, once each)", got, want)
	}
}

func FuzzParseKallsymsFuncs(f *testing.F) {
	f.Add("ffffffff810c6070 t do_softirq.part.0\nffffffff810c6ea0 T do_softirq\n")
	f.Add("x t do_softirq\tmod\n\n  \n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseKallsymsFuncs(strings.NewReader(in), isSoftirqEntry)
		if err != nil {
			return // a line too long for the scanner
		}
		seen := map[string]bool{}
		for _, n := range got {
			if !isSoftirqEntry(n) || seen[n] || !strings.Contains(in, n) {
				t.Fatalf("parse %q: bad name %q in %q", in, n, got)
			}
			seen[n] = true
		}
	})
}

// TestOrigins runs on any kernel with tp_btf (this host included): the
// self-test program on sys_enter records every event under the system call
// being entered, and on page_fault_user, behind AttachFaults, under
// OriginFault; ResetHits clears the origin counts too.
func TestOrigins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON, cgroup creation)")
	}
	root := cgroup2Root(t)
	cfg := Config{Functions: 3, Attribution: true, OriginKeys: 1024}
	o, err := New(cfg)
	if err != nil && strings.Contains(err.Error(), "CONFIG_KALLSYMS_ALL") {
		cfg.Interrupts = true // as in TestSysEnterScopes
		o, err = New(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.AttachFaults(); err != nil {
		t.Fatal(err)
	}
	sysEnter, err := o.SysEnter(1)
	if err != nil {
		t.Fatal(err)
	}
	fault, err := o.tracepoint("page_fault_user", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer fault.Close()
	base := filepath.Join(root, "hapscope-bpftest-"+t.Name())
	os.Remove(base)
	id := mkCgroup(t, base)
	if err := o.SetScope(3, id, strings.Count(strings.TrimPrefix(base, root), "/")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*ebpf.Program{sysEnter, fault} { // after AttachFaults' program
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	// dd: 300 reads of /dev/zero and 300 writes to /dev/null (its 1 MiB
	// buffer faults in kernel mode, inside read); sh and dd fault their
	// text, data and stack pages in from user mode.
	runIn(t, base, "dd if=/dev/zero of=/dev/null bs=1M count=300 2>/dev/null")
	got, err := o.Origins(3)
	if err != nil {
		t.Fatal(err)
	}
	by := map[int]map[Origin]uint64{}
	for _, c := range got {
		if by[c.Index] == nil {
			by[c.Index] = map[Origin]uint64{}
		}
		by[c.Index][c.Origin] += c.Count
	}
	t.Logf("origins: %v", by)
	if n := by[1][unix.SYS_READ]; n < 300 {
		t.Errorf("sys_enter under read: %d events, want >= 300", n)
	}
	if n := by[1][unix.SYS_WRITE]; n < 300 {
		t.Errorf("sys_enter under write: %d events, want >= 300", n)
	}
	for or, n := range by[1] {
		if or >= SyscallOrigins {
			t.Errorf("sys_enter counted %d events under origin %d, not a system call", n, or)
		}
	}
	if n := by[2][OriginFault]; n < 20 { // 81 on this host's kernel
		t.Errorf("page_fault_user under OriginFault: %d events, want >= 20", n)
	}
	for or, n := range by[2] {
		if or != OriginFault {
			t.Errorf("page_fault_user counted %d events under origin %d", n, or)
		}
	}
	if by[0] != nil {
		t.Errorf("origins of index 0, never used: %v", by[0])
	}
	if other, err := o.Origins(2); err != nil || len(other) != 0 {
		t.Errorf("Origins(2), an unused slot = %v, %v", other, err)
	}
	s, err := o.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OriginsDropped != 0 {
		t.Errorf("%d events' origins dropped", s.OriginsDropped)
	}
	// Origins closes an epoch at each call and keeps the counts: a later
	// call adds the events since, and the hash keeps only the running
	// epoch's keys.
	reads := func(cs []OriginCount) (n uint64) {
		for _, c := range cs {
			if c.Index == 1 && c.Origin == unix.SYS_READ {
				n += c.Count
			}
		}
		return n
	}
	first := reads(got)
	runIn(t, base, "dd if=/dev/zero of=/dev/null bs=1M count=50 2>/dev/null")
	again, err := o.Origins(3)
	if err != nil {
		t.Fatal(err)
	}
	if n := reads(again); n < first+50 || n > first+100 {
		t.Errorf("a second Origins after 50 more reads: %d read events, the first %d", n, first)
	}
	var k originKey
	var v uint64
	stale := 0
	for it := o.maps[hapMapOrigins].Iterate(); it.Next(&k, &v); {
		if k.Epoch != o.epochs[3] {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d keys of closed epochs left in the hash", stale)
	}
	// A reset of a live scope starts a new epoch of its origin keys: the
	// old counts are gone, new calls count again.
	if err := o.ResetHits(3); err != nil {
		t.Fatal(err)
	}
	runIn(t, base, "dd if=/dev/zero of=/dev/null bs=1M count=100 2>/dev/null")
	got, err = o.Origins(3)
	if err != nil {
		t.Fatal(err)
	}
	if n := reads(got); n < 100 || n > 150 {
		t.Errorf("after a reset and 100 reads, %d read events (want 100 and the shell's few)", n)
	}
	o.ClearScope(3)
	if err := o.ResetHits(3); err != nil {
		t.Fatal(err)
	}
	if got, err := o.Origins(3); err != nil || len(got) != 0 {
		t.Errorf("after ResetHits: %d origin counts, %v", len(got), err)
	}
}
