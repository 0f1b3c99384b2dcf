package matrix

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// labRunsc finds the runsc that `make lab-prep` built into
// the host's lab cache, as a path inside the host root. The lab exports the
// host's symbolize cache (UserCacheDir/hapscope); the lab cache is its
// sibling UserCacheDir/hapscope-lab.
func labRunsc(t *testing.T) string {
	t.Helper()
	var candidates []string
	if c := labtest.LabCache(); c != "" {
		candidates = append(candidates, filepath.Join(c, "runsc", "runsc"))
	}
	candidates = append(candidates, labtest.Host("/root/.cache/hapscope-lab/runsc/runsc"))
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return strings.TrimPrefix(c, labtest.HostRoot)
		}
	}
	t.Fatalf("no runsc in the host's lab cache (looked at %s): build it on the host with `make lab-prep` or "+
		"`CGO_ENABLED=0 GOBIN=~/.cache/hapscope-lab/runsc go install gvisor.dev/gvisor/runsc@v0.0.0-20260905035102-160fafc42237`",
		strings.Join(candidates, ", "))
	return ""
}

// TestLabMatrixSmoke is the matrix in small: redis SET natively, under
// Docker (6.12; Debian's docker.io started in the guest: dockerd and
// containerd, bridge network with the port published, overlay2 on the
// lab's ext4 scratch disk, Docker's default seccomp profile, the client
// connecting to the guest's non-loopback address through DNAT) and under
// gVisor (systrap), one run each, one tracer. Every cell must be scored
// with its load succeeded; the Docker cell is checked by checkDocker.
// Plan.Run runs the Docker row last: once dockerd has set up its NAT
// chains, every local connection in this guest passes netfilter's hooks,
// as on any Docker host, and native would not be native any more.
//
// On 6.1 runc started directly with Docker's seccomp profile stands in for
// Docker: dockerd loads its network modules after the tracer attached,
// and only a tracer over the whole catalogue attaches to late modules,
// which fentry does not do within a test's time under emulation.
func TestLabMatrixSmoke(t *testing.T) {
	labtest.Require(t)
	runsc := labRunsc(t)
	ctx := context.Background()
	// Counts: every probe stays attached. Pruning (the default) patches
	// kernel text while the workloads run, which crashed this guest under
	// multi-threaded TCG ("Oops: int3").
	opt := hap.ScoreOptions{Warmup: 2 * time.Second, Window: 4 * time.Second, Samples: 3, Coverage: coverage.Options{Counts: true}}
	minFuncs := 100
	if labtest.IndexCache() == "" {
		t.Fatal("the lab runner exported no line index: both lab kernels have DWARF (lab fetch -dbg)")
	}
	opt.Symbolize = symbolize.Options{CacheDir: labtest.IndexCache()}
	opt.ModuleDebug = labtest.ModuleDebug() // runc's rootfs and the lab's /tmp are on overlayfs
	if labtest.Kernel() != "6.12" {
		// Without kprobe.multi (6.1), fentry attaches one program per
		// function: probe a bounded set on the paths a TCP server drives.
		cat, err := coverage.LoadCatalogue()
		if err != nil {
			t.Fatal(err)
		}
		// The socket, epoll and futex paths every runtime's redis drives
		// (gVisor's sentry through host sockets and futexes).
		want := map[string]bool{}
		for _, n := range strings.Fields(`ksys_read ksys_write vfs_read vfs_write sock_read_iter sock_write_iter
			sock_sendmsg sock_recvmsg __sys_sendmsg __sys_recvmsg ___sys_sendmsg ___sys_recvmsg __sys_sendto __sys_recvfrom
			inet_sendmsg inet_recvmsg tcp_sendmsg tcp_sendmsg_locked tcp_recvmsg tcp_recvmsg_locked tcp_poll sock_poll
			do_epoll_wait ep_poll do_epoll_ctl do_sys_poll do_pselect futex_wait futex_wake do_futex __x64_sys_futex
			__sys_accept4 do_accept tcp_v4_rcv ip_rcv ip_output __tcp_transmit_skb tcp_ack`) {
			want[n] = true
		}
		opt.Catalogue = cat.Subset(func(f coverage.Function) bool { return want[f.Name] })
		t.Logf("6.1: fentry on %d functions of the socket/epoll/futex paths", len(opt.Catalogue.Functions))
		minFuncs = 5
	}
	env := labEnv(t, "hapscope-matrix-smoke")
	docker, gvisor := dockerRunc(), Runsc("systrap", runsc)
	if labtest.Kernel() == "6.12" {
		docker = Docker("docker", DockerOptions{})
		gvisor = Docker("gvisor-systrap", DockerOptions{Runtime: "runsc", Runsc: runsc, RunscFlags: []string{"--platform=systrap"}})
		v, err := DockerVersion(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", v)
	}
	plan := Plan{
		Workloads: []Workload{Redis("set")},
		Runtimes:  []Runtime{Native(), docker, gvisor},
	}
	sc, err := hap.NewScorer(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sc.Close(); err != nil {
			t.Error(err)
		}
	}()
	before, err := env.tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := plan.Run(ctx, env, sc)
	if err != nil {
		t.Fatal(err)
	}
	// The plan's Docker is gone and so are its firewall tables: no later
	// row or test runs on "a Docker host".
	if after, err := env.tables(ctx); err != nil || !slices.Equal(after, before) {
		t.Errorf("firewall tables after the plan: %q (%v), before: %q", after, err, before)
	}
	if len(cells) != len(plan.Runtimes) {
		t.Fatalf("%d cells, want %d", len(cells), len(plan.Runtimes))
	}
	sets := map[string]map[string]bool{}
	byRuntime := map[string]Cell{}
	for _, c := range cells {
		if c.Skipped != "" || c.Err != nil || c.Profile == nil {
			t.Errorf("%s/%s not scored: skipped %q, error %v", c.Workload, c.Runtime, c.Skipped, c.Err)
			continue
		}
		p := c.Profile
		t.Logf("%s/%s: %s; %d requests, %.0f req/s", c.Workload, c.Runtime, p.Summary(), c.Load.Requests, c.Load.RPS())
		if c.Load.Requests <= 0 || c.Load.Errors != 0 {
			t.Errorf("%s: load %+v, want requests and no errors", c.Runtime, c.Load)
		}
		if len(p.Functions) <= minFuncs {
			t.Errorf("%s: %d functions, want > %d for a TCP server under load", c.Runtime, len(p.Functions), minFuncs)
		}
		if p.Lines.Total < len(p.Functions) || p.Lines.Total > p.Lines.Own+p.Lines.Inlined+p.Lines.Estimated || p.Bugs <= 0 {
			t.Errorf("%s: lines %+v, bugs %.2f for %d functions: want functions ≤ lines ≤ own+inlined+estimated, bugs > 0", c.Runtime, p.Lines, p.Bugs, len(p.Functions))
		}
		set := map[string]bool{}
		fuse := 0
		for _, f := range p.Functions {
			set[f.Name] = true
			if strings.HasPrefix(f.File, "fs/fuse/") {
				fuse++
			}
		}
		// The lab's host root is virtiofs; the service's files are on the
		// ext4 scratch disk (native chroots into them; Docker's container
		// part is checked in checkDocker): native may not drive FUSE code,
		// which no real host's server runs. (Docker's daemons, and runc
		// and runsc started directly, run off the host root.)
		if fuse > 0 && c.Runtime == "native" {
			t.Errorf("%s: %d functions of fs/fuse (virtiofs): the service's files were not on the scratch disk", c.Runtime, fuse)
		}
		sets[c.Runtime] = set
		byRuntime[c.Runtime] = c
		// The load's connections open before the window and close after
		// it (the load stops at hap.ScoreTrace's WindowEnd): a window that
		// holds a connection's accept or close measured the load's set-up
		// or teardown, not redis' steady state. (gVisor's netstack keeps
		// TCP connections out of the host kernel altogether.)
		if c.Runtime != "gvisor-systrap" {
			for _, f := range []string{"__sys_accept4", "tcp_close", "inet_release"} {
				if set[f] {
					t.Errorf("%s: %s in the window: the load's connections were opened or closed while measuring", c.Runtime, f)
				}
			}
		}
	}
	// gVisor serves the guest's TCP in its own netstack and reaches the host
	// kernel through a different set of system calls: its function set must
	// differ from the native one (a runtime that did not really run the
	// workload in its sandbox would look native).
	if n, g := sets["native"], sets["gvisor-systrap"]; n != nil && g != nil {
		only := 0
		for f := range g {
			if !n[f] {
				only++
			}
		}
		if only == 0 {
			t.Errorf("gvisor-systrap drove no function native redis did not: was it really sandboxed?")
		}
	}
	if _, ok := byRuntime["docker"]; ok {
		checkDocker(t, byRuntime)
	}
	if g, ok := byRuntime["gvisor-systrap"]; ok && labtest.Kernel() == "6.12" {
		checkSandboxSplit(t, g)
	}
}

// checkSandboxSplit checks gVisor under Docker's sentry, stubs and gofer
// parts (splitSandbox): the sentry, which serves redis' system calls and
// runs its netstack, and systrap's stub processes, which run redis'
// threads, drove kernel code in the window, and what each part drove the
// container's part (their parent cgroup, scored over the same window)
// drove too.
func checkSandboxSplit(t *testing.T, g Cell) {
	ctr, sentry, stubs := g.Parts["container"], g.Parts["sentry"], g.Parts["stubs"]
	if ctr == nil || sentry == nil || stubs == nil {
		t.Fatalf("gvisor-systrap cell has parts %v, want container, sentry, stubs (and gofer)", g.Parts)
	}
	t.Logf("  gvisor-systrap sentry part: %s", sentry.Summary())
	if len(sentry.Functions) < 20 {
		t.Errorf("sentry part: %d functions, want ≥ 20: the sentry serves redis' requests through host system calls", len(sentry.Functions))
	}
	for name, p := range g.Parts {
		if name == "stubs" || name == "gofer" {
			t.Logf("  gvisor-systrap %s part: %s", name, p.Summary())
		}
	}
	// The container's part is the split parts' parent cgroup.
	parent := g
	parent.Profile = ctr
	checkWithin(t, parent, "sentry", "stubs", "gofer")
	checkWithin(t, g, "container", "runtime")
}

// labEnv is the matrix environment of a lab test: the host's root, a
// cgroup and a work dir named name, the lab's scratch disk and address.
// The cgroup is removed when the test ends.
func labEnv(t *testing.T, name string) *Env {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Root: labtest.HostRoot, Cgroup: filepath.Join(root, name), Work: "/tmp/" + name,
		Data: os.Getenv(labtest.EnvScratch), Host: os.Getenv(labtest.EnvAddr), Log: testLog{t}}
	if env.Data == "" || env.Host == "" {
		t.Fatalf("the lab exported no scratch disk (%s) or address (%s)", labtest.EnvScratch, labtest.EnvAddr)
	}
	for _, d := range []string{env.inRoot(env.Work), env.Cgroup} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(env.Cgroup) })
	return env
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checkDocker checks the Docker cell against the native one: the
// container's own part must have driven the bridge, veth, netfilter NAT
// and overlayfs module functions, in the contexts the attribution rule
// gives them; the native profile none of them; the runtime's processes
// are a part of their own.
func checkDocker(t *testing.T, byRuntime map[string]Cell) {
	docker := byRuntime["docker"]
	ctr, rt := docker.Parts["container"], docker.Parts["runtime"]
	if ctr == nil || rt == nil {
		t.Fatalf("docker cell has parts %v, want container and runtime", docker.Parts)
	}
	for _, m := range docker.Profile.Modules {
		t.Logf("  docker %s: %d functions, %d lines", m.Name, m.Functions, m.Lines)
	}
	t.Logf("  docker runs as: %s", docker.Profile.Workload.Runtime)
	t.Logf("  container part: %s", ctr.Summary())
	for _, f := range ctr.Functions {
		if strings.HasPrefix(f.File, "fs/fuse/") {
			t.Errorf("container part: %s (%s): FUSE (virtiofs) code, but the container's files are overlay2 on ext4", f.Name, f.File)
		}
	}
	t.Logf("  runtime part: %s", rt.Summary())
	// What the container's own tasks drove of each module, and in which
	// contexts (task: its system calls; softirq: the soft IRQs it ran
	// itself on its own sends, coverage's attribution rule).
	contexts := map[string]map[string]bool{}
	for _, f := range ctr.Functions {
		if f.Module == "" {
			continue
		}
		t.Logf("  container: %s [%s] %s, %d lines", f.Name, f.Module, f.Context, f.Lines)
		if contexts[f.Module] == nil {
			contexts[f.Module] = map[string]bool{}
		}
		for _, c := range strings.Split(f.Context, "+") {
			contexts[f.Module][c] = true
		}
	}
	for _, w := range []struct{ module, ctx, why string }{
		{"veth", "task", "the container's replies leave through its veth"},
		{"bridge", "softirq", "and cross the bridge in the soft IRQ the container runs on its send"},
		{"nf_conntrack", "softirq", "NAT'd connections are tracked"},
		{"nf_nat", "softirq", "and their replies un-NAT'd"},
		{"overlay", "task", "the container's root is overlay2"},
	} {
		if !contexts[w.module][w.ctx] {
			t.Errorf("container part: no function of module %s in %s context (%s); contexts seen: %v", w.module, w.ctx, w.why, contexts[w.module])
		}
	}
	for _, m := range byRuntime["native"].Profile.Modules {
		switch m.Name {
		case "veth", "bridge", "nf_conntrack", "nf_nat", "overlay":
			t.Errorf("native profile has %d functions of module %s: native redis has no bridge, NAT or overlay", m.Functions, m.Name)
		}
	}
	// The runtime's daemons are part of the cell, apart from the container.
	if len(rt.Functions) == 0 {
		t.Error("runtime part (dockerd, containerd, shim, docker-proxy) drove no kernel function in the window")
	}
	// What a part drove, the cell (its parent cgroup) drove too.
	checkWithin(t, docker, "container", "runtime")
	// The runtime's part split by daemon (splitDaemons): dockerd, containerd,
	// the container's shim and the published port's docker-proxy each
	// have their part, within the runtime's.
	for _, name := range daemonRoles {
		p := docker.Parts[name]
		if p == nil {
			t.Errorf("docker cell has no %s part (parts %v): splitDaemons found no %s process in the runtime's cgroup", name, slices.Collect(maps.Keys(docker.Parts)), name)
			continue
		}
		t.Logf("  %s part: %s", name, p.Summary())
	}
	parent := docker
	parent.Profile = rt
	checkWithin(t, parent, daemonRoles...)
	// The daemons' state and temporary files are on a tmpfs, as on a
	// deployed host: none of their parts walks the lab's virtiofs.
	for _, name := range daemonRoles {
		if p := docker.Parts[name]; p != nil {
			for _, f := range p.Functions {
				if strings.HasPrefix(f.File, "fs/fuse/") {
					t.Errorf("%s part: %s (%s): FUSE (virtiofs) code; the daemons' files belong on a tmpfs or the ext4 disk", name, f.Name, f.File)
				}
			}
		}
	}
}

