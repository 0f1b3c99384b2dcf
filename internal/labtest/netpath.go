package labtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The addresses of a NetPath (one per guest: names and addresses are fixed).
const (
	// NetPathDNAT is what the workload connects to; the nft rule rewrites
	// it to NetPathPeer.
	NetPathDNAT = "10.99.0.1:8080"
	// NetPathPeer is the TCP echo server, in its own network namespace
	// on the bridge.
	NetPathPeer = "10.99.1.2:80"
	// NetPathBridgeAddr is the bridge's address in the root namespace, the
	// default gateway of the namespaces on it.
	NetPathBridgeAddr = "10.99.1.1"
	// NetPathWorkloadAddr is the workload namespace's address.
	NetPathWorkloadAddr = "10.99.1.10"
	// NetPathSiblingTarget is the UDP echo server of the sibling workload
	// (root namespace side of the sibling's own veth pair, off the bridge).
	NetPathSiblingTarget = "10.99.2.1:9000"
)

// NetPathModules are the modules a NetPath needs (LoadModule loads their
// dependencies): what Docker's default bridge network with nftables NAT and
// overlay2 storage load.
var NetPathModules = []string{"veth", "bridge", "br_netfilter", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nf_nat", "nf_conntrack", "overlay"}

// NetPath is a container's network and storage path, built inside the lab
// guest by SetupNetPath:
//
//   - network namespace WorkNS, joined by a veth pair (WorkPort in the root
//     namespace) to the Linux bridge Bridge (NetPathBridgeAddr/24), its
//     default gateway;
//   - network namespace PeerNS on the same bridge (PeerPort), where a TCP
//     echo server listens on NetPathPeer;
//   - nftables table Table: prerouting DNAT of NetPathDNAT to NetPathPeer,
//     postrouting masquerade of the bridge subnet to the peer (Docker's
//     hairpin NAT), each rule with a counter (NATCounters);
//   - an overlayfs mount (lower, upper and work under a tmpfs) holding File.
//
// A connection from the workload goes: veth (workload side) → bridge port →
// bridge device in the root namespace → PREROUTING DNAT, conntrack →
// forwarding → POSTROUTING masquerade → bridge → PeerPort veth → peer.
// Workload and SiblingWorkload return the commands that drive it; the
// caller starts them (held with StartHeld, in a cgroup of its choice).
//
// Every packet of the root namespace, the sibling's included, passes the
// table's NAT chains (nft_do_chain) and conntrack; only the workload's
// match the rules.
type NetPath struct {
	Dir                string // holds the namespace files and the overlay mount
	WorkNS, PeerNS     string // network namespace files (nsenter --net=)
	SiblingNS          string // set by the first SiblingWorkload
	Bridge             string // bridge device
	WorkPort, PeerPort string // the bridge's ports (root ends of the veth pairs)
	SiblingPort        string // root end of the sibling's veth pair
	Table              string // nftables table (family ip)
	File               string // the file on the overlay mount
	FileData           string // its content

	cleanups []func()
}

// SetupNetPath loads NetPathModules, builds a NetPath and removes it when t
// ends (Close may be called earlier). The host's ip and nft (iproute2,
// nftables) run chrooted into /host.
func SetupNetPath(t testing.TB) *NetPath {
	t.Helper()
	Require(t)
	np, err := setupNetPath()
	if np != nil {
		t.Cleanup(np.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	return np
}

// Close tears the NetPath down: processes, nft table, links, mounts.
func (np *NetPath) Close() {
	for i := len(np.cleanups) - 1; i >= 0; i-- {
		np.cleanups[i]()
	}
	np.cleanups = nil
}

func (np *NetPath) onClose(f func()) { np.cleanups = append(np.cleanups, f) }

func setupNetPath() (*NetPath, error) {
	if err := LoadModules(NetPathModules...); err != nil {
		return nil, err
	}
	np := &NetPath{
		Dir: "/run/labtest-netpath", Bridge: "npbr0", WorkPort: "npw0", PeerPort: "npp0",
		Table: "labtest_netpath", FileData: "hapscope netpath overlay file\n",
	}
	np.WorkNS = filepath.Join(np.Dir, "ns-work")
	np.PeerNS = filepath.Join(np.Dir, "ns-peer")
	if err := os.MkdirAll(np.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount("tmpfs", np.Dir, "tmpfs", 0, "size=16m"); err != nil {
		return nil, fmt.Errorf("netpath: mount tmpfs on %s: %w", np.Dir, err)
	}
	np.onClose(func() { unix.Unmount(np.Dir, unix.MNT_DETACH) })

	// Storage: overlayfs, the file in the lower layer.
	ovl := filepath.Join(np.Dir, "ovl")
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(ovl, d), 0o755); err != nil {
			return np, err
		}
	}
	if err := os.WriteFile(filepath.Join(ovl, "lower", "data.txt"), []byte(np.FileData), 0o644); err != nil {
		return np, err
	}
	merged := filepath.Join(ovl, "merged")
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", ovl, ovl, ovl)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return np, fmt.Errorf("netpath: mount overlayfs on %s: %w", merged, err)
	}
	np.onClose(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	np.File = filepath.Join(merged, "data.txt")

	// Network: bridge, two namespaces on it.
	for _, ns := range []string{np.WorkNS, np.PeerNS} {
		if err := newNetns(ns); err != nil {
			return np, err
		}
		np.onClose(func() { unix.Unmount(ns, unix.MNT_DETACH) })
	}
	np.onClose(func() {
		for _, l := range []string{np.Bridge, np.WorkPort, np.PeerPort} {
			hostCmd(hostIP, "link", "del", l).Run()
		}
	})
	steps := [][]string{
		{hostIP, "link", "add", np.Bridge, "type", "bridge"},
		{hostIP, "addr", "add", NetPathBridgeAddr + "/24", "dev", np.Bridge},
		{hostIP, "link", "set", np.Bridge, "up"},
	}
	for _, s := range steps {
		if err := run(hostCmd(s[0], s[1:]...)); err != nil {
			return np, err
		}
	}
	for _, n := range []struct{ ns, port, addr string }{
		{np.WorkNS, np.WorkPort, NetPathWorkloadAddr},
		{np.PeerNS, np.PeerPort, hostOf(NetPathPeer)},
	} {
		if err := np.attach(n.ns, n.port, n.addr+"/24", NetPathBridgeAddr, np.Bridge); err != nil {
			return np, err
		}
	}
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/send_redirects": "0", "net/ipv4/conf/" + np.Bridge + "/send_redirects": "0"} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return np, fmt.Errorf("netpath: sysctl %s: %w", k, err)
		}
	}

	// NAT: Docker's published-port DNAT and hairpin masquerade.
	dnatIP, dnatPort, _ := net.SplitHostPort(NetPathDNAT)
	peerIP, peerPort, _ := net.SplitHostPort(NetPathPeer)
	ruleset := fmt.Sprintf(`table ip %[1]s {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[2]s tcp dport %[3]s counter dnat to %[4]s:%[5]s comment "dnat"
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.99.1.0/24 ip daddr %[4]s tcp dport %[5]s counter masquerade comment "masq"
	}
}
`, np.Table, dnatIP, dnatPort, peerIP, peerPort)
	nft := hostCmd(hostNft, "-f", "-")
	nft.Stdin = strings.NewReader(ruleset)
	if err := run(nft); err != nil {
		return np, err
	}
	np.onClose(func() { hostCmd(hostNft, "delete", "table", "ip", np.Table).Run() })

	// The peer: a TCP echo server in PeerNS.
	peer, err := roleCmd(np.PeerNS, "tcpecho", "NETPATH_LISTEN=:"+peerPort)
	if err != nil {
		return np, err
	}
	if err := startReady(peer, np); err != nil {
		return np, fmt.Errorf("netpath: start the peer's echo server: %w", err)
	}
	return np, nil
}

