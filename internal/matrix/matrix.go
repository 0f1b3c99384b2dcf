// Package matrix runs known workloads under container runtimes and scores
// each with hapscope: the demo and the reproduction of the 2018 HAP study.
//
// A cell is one workload (a service and the load that drives it) under one
// runtime. The service runs inside a fresh cgroup v2 directory (the scope);
// the load client runs outside it. A cell whose load did not succeed is
// reported as failed and never scored as a small HAP. A runtime with
// processes of its own beside the service (Docker's daemons) names the
// scope's parts (Instance.Parts), which are scored over the same window;
// gVisor's sentry, platform stubs and gofer, which share the container's
// cgroup, get a child cgroup each (splitSandbox) and are parts too. Before
// the load starts, the scope must be quiet (waitQuiet): no runtime's
// start-up is measured as steady state. Docker rows run after all runs of
// the others: the NAT chains dockerd sets up would change what every other
// row drives.
package matrix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/cgroupv2"
)

// Env is where the matrix runs.
type Env struct {
	// Root is the directory that holds the userland (redis-server, runc …):
	// "" for this machine's /, "/host" in a lab guest (the host's / over
	// virtiofs). Commands run chrooted into it.
	Root string
	// Cgroup is the cgroup v2 directory under which cells make their scopes.
	Cgroup string
	// Log receives progress lines.
	Log io.Writer
	// Work is a writable scratch directory, as a path inside Root (e.g.
	// /tmp/hapscope-demo).
	Work string
	// Data is a directory on a block-device file system (ext4, as a host's
	// /var/lib is), as a path inside Root, for what a runtime stores (Docker's
	// data root); "" means Work. In the lab: lab.ScratchDir.
	Data string
	// Host is the address the load client and the readiness checks connect
	// to; "" means 127.0.0.1. A non-loopback address of this machine makes
	// clients connect as remote ones do: to a published container port
	// through the nat table's DNAT (127.0.0.1 goes through Docker's
	// userland proxy instead). In the lab: lab.Addr.
	Host string

	docker         *dockerd                 // the plan's Docker daemon, once started
	dockerRuntimes map[string]DockerOptions // the OCI runtimes of the plan's Docker rows
	roots          map[string]string        // service roots on Env.Data, by image name
	daemonBinds    []bind                   // Docker's programs' copies on Env.Data (offVirtiofs)
	daemonTmp      string                   // the daemons' TMPDIR, on their state's tmpfs
	tablesBefore   []string                 // the firewall's tables before the plan's Docker (saveTables)
	cleanups       []func()                 // run at the end of Plan.Run
}

