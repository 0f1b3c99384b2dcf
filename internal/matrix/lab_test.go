package matrix

import (
	"context"
	"os"
	"path/filepath"
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

// TestLabMatrixSmoke is the matrix in small: redis SET natively, under runc
// with Docker's seccomp profile and under gVisor (systrap), one run each,
// one tracer. Every cell must be scored with its load succeeded.
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
	sc, err := hap.NewScorer(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sc.Close(); err != nil {
			t.Error(err)
		}
	}()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Root: labtest.HostRoot, Cgroup: filepath.Join(root, "hapscope-matrix-smoke"), Work: "/tmp/hapscope-matrix-smoke"}
	env.Log = testLog{t}
	if err := os.MkdirAll(env.inRoot(env.Work), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(env.Cgroup)
	plan := Plan{
		Workloads: []Workload{Redis("set")},
		Runtimes:  []Runtime{Native(), dockerRunc(), Runsc("systrap", runsc)},
	}
	cells, err := plan.Run(ctx, env, sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != len(plan.Runtimes) {
		t.Fatalf("%d cells, want %d", len(cells), len(plan.Runtimes))
	}
	sets := map[string]map[string]bool{}
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
		for _, f := range p.Functions {
			set[f.Name] = true
		}
		sets[c.Runtime] = set
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
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