// checkWithin checks that what each named part of cell c drove, the cell
// drove too. The windows are scored by separate calls that open together
// (hap.ScoreTrace.BeforeWindow) and end a snapshot apart: some functions
// may fall in one window and not the other — up to a fifth and 2. (Before
// the windows opened together, gVisor's runtime part held 188 of 337
// functions its cell's window missed: dentry, unlink and FUSE paths.) A
// part outside the cell would miss nearly all.
func checkWithin(t *testing.T, c Cell, parts ...string) {
	in := map[string]bool{}
	for _, f := range c.Profile.Functions {
		in[f.Name] = true
	}
	for _, name := range parts {
		p := c.Parts[name]
		if p == nil {
			continue
		}
		t.Logf("%s: the %s part's window opened %v after the cell's", c.Runtime, name, p.Start.Sub(c.Profile.Start))
		var missing []string
		for _, f := range p.Functions {
			if !in[f.Name] {
				missing = append(missing, f.Name)
			}
		}
		if len(missing) > len(p.Functions)/5+2 {
			t.Errorf("%s: %d of the %s part's %d functions are not in the cell's profile (%d functions): %v",
				c.Runtime, len(missing), name, len(p.Functions), len(c.Profile.Functions), missing[:min(len(missing), 10)])
		}
	}
}