// addr is where a service on port answers.
func (e *Env) addr(port int) string {
	h := e.Host
	if h == "" {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

// data is Env.Data or, unset, Env.Work.
func (e *Env) data() string {
	if e.Data != "" {
		return e.Data
	}
	return e.Work
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", args...)
	}
}

// command builds a command that runs in e.Root, optionally inside cgroup dir.
func (e *Env) command(ctx context.Context, cgroupFD int, argv ...string) *exec.Cmd {
	return e.commandIn(ctx, e.Root, cgroupFD, argv...)
}

// commandIn is command chrooted into root (a path here) instead of e.Root;
// argv[0] must then be an absolute path inside root, or a program in
// e.Root's PATH when root is e.Root.
func (e *Env) commandIn(ctx context.Context, root string, cgroupFD int, argv ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if root != "" && root != "/" {
		// exec.Command looked argv[0] up here; look it up in the root.
		if root != e.Root {
			c.Path, c.Err = argv[0], nil
		} else if p, err := e.lookPath(argv[0]); err == nil {
			c.Path, c.Err = p, nil
		}
		c.SysProcAttr.Chroot = root
		c.Dir = "/"
		c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"}
	}
	if cgroupFD >= 0 {
		c.SysProcAttr.UseCgroupFD = true
		c.SysProcAttr.CgroupFD = cgroupFD
	}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	return c
}

// Service is a long-running server a workload drives.
type Service struct {
	Argv []string // started in the scope
	Port int      // TCP port it listens on, on every address
	// Files are what the service needs besides Argv[0] and the shared
	// libraries it and they link (found from their ELF headers), as paths
	// inside Env.Root: files or whole directories (an interpreter's
	// library). A runtime that runs images (Docker) builds the service's
	// image from them.
	Files []string
	// Ready reports whether the service answers at addr (host:port);
	// polled after start.
	Ready func(ctx context.Context, addr string) error
}

// LoadResult is what a load client achieved.
type LoadResult struct {
	Requests int           // completed requests
	Errors   int           // failed requests (a cell with errors is failed)
	Elapsed  time.Duration // time the load ran
}

// RPS is requests per second.
func (r LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Workload is a service and the load that drives it.
type Workload struct {
	Name    string
	Service Service
	// Load drives the service at port until ctx ends and reports what it
	// achieved. It runs outside the measured cgroup.
	Load func(ctx context.Context, e *Env, addr string) (LoadResult, error)
	// Served, when set, reads a counter of requests the service has
	// served. The warm-up starts only once it grows by loadStarted: load
	// clients can take seconds to start under emulation, and a warm-up
	// spent waiting for them would put start-up into the window.
	Served func(ctx context.Context, addr string) (int, error)
	// Idle marks a workload without load (Load only waits): its service
	// is not asked whether it is ready, and no request is expected.
	Idle bool
}

// Idle is the runtime's baseline: a service that does nothing (sleep),
// under no load. Under Docker its profile is what a container costs by
// just existing, and its runtime part what the daemons cost, idle.
func Idle() Workload {
	return Workload{
		Name:    "idle",
		Service: Service{Argv: []string{"/usr/bin/sleep", "infinity"}},
		Idle:    true,
		Load: func(ctx context.Context, e *Env, addr string) (LoadResult, error) {
			start := time.Now()
			<-ctx.Done()
			return LoadResult{Elapsed: time.Since(start)}, nil
		},
	}
}

// loadStarted is how many served requests mean the load is flowing.
const loadStarted = 100

// Runtime starts a service in a scope.
type Runtime struct {
	Name string
	// Variant, when set, says how this row differs from the way the
	// runtime is deployed: a labelled extra row, not a headline one.
	Variant string
	docker  *DockerOptions // a Docker row's, for the plan's daemon
	// Check says why the runtime cannot run here (nil: it can).
	Check func(e *Env) error
	// Start runs the service inside the cgroup dir (the scope).
	Start func(ctx context.Context, e *Env, name, dir string, svc Service) (*Instance, error)
}

// UsesDocker reports whether rt runs through the plan's Docker daemons.
func (rt Runtime) UsesDocker() bool { return rt.docker != nil }

// Instance is a started service.
type Instance struct {
	// Stop stops it and cleans up.
	Stop func() error
	// Exited returns nil while the launched process runs, else how it
	// ended with what it printed.
	Exited func() error
	// Runtime describes what ran the service (hap.Workload.Runtime); ""
	// for a service started directly.
	Runtime string
	// Parts are cgroups inside the scope that hold one part of it each,
	// by name: "container" (the service), "runtime" (the runtime's own
	// processes), and for gVisor "sentry", "stubs" and "gofer" (inside
	// the container's). Each is scored over the same window as the scope.
	Parts map[string]string
}

// lr is a load's outcome.
type lr struct {
	r   LoadResult
	err error
}

// Cell is the result of one workload under one runtime.
type Cell struct {
	Workload, Runtime string
	Variant           string       // Runtime.Variant
	Run               int          // 0-based index of the run (Plan.Runs)
	Profile           *hap.Profile // nil when the cell failed or was skipped
	// Parts are the profiles of the runtime's parts of the scope
	// (Instance.Parts), over the same window; nil for runtimes without.
	Parts   map[string]*hap.Profile
	Load    LoadResult
	Skipped string // why the runtime could not run here
	Err     error  // why the cell failed
}

// Plan is a set of cells to run with one tracer.
type Plan struct {
	Workloads []Workload
	Runtimes  []Runtime
	// Runs is how many times each cell is measured (0 means 1). Runs are
	// interleaved: every cell once, then every cell again, so that drift
	// over the session spreads over all cells; but the Docker rows come
	// after all runs of the others (see Run).
	Runs int
}

// Scorer measures a cgroup over a window; *hap.Scorer is one (attached
// once, it scores cell after cell).
type Scorer interface {
	Score(ctx context.Context, cgroup string) (*hap.Profile, error)
}

// preparer is a Scorer with per-service set-up, run once the service
// answers and before the load starts.
type preparer interface {
	Prepare(ctx context.Context, cgroup string) error
}

// registerDocker records the OCI runtimes the plan's Docker rows use, for
// the plan's Docker daemon.
func (p Plan) registerDocker(e *Env) {
	e.dockerRuntimes = map[string]DockerOptions{}
	for _, rt := range p.Runtimes {
		if rt.docker != nil && rt.docker.Runtime == "runsc" {
			e.dockerRuntimes[runscRuntime(*rt.docker)] = *rt.docker
		}
	}
}

// begin prepares e for the plan's cells; end stops the plan's Docker
// daemon, if a cell started it, and undoes what the cells set up.
func (p Plan) begin(e *Env) (end func(), err error) {
	if err := os.MkdirAll(e.Cgroup, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", e.Cgroup, err)
	}
	p.registerDocker(e)
	return func() {
		if err := e.stopDocker(); err != nil {
			e.logf("matrix: stop Docker: %v", err)
		}
		for i := len(e.cleanups) - 1; i >= 0; i-- {
			e.cleanups[i]()
		}
		e.cleanups, e.roots = nil, nil
	}, nil
}

// phases splits the plan's runtimes: rows without Docker run first, all
// their runs, then the Docker rows: once dockerd has set up its NAT
// chains, every connection on this machine passes conntrack and NAT hooks,
// and a native row measured after it would be "native on a Docker host",
// not native.
func (p Plan) phases() (plain, docker []Runtime) {
	for _, rt := range p.Runtimes {
		if rt.docker != nil {
			docker = append(docker, rt)
		} else {
			plain = append(plain, rt)
		}
	}
	return plain, docker
}

// Run measures every workload under every runtime, one cell after another,
// with s (a tracer attached once). It returns every cell, failed and
// skipped ones included; err is only for errors that stop the whole run.
func (p Plan) Run(ctx context.Context, e *Env, s Scorer) ([]Cell, error) {
	end, err := p.begin(e)
	if err != nil {
		return nil, err
	}
	defer end()
	runs := max(p.Runs, 1)
	var cells []Cell
	plain, docker := p.phases()
	for _, phase := range [][]Runtime{plain, docker} {
		for run := range runs {
			for _, w := range p.Workloads {
				for _, rt := range phase {
					c := Cell{Workload: w.Name, Runtime: rt.Name, Variant: rt.Variant, Run: run}
					if err := rt.Check(e); err != nil {
						c.Skipped = err.Error()
						if run == 0 {
							e.logf("matrix: %s/%s skipped: %s", w.Name, rt.Name, c.Skipped)
						}
						cells = append(cells, c)
						continue
					}
					tag := fmt.Sprintf("%s/%s", w.Name, rt.Name)
					if runs > 1 {
						tag += fmt.Sprintf(" run %d/%d", run+1, runs)
					}
					e.logf("matrix: %s …", tag)
					t0 := time.Now()
					c.Profile, c.Parts, c.Load, c.Err = p.runCell(ctx, e, s, w, rt)
					took := time.Since(t0).Round(time.Second)
					if ctx.Err() != nil {
						return cells, ctx.Err()
					}
					if c.Err != nil {
						e.logf("matrix: %s FAILED: %v", tag, c.Err)
						c.Profile = nil
					} else {
						e.logf("matrix: %s: %s; load %d requests, %.0f req/s; took %s", tag, c.Profile.Summary(), c.Load.Requests, c.Load.RPS(), took)
					}
					cells = append(cells, c)
				}
			}
		}
	}
	// Back into the plan's order: run, workload, runtime.
	wi, ri := map[string]int{}, map[string]int{}
	for i, w := range p.Workloads {
		wi[w.Name] = i
	}
	for i, rt := range p.Runtimes {
		ri[rt.Name] = i
	}
	sort.SliceStable(cells, func(a, b int) bool {
		x, y := cells[a], cells[b]
		if x.Run != y.Run {
			return x.Run < y.Run
		}
		if wi[x.Workload] != wi[y.Workload] {
			return wi[x.Workload] < wi[y.Workload]
		}
		return ri[x.Runtime] < ri[y.Runtime]
	})
	return cells, nil
}

func (p Plan) runCell(ctx context.Context, e *Env, s Scorer, w Workload, rt Runtime) (*hap.Profile, map[string]*hap.Profile, LoadResult, error) {
	var load LoadResult
	dir := filepath.Join(e.Cgroup, w.Name+"-"+rt.Name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, nil, load, err
	}
	defer RemoveCgroup(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr := e.addr(w.Service.Port)
	// Where a cell's time goes (under emulation a Docker cell takes minutes).
	t0 := time.Now()
	var phases []string
	phase := func(name string) {
		phases = append(phases, fmt.Sprintf("%s %s", name, time.Since(t0).Round(100*time.Millisecond)))
		t0 = time.Now()
	}
	defer func() { e.logf("matrix: %s/%s phases: %s", w.Name, rt.Name, strings.Join(phases, ", ")) }()
	inst, err := rt.Start(ctx, e, w.Name+"-"+rt.Name, dir, w.Service)
	phase("start")
	if err != nil {
		return nil, nil, load, fmt.Errorf("start %s under %s: %w", w.Name, rt.Name, err)
	}
	defer func() {
		if err := inst.Stop(); err != nil {
			e.logf("matrix: stop %s under %s: %v", w.Name, rt.Name, err)
		}
		phase("stop")
	}()
	err = awaitReady(ctx, w, rt, inst, addr)
	phase("ready")
	if err != nil {
		return nil, nil, load, err
	}
	// The runtime's and the service's start-up must be over (quiet.go).
	unquiet, err := e.awaitQuiet(ctx, dir, w.Name+"/"+rt.Name)
	phase("quiet")
	if err != nil {
		return nil, nil, load, err
	}

	// A scorer that sets up per service (ftrace's pid list) does so before
	// the load starts, as an attached tracer is in place before it.
	if pr, ok := s.(preparer); ok {
		if err := pr.Prepare(ctx, dir); err != nil {
			return nil, nil, load, err
		}
	}

	// The load runs through warm-up and window; the score covers the window.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan lr, 1)
	go func() {
		r, err := w.Load(loadCtx, e, addr)
		loadDone <- lr{r, err}
	}()
	if w.Served != nil {
		if err := waitFlowing(ctx, w, addr, loadDone); err != nil {
			stopLoad()
			<-loadDone
			return nil, nil, load, err
		}
	}
	// The load stops when the scorer's window closes (hap.ScoreTrace), or
	// when Score returns for scorers without that hook: never inside the
	// window, where its teardown (connections closed, the server's final
	// statistics query) would be measured as the workload's.
	// The runtime's parts are scored over the same window, each on its own.
	// The load stops when the last of the windows closes: a part whose
	// window outlived the load's end would count the clients' teardown
	// (and the final statistics query) as the service's.
	type partResult struct {
		name string
		prof *hap.Profile
		err  error
	}
	scoreParts := inst.Parts
	if _, ok := s.(preparer); ok {
		scoreParts = nil
	}
	var open atomic.Int32
	open.Store(int32(1 + len(scoreParts)))
	// The windows open together: each call waits after its warm-up until
	// every call got there or returned (a part's burst — containerd
	// removing a file — fell in its own window and not in the cell's when
	// the windows opened apart).
	var ready sync.WaitGroup
	ready.Add(1 + len(scoreParts))
	arrival := func() (arrive, wait func()) {
		arrive = sync.OnceFunc(ready.Done)
		return arrive, func() { arrive(); ready.Wait() }
	}
	// windowEnd is one window's end, counted once even when called again.
	windowEnd := func() func() {
		var once sync.Once
		return func() {
			once.Do(func() {
				if open.Add(-1) == 0 {
					stopLoad()
				}
			})
		}
	}
	partc := make(chan partResult, len(scoreParts))
	for name, pdir := range scoreParts {
		end := windowEnd()
		arrive, wait := arrival()
		go func() {
			pp, err := s.Score(hap.WithScoreTrace(ctx, &hap.ScoreTrace{BeforeWindow: wait, WindowEnd: end}), pdir)
			arrive() // a failed score may not have got to its window
			end()    // nor ended it
			partc <- partResult{name, pp, err}
		}()
	}
	phase("load flowing")
	arrive, wait := arrival()
	prof, serr := s.Score(hap.WithScoreTrace(ctx, &hap.ScoreTrace{BeforeWindow: wait, WindowEnd: windowEnd()}), dir)
	arrive()
	var parts map[string]*hap.Profile
	defer phase("scored")
	for range scoreParts {
		r := <-partc
		if r.err != nil && serr == nil {
			serr = fmt.Errorf("score the %s part (%s): %w", r.name, scoreParts[r.name], r.err)
		}
		if r.prof != nil {
			if parts == nil {
				parts = map[string]*hap.Profile{}
			}
			r.prof.Label = w.Name + "/" + rt.Name + "/" + r.name
			parts[r.name] = r.prof
		}
	}
	// For scorers without the window hook, and after a failed score.
	stopLoad()
	res := <-loadDone
	load = res.r
	switch {
	case serr != nil:
		return nil, nil, load, serr
	case res.err != nil:
		return nil, nil, load, fmt.Errorf("load: %w", res.err)
	case w.Idle:
	case load.Requests == 0:
		return nil, nil, load, errors.New("load completed no request: the workload did not run, so its HAP is not scored")
	case load.Errors > 0:
		return nil, nil, load, fmt.Errorf("load had %d errors in %d requests: not scored", load.Errors, load.Requests)
	}
	prof.Label = w.Name + "/" + rt.Name
	prof.Workload = &hap.Workload{Command: w.Service.Argv, ExitCode: -1, Error: "service; stopped after the window", Runtime: inst.Runtime}
	if unquiet != "" {
		prof.Workload.Runtime = strings.TrimPrefix(prof.Workload.Runtime+"; "+unquiet, "; ")
	}
	for _, pp := range parts {
		pp.Workload = prof.Workload
	}
	return prof, parts, load, nil
}

// awaitReady waits until the service inst runs answers at addr.
func awaitReady(ctx context.Context, w Workload, rt Runtime, inst *Instance, addr string) error {
	// Under emulation with every kernel function traced, an interpreter
	// (python, node) inside a sandbox takes a long time to start.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	err := poll(ctx, func() error {
		if err := inst.Exited(); err != nil {
			return stopPoll{err}
		}
		if w.Idle {
			return nil // nothing to ask: it runs
		}
		return w.Service.Ready(ctx, addr)
	})
	if err != nil {
		return fmt.Errorf("%s under %s never answered at %s: %w", w.Name, rt.Name, addr, err)
	}
	return nil
}

// waitFlowing waits until the service has served loadStarted requests of
// the load (at most a minute), or the load ended early.
func waitFlowing(ctx context.Context, w Workload, addr string, loadDone <-chan lr) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	first, err := w.Served(ctx, addr)
	if err != nil {
		return fmt.Errorf("read served requests: %w", err)
	}
	for {
		n, err := w.Served(ctx, addr)
		if err != nil {
			return fmt.Errorf("read served requests: %w", err)
		}
		if n-first >= loadStarted {
			return nil
		}
		select {
		case res := <-loadDone:
			return fmt.Errorf("load ended before it got going: %v", res.err)
		case <-ctx.Done():
			return fmt.Errorf("load did not get going within a minute (%d requests served): %w", n-first, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopPoll is an error that ends poll at once.
type stopPoll struct{ err error }

func (s stopPoll) Error() string { return s.err.Error() }

// poll calls f until it succeeds, returns a stopPoll, or ctx ends.
func poll(ctx context.Context, f func() error) error {
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		if s, ok := last.(stopPoll); ok {
			return s.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RemoveCgroup kills what is left in cgroup dir and below (cgroup.kill,
// or SIGKILL to each pid where the kernel lacks it), removes them, and
// says so when dir is still there after ten seconds (cgroupv2.Remove).
func RemoveCgroup(dir string) error { return cgroupv2.Remove(dir) }

// tcpCheck sends req to addr and expects a reply starting with want.
func tcpCheck(ctx context.Context, addr, req, want string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(want)) {
		return fmt.Errorf("answered %q, want %q", buf, want)
	}
	return nil
}
