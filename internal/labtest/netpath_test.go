package labtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseNATCounters(t *testing.T) {
	listing := `table ip labtest_netpath {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.99.0.1 tcp dport 8080 counter packets 20 bytes 1200 dnat to 10.99.1.2:80 comment "dnat"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.99.1.0/24 ip daddr 10.99.1.2 tcp dport 80 counter packets 19 bytes 1140 masquerade comment "masq"
	}
}
`
	d, m, err := parseNATCounters([]byte(listing))
	if err != nil || d != 20 || m != 19 {
		t.Fatalf("got %d %d %v, want 20 19", d, m, err)
	}
	if _, _, err := parseNATCounters([]byte(strings.ReplaceAll(listing, `comment "masq"`, ""))); err == nil {
		t.Fatal("a listing without the masquerade rule's counter was accepted")
	}
}

// TestLabLoadModule loads modules at run time three ways: LoadModule (deps
// from the lab's modules.dep, finit_module, compressed or not), busybox
// modprobe, and the kernel's own autoload (request_module runs
// /sbin/modprobe, which resolves the alias through modules.alias).
func TestLabLoadModule(t *testing.T) {
	Require(t)
	LoadModule(t, "br_netfilter")
	for _, m := range []string{"br_netfilter", "bridge", "stp", "llc"} {
		if b, err := os.ReadFile("/sys/module/" + m + "/initstate"); err != nil || strings.TrimSpace(string(b)) != "live" {
			t.Errorf("module %s after LoadModule(br_netfilter): %q %v", m, b, err)
		}
	}
	LoadModule(t, "br_netfilter") // loaded already: no error
	if out, err := exec.Command("modprobe", "tun").CombinedOutput(); err != nil {
		t.Errorf("busybox modprobe tun: %v: %s", err, out)
	} else if _, err := os.Stat("/sys/module/tun/initstate"); err != nil {
		t.Errorf("busybox modprobe tun left no /sys/module/tun: %v", err)
	}
	// The kernel loads dummy itself (request_module("rtnl-link-dummy"),
	// /sbin/modprobe, modules.alias).
	if _, err := os.Stat("/sys/module/dummy"); err == nil {
		t.Fatal("dummy is loaded already; the autoload check needs a module nothing loaded")
	}
	if out, err := hostCmd(hostIP, "link", "add", "labdummy0", "type", "dummy").CombinedOutput(); err != nil {
		t.Errorf("ip link add type dummy (module autoload): %v: %s", err, out)
	} else {
		hostCmd(hostIP, "link", "del", "labdummy0").Run()
		if _, err := os.Stat("/sys/module/dummy/initstate"); err != nil {
			t.Errorf("the kernel's autoload left no /sys/module/dummy: %v", err)
		}
	}
	if err := LoadModules("no_such_module_here"); err == nil {
		t.Error("LoadModules of a module the kernel does not have succeeded")
	}
	if d := ModuleDebug(); d == "" {
		t.Errorf("%s is not set", EnvModuleDebug)
	} else if _, err := os.Stat(d + "/usr/lib/debug/lib/modules/" + Release() + "/kernel/drivers/net/veth.ko"); err != nil {
		t.Errorf("no debug file of veth under %s: %v", d, err)
	}
}

// TestLabNetPath drives the NetPath workload and checks that it went
// where it should: through the DNAT and masquerade rules (their counters),
// across the bridge (its ports' packet counts), echoing its data and
// reading the overlay file; the sibling's UDP traffic, started held as a
// caller would, touches neither NAT rule; after Close a second NetPath
// builds and carries traffic.
func TestLabNetPath(t *testing.T) {
	np := SetupNetPath(t)
	const rounds, size = 20, 4096
	d0, m0, err := np.NATCounters()
	if err != nil {
		t.Fatal(err)
	}
	wrx0, _, err := LinkStats(np.WorkPort)
	if err != nil {
		t.Fatal(err)
	}
	_, ptx0, err := LinkStats(np.PeerPort)
	if err != nil {
		t.Fatal(err)
	}
	w, err := np.Workload(rounds, size, false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.CombinedOutput()
	if err != nil {
		t.Fatalf("workload: %v\n%s", err, out)
	}
	if want := "netpath: 20 rounds, 81920 bytes echoed, 20 file reads\n"; string(out) != want {
		t.Errorf("workload said %q, want %q", out, want)
	}
	d1, m1, err := np.NATCounters()
	if err != nil {
		t.Fatal(err)
	}
	// NAT chains see the first packet of each connection.
	if d1-d0 != rounds || m1-m0 != rounds {
		t.Errorf("NAT rule counters rose by dnat %d, masquerade %d; want %d each (one per connection)", d1-d0, m1-m0, rounds)
	}
	wrx1, _, _ := LinkStats(np.WorkPort)
	_, ptx1, _ := LinkStats(np.PeerPort)
	// Each connection: ≥ 3 segments each way plus data.
	if wrx1-wrx0 < 4*rounds || ptx1-ptx0 < 4*rounds {
		t.Errorf("bridge ports: %s received %d packets, %s sent %d; want ≥ %d each", np.WorkPort, wrx1-wrx0, np.PeerPort, ptx1-ptx0, 4*rounds)
	}
	t.Logf("workload: %s; dnat +%d, masquerade +%d; %s rx +%d, %s tx +%d", strings.TrimSpace(string(out)), d1-d0, m1-m0, np.WorkPort, wrx1-wrx0, np.PeerPort, ptx1-ptx0)

	s, err := np.SiblingWorkload(rounds, 512, true)
	if err != nil {
		t.Fatal(err)
	}
	go2 := StartHeld(t, s)
	srx0, _, err := LinkStats(np.SiblingPort)
	if err != nil {
		t.Fatal(err)
	}
	go2.Write([]byte("go\n"))
	if err := s.Wait(); err != nil {
		t.Fatalf("sibling workload: %v", err)
	}
	srx1, _, _ := LinkStats(np.SiblingPort)
	d2, m2, err := np.NATCounters()
	if err != nil {
		t.Fatal(err)
	}
	if d2 != d1 || m2 != m1 {
		t.Errorf("the sibling's UDP traffic hit the NAT rules: dnat +%d, masquerade +%d", d2-d1, m2-m1)
	}
	if srx1-srx0 < rounds {
		t.Errorf("sibling port %s received %d packets, want ≥ %d", np.SiblingPort, srx1-srx0, rounds)
	}
	t.Logf("sibling: %s rx +%d", np.SiblingPort, srx1-srx0)

	// Close removes everything: a second NetPath builds in the same guest.
	np.Close()
	if _, err := os.Stat("/sys/class/net/" + np.Bridge); err == nil {
		t.Errorf("bridge %s still there after Close", np.Bridge)
	}
	np2 := SetupNetPath(t)
	w2, err := np2.Workload(1, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := w2.CombinedOutput(); err != nil {
		t.Errorf("workload on a second NetPath: %v\n%s", err, out)
	}
}