// attach creates a veth pair with one end (eth0, addr, default route via gw)
// in the namespace ns and the other (port) on bridge.
func (np *NetPath) attach(ns, port, addr, gw, bridge string) error {
	steps := [][]string{
		// Created inside ns, the port end moved to the root namespace
		// (that of PID 1, the guest's init).
		{"nsenter", "--net=" + ns, "chroot", HostRoot, hostIP, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", "1"},
		{"nsenter", "--net=" + ns, "chroot", HostRoot, hostIP, "addr", "add", addr, "dev", "eth0"},
		{"nsenter", "--net=" + ns, "chroot", HostRoot, hostIP, "link", "set", "eth0", "up"},
		{"nsenter", "--net=" + ns, "chroot", HostRoot, hostIP, "link", "set", "lo", "up"},
		{"nsenter", "--net=" + ns, "chroot", HostRoot, hostIP, "route", "add", "default", "via", gw},
	}
	if bridge != "" {
		steps = append(steps, []string{"chroot", HostRoot, hostIP, "link", "set", port, "master", bridge})
	}
	steps = append(steps, []string{"chroot", HostRoot, hostIP, "link", "set", port, "up"})
	for _, s := range steps {
		if err := run(exec.Command(s[0], s[1:]...)); err != nil {
			return err
		}
	}
	return nil
}

// Workload returns the command of the workload: in WorkNS, rounds times it
// connects to NetPathDNAT, sends size bytes, checks the echo, and reads
// File from the overlay mount. With held it prints "waiting" and starts
// only after a line on stdin (see StartHeld). It exits 0 after all rounds,
// with a summary line on stdout ("netpath: N rounds, B bytes echoed, F
// file reads"), non-zero on the first mismatch.
func (np *NetPath) Workload(rounds, size int, held bool) (*exec.Cmd, error) {
	return roleCmd(np.WorkNS, "tcpclient", "NETPATH_TARGET="+NetPathDNAT, "NETPATH_FILE="+np.File,
		"NETPATH_FILE_DATA="+np.FileData, "NETPATH_ROUNDS="+strconv.Itoa(rounds),
		"NETPATH_SIZE="+strconv.Itoa(size), "NETPATH_HELD="+strconv.FormatBool(held))
}

// SiblingWorkload returns the command of a workload with different traffic:
// in its own namespace (created on first use) joined by its own veth pair
// (SiblingPort, not on the bridge, 10.99.2.0/24) to the root namespace, it
// sends rounds UDP datagrams of size bytes to NetPathSiblingTarget (a UDP
// echo server in the root namespace) and checks the echoes. It touches
// neither the bridge, the DNAT rule's match, nor the overlay mount. held as
// for Workload.
func (np *NetPath) SiblingWorkload(rounds, size int, held bool) (*exec.Cmd, error) {
	if np.SiblingNS == "" {
		ns := filepath.Join(np.Dir, "ns-sibling")
		if err := newNetns(ns); err != nil {
			return nil, err
		}
		np.onClose(func() { unix.Unmount(ns, unix.MNT_DETACH) })
		np.SiblingNS, np.SiblingPort = ns, "nps0"
		np.onClose(func() { hostCmd(hostIP, "link", "del", np.SiblingPort).Run() })
		gw := hostOf(NetPathSiblingTarget)
		if err := np.attach(ns, np.SiblingPort, "10.99.2.2/24", gw, ""); err != nil {
			return nil, err
		}
		if err := run(hostCmd(hostIP, "addr", "add", gw+"/24", "dev", np.SiblingPort)); err != nil {
			return nil, err
		}
		srv, err := roleCmd("", "udpecho", "NETPATH_LISTEN="+NetPathSiblingTarget)
		if err != nil {
			return nil, err
		}
		if err := startReady(srv, np); err != nil {
			return nil, fmt.Errorf("netpath: start the sibling's UDP echo server: %w", err)
		}
	}
	return roleCmd(np.SiblingNS, "udpclient", "NETPATH_TARGET="+NetPathSiblingTarget,
		"NETPATH_ROUNDS="+strconv.Itoa(rounds), "NETPATH_SIZE="+strconv.Itoa(size), "NETPATH_HELD="+strconv.FormatBool(held))
}

// NATCounters returns the packet counts of the table's DNAT and masquerade
// rules (nft list table).
func (np *NetPath) NATCounters() (dnat, masq uint64, err error) {
	out, err := hostCmd(hostNft, "list", "table", "ip", np.Table).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("nft list table ip %s: %w: %s", np.Table, err, out)
	}
	return parseNATCounters(out)
}

