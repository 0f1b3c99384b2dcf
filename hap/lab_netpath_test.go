package hap

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// netpathModules are the modules whose every function the 6.1 run probes
// (fentry where BTF allows, kprobes beside it), with the vmlinux network
// path (netpathVmlinux).
var netpathModules = []string{"veth", "bridge", "br_netfilter", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq",
	"nf_nat", "nf_conntrack", "nf_defrag_ipv4", "nf_defrag_ipv6", "overlay", "llc", "stp"}

// netpathVmlinux selects the vmlinux functions of the network path a 6.1
// run probes beside the modules': what a TCP exchange through a veth pair
// and a bridge with NAT runs, in task and soft-IRQ context.
func netpathVmlinux(name string) bool {
	for _, p := range []string{"tcp_v4_", "tcp_sendmsg", "tcp_recvmsg", "ip_rcv", "ip_forward", "ip_output", "ip_finish_output",
		"ip_local_deliver", "__netif_receive_skb", "netif_receive_skb", "__dev_queue_xmit", "dev_hard_start_xmit", "process_backlog",
		"net_rx_action", "do_softirq", "udp_sendmsg", "udp_rcv", "__udp4_lib_rcv", "nf_hook_slow", "ovl_", "vfs_read"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// TestLabNetPath is issue 14's acceptance on a container's path: a
// workload in a network namespace, joined by a veth pair to a bridge, with
// an nftables DNAT rule in its path, exchanges TCP traffic with a peer and
// reads a file from an overlayfs mount; a sibling cgroup sends UDP through
// a veth pair of its own. Under the attribution rule (task context plus the
// soft IRQs a task runs itself), the workload's profile holds veth_xmit, a
// bridge forwarding function, nft_do_chain, nf_conntrack_in and ovl_*
// functions, each symbolized to lines of its module's source; the
// sibling's traffic leaks nothing in, and the workload's nothing into the
// sibling's. 6.12: kprobe.multi over the whole catalogue; 6.1: kprobes
// over every function of the modules involved and the vmlinux network path.
func TestLabNetPath(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	np := labtest.SetupNetPath(t)
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	backend := coverage.KprobeMulti
	if labtest.Kernel() != "6.12" {
		// kprobes by address: fentry over these ~1,800 functions took
		// 2 min 14 s to attach and ~3.5 min to detach under emulation
		// (one trampoline update and RCU-tasks wait per function).
		// fentry through module BTF is checked by coverage's
		// TestLabModules.
		backend = coverage.Kprobe
		cat = cat.Subset(func(f coverage.Function) bool {
			return slices.Contains(netpathModules, f.Module) || f.Module == "" && netpathVmlinux(f.Name)
		})
	}
	t.Logf("catalogue (%s): %s", backend, strings.SplitN(cat.String(), "\n", 2)[0])
	began := time.Now()
	tr, err := coverage.Open(ctx, cat, coverage.Options{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attached in %v", time.Since(began).Round(time.Millisecond))
	defer tr.Close()

	work, err := np.Workload(40, 8192, true)
	if err != nil {
		t.Fatal(err)
	}
	sib, err := np.SiblingWorkload(40, 512, true)
	if err != nil {
		t.Fatal(err)
	}
	var stdins []io.WriteCloser
	var scopes []*coverage.Scope
	for i, c := range []*exec.Cmd{work, sib} {
		dir := filepath.Join("/sys/fs/cgroup", "hapscope-netpath-"+[]string{"work", "sibling"}[i])
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(dir)
		fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		if c.SysProcAttr == nil {
			c.SysProcAttr = &syscall.SysProcAttr{}
		}
		c.SysProcAttr.UseCgroupFD, c.SysProcAttr.CgroupFD = true, fd
		stdins = append(stdins, labtest.StartHeld(t, c))
		s, err := tr.AddScope(dir)
		if err != nil {
			t.Fatal(err)
		}
		scopes = append(scopes, s)
	}
	for _, s := range scopes {
		if err := tr.Reset(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range stdins {
		io.WriteString(in, "go\n")
		in.Close()
	}
	for i, c := range []*exec.Cmd{work, sib} {
		if err := c.Wait(); err != nil {
			t.Fatalf("%s: %v", []string{"workload", "sibling"}[i], err)
		}
	}
	dnat, masq, err := np.NATCounters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nft counters: dnat %d packets, masquerade %d", dnat, masq)
	if dnat == 0 {
		t.Fatal("the DNAT rule matched no packet: the workload did not take the NAT path")
	}
	var snaps []*coverage.Snapshot
	for _, s := range scopes {
		snap, err := tr.Snapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, snap)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}

	kern, err := symbolize.RunningKernel()
	if err != nil {
		t.Fatal(err)
	}
	ix, err := symbolize.Open(ctx, symbolize.Options{Kernel: kern, CacheDir: labtest.IndexCache()})
	if err != nil {
		t.Fatal(err)
	}
	if labtest.ModuleDebug() == "" {
		t.Fatal("the lab runner exported no module debug tree (lab fetch -dbg extracts it)")
	}
	mods := newModuleSet(kern, ScoreOptions{ModuleDebug: labtest.ModuleDebug(), Symbolize: symbolize.Options{CacheDir: t.TempDir()}})
	modIx := func(m string) (*symbolize.Index, error) { return mods.index(ctx, m) }
	var profs []*Profile
	for i, snap := range snaps {
		p, err := FromSnapshot(snap, ix, kern, Meta{Label: []string{"workload", "sibling"}[i]}, Options{Modules: modIx})
		if err != nil {
			t.Fatal(err)
		}
		profs = append(profs, p)
		t.Logf("%s", p.Summary())
		for _, m := range p.Modules {
			t.Logf("  %-14s %5d functions %6d lines %s", m.Name, m.Functions, m.Lines, m.BuildID)
		}
		t.Logf("  softirq rule: %s", p.Softirq)
	}
	work0, sib0 := profs[0], profs[1]

	// The container's path, each function with its module, file and context.
	want := []struct {
		what        string
		module, dir string
		match       func(string) bool
	}{
		{"veth_xmit", "veth", "drivers/net/veth.c", func(n string) bool { return n == "veth_xmit" }},
		{"a bridge forwarding function", "bridge", "net/bridge/", func(n string) bool {
			return strings.HasPrefix(n, "br_forward") || strings.HasPrefix(n, "__br_forward") || strings.HasPrefix(n, "br_handle_frame")
		}},
		{"nft_do_chain", "nf_tables", "net/netfilter/", func(n string) bool { return n == "nft_do_chain" }},
		{"nf_conntrack_in", "nf_conntrack", "net/netfilter/", func(n string) bool { return n == "nf_conntrack_in" }},
		{"ovl_* functions", "overlay", "fs/overlayfs/", func(n string) bool { return strings.HasPrefix(n, "ovl_") }},
	}
	softirq := 0
	for _, w := range want {
		var found []string
		for _, f := range work0.Functions {
			if f.Module != w.module || !w.match(f.Name) {
				continue
			}
			lines := len(f.Own) + len(f.Inlined)
			found = append(found, fmt.Sprintf("%s (%s, %d lines, %s)", f.Name, f.File, lines, f.Context))
			if !strings.HasPrefix(f.File, w.dir) {
				t.Errorf("%s [%s] is symbolized to %s, want %s…", f.Name, f.Module, f.File, w.dir)
			}
			if lines == 0 {
				t.Errorf("%s [%s] has no lines", f.Name, f.Module)
			}
			if f.Context == "" {
				t.Errorf("%s [%s] does not say in which context it was counted", f.Name, f.Module)
			}
			if strings.Contains(f.Context, "softirq") {
				softirq++
			}
		}
		t.Logf("%s: %s", w.what, strings.Join(found, "; "))
		if len(found) == 0 {
			t.Errorf("the workload's profile lacks %s [%s]", w.what, w.module)
		}
	}
	if softirq == 0 {
		t.Error("none of the path's functions was counted in soft-IRQ context: the attribution rule did not apply")
	}

	// No leak either way: the sibling sends UDP over a veth pair off the
	// bridge, and reads no overlay file; the workload sends no UDP.
	has := func(p *Profile, pred func(Func) bool) []string {
		var out []string
		for _, f := range p.Functions {
			if pred(f) {
				out = append(out, f.Name+" ["+f.Module+"] "+f.Context)
			}
		}
		return out
	}
	if l := has(work0, func(f Func) bool { return f.Name == "udp_sendmsg" || f.Name == "__udp4_lib_rcv" || f.Name == "udp_rcv" }); len(l) > 0 {
		t.Errorf("the sibling's UDP traffic leaked into the workload's profile: %v", l)
	}
	if l := has(sib0, func(f Func) bool {
		return f.Module == "bridge" || f.Module == "overlay" || strings.HasPrefix(f.Name, "tcp_v4_connect") || f.Name == "tcp_sendmsg"
	}); len(l) > 0 {
		t.Errorf("the workload's TCP, bridge or overlay work leaked into the sibling's profile: %v", l)
	}
	if l := has(sib0, func(f Func) bool { return f.Name == "udp_sendmsg" }); len(l) == 0 {
		t.Error("the sibling's profile lacks udp_sendmsg: the sibling was not measured")
	}
}