var ruleCounter = regexp.MustCompile(`counter packets (\d+) bytes \d+ .*comment "(dnat|masq)"`)

func parseNATCounters(listing []byte) (dnat, masq uint64, err error) {
	seen := 0
	for _, m := range ruleCounter.FindAllSubmatch(listing, -1) {
		n, _ := strconv.ParseUint(string(m[1]), 10, 64)
		if string(m[2]) == "dnat" {
			dnat = n
		} else {
			masq = n
		}
		seen++
	}
	if seen != 2 {
		return 0, 0, fmt.Errorf("nft listing has %d of the 2 counted rules (dnat, masq):\n%s", seen, listing)
	}
	return dnat, masq, nil
}

// LinkStats returns a root-namespace link's rx and tx packet counts.
func LinkStats(link string) (rx, tx uint64, err error) {
	read := func(f string) (uint64, error) {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", link, "statistics", f))
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if rx, err = read("rx_packets"); err != nil {
		return 0, 0, err
	}
	tx, err = read("tx_packets")
	return rx, tx, err
}

// The host's iproute2 and nftables, by absolute path: busybox chroot
// prefers its own applets (ip) to a program found on $PATH.
const (
	hostIP  = "/bin/ip"
	hostNft = "/usr/sbin/nft"
)

// hostCmd runs a host program (absolute path) chrooted into /host.
func hostCmd(name string, args ...string) *exec.Cmd {
	return exec.Command("chroot", append([]string{HostRoot, name}, args...)...)
}

func run(c *exec.Cmd) error {
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("netpath: %s: %w: %s", strings.Join(c.Args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// newNetns creates a network namespace kept alive by a bind mount on path
// (as ip netns add does): one OS thread unshares it, the thread is then
// left to die with its goroutine.
func newNetns(path string) error {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netpath: unshare a network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("netpath: bind the network namespace on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// The roles: the test binary (any that imports labtest) runs as a workload
// or server when envRole is set, from this package's init, before tests.
const envRole = "HAPSCOPE_LABTEST_ROLE"

func init() {
	if role := os.Getenv(envRole); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "labtest role %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// roleCmd returns the command that runs this binary as role, in the network
// namespace ns ("" for the root one).
func roleCmd(ns, role string, env ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var c *exec.Cmd
	if ns == "" {
		c = exec.Command(self)
	} else {
		c = exec.Command("nsenter", "--net="+ns, self)
	}
	c.Env = append(append(os.Environ(), envRole+"="+role), env...)
	return c, nil
}

// startReady starts a server role and waits for its "ready" line; it is
// killed by np.Close.
func startReady(c *exec.Cmd, np *NetPath) error {
	out, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return err
	}
	np.onClose(func() { c.Process.Kill(); c.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		if l != "ready\n" {
			return fmt.Errorf("%q, want \"ready\" (stderr: %s)", l, stderr.String())
		}
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("not ready after 60 s")
	}
}

func runRole(role string) error {
	atoi := func(k string) int { n, _ := strconv.Atoi(os.Getenv(k)); return n }
	hold := func() error {
		if os.Getenv("NETPATH_HELD") != "true" {
			return nil
		}
		fmt.Println("waiting")
		_, err := bufio.NewReader(os.Stdin).ReadString('\n')
		return err
	}
	switch role {
	case "tcpecho":
		l, err := net.Listen("tcp", os.Getenv("NETPATH_LISTEN"))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	case "udpecho":
		c, err := net.ListenPacket("udp", os.Getenv("NETPATH_LISTEN"))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			c.WriteTo(buf[:n], from)
		}
	case "tcpclient":
		rounds, size := atoi("NETPATH_ROUNDS"), atoi("NETPATH_SIZE")
		target, file, want := os.Getenv("NETPATH_TARGET"), os.Getenv("NETPATH_FILE"), os.Getenv("NETPATH_FILE_DATA")
		if err := hold(); err != nil {
			return err
		}
		var echoed int
		for i := range rounds {
			msg := payload(i, size)
			c, err := net.DialTimeout("tcp", target, 10*time.Second)
			if err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(msg); err != nil {
				c.Close()
				return fmt.Errorf("round %d: write: %w", i, err)
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				return fmt.Errorf("round %d: read the echo: %w", i, err)
			}
			if !bytes.Equal(got, msg) {
				return fmt.Errorf("round %d: echo of %d bytes differs (%d bytes back)", i, len(msg), len(got))
			}
			echoed += len(got)
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			if string(data) != want {
				return fmt.Errorf("round %d: %s holds %q, want %q", i, file, data, want)
			}
		}
		fmt.Printf("netpath: %d rounds, %d bytes echoed, %d file reads\n", rounds, echoed, rounds)
		return nil
	case "udpclient":
		rounds, size := atoi("NETPATH_ROUNDS"), atoi("NETPATH_SIZE")
		if err := hold(); err != nil {
			return err
		}
		c, err := net.Dial("udp", os.Getenv("NETPATH_TARGET"))
		if err != nil {
			return err
		}
		buf := make([]byte, 65536)
		var echoed int
		for i := range rounds {
			msg := payload(i, size)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(msg); err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			n, err := c.Read(buf)
			if err != nil {
				return fmt.Errorf("round %d: read the echo: %w", i, err)
			}
			if !bytes.Equal(buf[:n], msg) {
				return fmt.Errorf("round %d: echo differs", i)
			}
			echoed += n
		}
		fmt.Printf("sibling: %d rounds, %d bytes echoed\n", rounds, echoed)
		return nil
	}
	return fmt.Errorf("unknown role %q", role)
}

// payload is round i's message: size bytes that differ per round.
func payload(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte('a' + (i+j)%26)
	}
	return b
}
