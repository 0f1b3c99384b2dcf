package coverage

import (
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/bpf"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/internal/nameset"
)

// pruneWork is the equivalence workload: the ground-truth mix in rounds
// with pauses, so that pruning happens while it runs.
func pruneWork() {
	f, err := os.Open("/dev/zero")
	if err != nil {
		panic(err)
	}
	b := make([]byte, 4096)
	d, _ := os.MkdirTemp("", "hapscope-prune")
	for r := 0; r < 10; r++ {
		for i := 0; i < 200; i++ {
			f.Read(b)
			syscall.Getpid()
		}
		for i := 0; i < 20; i++ {
			p := filepath.Join(d, strconv.Itoa(i))
			os.Mkdir(p, 0o755)
			os.Remove(p)
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.Close()
	os.Remove(d)
}

// rentFree makes pruning remove every seen probe at once (pruneRent 0),
// for tests of the mechanism rather than of its economics; call the
// returned function to restore the rule.
func rentFree() func() {
	old := pruneRent
	pruneRent = 0
	return func() { pruneRent = old }
}

func nameSet(s *Snapshot) map[string]bool {
	m := map[string]bool{}
	for _, n := range s.Names() {
		m[n] = true
	}
	return m
}

// pruneBackend is the backend the pruning tests use on the lab kernel, and
// its catalogue: all of it for kprobe.multi, a subset for fentry.
func pruneBackend(t testing.TB, cat *Catalogue) (Backend, *Catalogue) {
	if labtest.Kernel() == "6.12" {
		return KprobeMulti, cat
	}
	return Fentry, labSubset(cat, Fentry, 150)
}

// TestLabPruneEquivalence (issue 7): the same deterministic workload traced
// without pruning twice (its own run-to-run variation) and with pruning
// once; the pruned set must hold every function both unpruned runs saw, up
// to the variation between those two runs, and pruning must have removed
// probes while the workload ran.
func TestLabPruneEquivalence(t *testing.T) {
	labtest.Require(t)
	defer rentFree()()
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	b, sub := pruneBackend(t, cat)
	base := cgroupBase(t)
	mkCgroup(t, base)
	run := func(counts bool, names ...string) []*Snapshot {
		start := time.Now()
		tr, err := Open(context.Background(), sub, Options{Backend: b, Counts: counts})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s counts=%v: attached %d in %v", b, counts, tr.attached, time.Since(start))
		defer func() {
			start := time.Now()
			if err := tr.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			t.Logf("closed in %v", time.Since(start))
		}()
		var out []*Snapshot
		for _, n := range names {
			dir := base + "/" + n
			mkCgroup(t, dir)
			s, err := tr.AddScope(dir)
			if err != nil {
				t.Fatal(err)
			}
			runHelper(t, dir, "prune")
			snap, err := tr.Snapshot(s)
			if err != nil {
				t.Fatal(err)
			}
			var calls uint64
			for _, h := range snap.Hits {
				calls += h.Count
			}
			var linkMiss uint64
			tr.stMu.Lock()
			for _, m := range tr.multi {
				linkMiss += linkMissed(m.l)
			}
			tr.stMu.Unlock()
			t.Logf("%s (%s): %d functions, %d calls counted, %d probes pruned, misses %d (fprobe recursion of live links %d), interrupt events skipped %d, dropped %d",
				n, snap.Mode, len(snap.Hits), calls, snap.Pruned, snap.Misses, linkMiss, snap.Skipped, snap.Dropped)
			if err := tr.RemoveScope(s); err != nil {
				t.Fatal(err)
			}
			out = append(out, snap)
		}
		return out
	}
	u := run(true, "unpruned1", "unpruned2")
	p := run(false, "pruned")[0]
	u1, u2, ps := nameSet(u[0]), nameSet(u[1]), nameSet(p)
	if u[0].Mode != Counts || p.Mode != Pruned {
		t.Errorf("modes recorded: %s, %s; want counts, pruned", u[0].Mode, p.Mode)
	}
	if p.Pruned == 0 {
		t.Errorf("no probe was pruned while the workload ran: the test does not exercise pruning")
	}
	var variation []string
	variation = append(nameset.Minus(u1, u2), nameset.Minus(u2, u1)...)
	stable := map[string]bool{}
	for n := range u1 {
		if u2[n] {
			stable[n] = true
		}
	}
	any := map[string]bool{}
	for n := range u1 {
		any[n] = true
	}
	for n := range u2 {
		any[n] = true
	}
	lost := nameset.Minus(stable, ps)
	extra := nameset.Minus(ps, any)
	t.Logf("equivalence (%s, %s): unpruned run 1: %d, run 2: %d (symmetric difference %d: %v); pruned: %d; pruned vs run 1: symmetric difference %d; in both unpruned runs but not pruned: %d %v; pruned only: %d %v",
		labtest.Kernel(), b, len(u1), len(u2), len(variation), variation, len(ps),
		len(nameset.Minus(u1, ps))+len(nameset.Minus(ps, u1)), len(lost), lost, len(extra), extra)
	if len(lost) > len(variation) {
		t.Errorf("pruning lost %d functions both unpruned runs saw, more than the %d the unpruned runs differ by: %v", len(lost), len(variation), lost)
	}
	for _, n := range []string{"vfs_read", "vfs_mkdir"} {
		if u1[n] && !ps[n] {
			t.Errorf("%s missing with pruning", n)
		}
	}
}

// TestLabPruneRescope: a scope added after pruning re-arms what it has not
// seen, and Reset re-arms too.
func TestLabPruneRescope(t *testing.T) {
	labtest.Require(t)
	defer rentFree()()
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	b, sub := pruneBackend(t, cat)
	tr, err := Open(context.Background(), sub, Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	base := cgroupBase(t)
	a, c := base+"/a", base+"/b"
	for _, d := range []string{base, a, c} {
		mkCgroup(t, d)
	}
	sA, err := tr.AddScope(a)
	if err != nil {
		t.Fatal(err)
	}
	runHelper(t, a, "read")
	waitPruned(t, tr, sA, "vfs_read")
	sB, err := tr.AddScope(c)
	if err != nil {
		t.Fatal(err)
	}
	runHelper(t, c, "read")
	snB, _ := tr.Snapshot(sB)
	if !has(snB, "vfs_read") {
		t.Errorf("scope added after vfs_read was pruned did not see it: not re-armed")
	}
	waitPruned(t, tr, sB, "vfs_read")
	if err := tr.Reset(sA); err != nil {
		t.Fatal(err)
	}
	runHelper(t, a, "read")
	if snA, _ := tr.Snapshot(sA); !has(snA, "vfs_read") {
		t.Errorf("Reset did not re-arm vfs_read")
	}
}

// waitPruned waits until the probe of fn is removed.
func waitPruned(t *testing.T, tr *Tracer, s *Scope, fn string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		tr.armMu.Lock()
		armed := false
		for i, f := range tr.cat.Functions {
			if f.Name == fn && tr.armed[i] {
				armed = true
			}
		}
		tr.armMu.Unlock()
		if !armed {
			snap, err := tr.Snapshot(s)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s pruned; %d probes pruned in all", fn, snap.Pruned)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s still probed after 60 s", fn)
}

// redisLab runs redis-server from the host in cgroup dir and measures SET
// throughput with redis-benchmark from outside it.
type redisLab struct {
	port   int
	cmd    *exec.Cmd
	client string // cgroup for redis-benchmark; "" leaves it where the test runs
}

func startRedis(t testing.TB, dir string, port int) *redisLab {
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cmd := exec.Command("chroot", "/host", "redis-server", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (host's, via chroot /host): %v", err)
	}
	r := &redisLab{port: port, cmd: cmd}
	for i := 0; i < 100; i++ {
		if out, err := exec.Command("chroot", "/host", "redis-cli", "-p", strconv.Itoa(port), "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.stop()
	t.Fatal("redis-server did not answer PING in 20 s")
	return nil
}

func (r *redisLab) stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// set runs redis-benchmark -t set -n n and returns requests per second.
func (r *redisLab) set(t testing.TB, n int) float64 {
	c := exec.Command("chroot", "/host", "redis-benchmark", "-p", strconv.Itoa(r.port), "-t", "set", "-n", strconv.Itoa(n), "--csv")
	if r.client != "" {
		fd, err := syscall.Open(r.client, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	out, err := c.Output()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 2 {
		t.Fatalf("redis-benchmark output %q: %v", out, err)
	}
	v, err := strconv.ParseFloat(recs[1][1], 64)
	if err != nil {
		t.Fatalf("redis-benchmark rps %q: %v", recs[1][1], err)
	}
	return v
}

// window runs chunks of n SETs for d and returns each chunk's throughput
// with its end time, and the throughput of the whole window. With a tracer,
// each point also says how many probes are removed and how many probe hits
// (Snapshot.Events: program runs of any task and context) each request
// cost: what a settled window still pays for.
func (r *redisLab) window(t testing.TB, d time.Duration, n int, tr *Tracer, s *Scope) (curve []string, perChunk []float64, whole float64, hits []float64) {
	start := time.Now()
	total := 0
	probe := func() (pruned int, events uint64) {
		snap, err := tr.Snapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Pruned, snap.Events
	}
	var ev0 uint64
	if tr != nil {
		_, ev0 = probe()
	}
	for time.Since(start) < d {
		rps := r.set(t, n)
		total += n
		perChunk = append(perChunk, rps)
		note := ""
		if tr != nil {
			pr, ev := probe()
			h := float64(ev-ev0) / float64(n)
			hits = append(hits, h)
			note = fmt.Sprintf("(pruned %d, %.0f hits/req)", pr, h)
			ev0 = ev
		}
		curve = append(curve, fmt.Sprintf("%.1fs:%.0f%s", time.Since(start).Seconds(), rps, note))
	}
	return curve, perChunk, float64(total) / time.Since(start).Seconds(), hits
}

// floor runs one more chunk of n SETs and says what the probes still armed
// cost per request: the scope's own calls of functions it has run (kept by
// the pruning rent) and the estimated calls of other tasks and interrupt
// context (sampled), with the functions that cost most.
func (r *redisLab) floor(t testing.TB, tr *Tracer, s *Scope, n int) string {
	read := func() (own, other []uint64) {
		own = make([]uint64, len(tr.cat.Functions))
		other = make([]uint64, len(own))
		if err := tr.objs.Hits(s.slot, own); err != nil {
			t.Fatal(err)
		}
		if err := tr.objs.Sampled(other); err != nil {
			t.Fatal(err)
		}
		return own, other
	}
	own0, other0 := read()
	r.set(t, n)
	own1, other1 := read()
	type cost struct {
		name      string
		own, rest float64
	}
	var all []cost
	var sumOwn, sumRest float64
	tr.armMu.Lock()
	for i, a := range tr.armed {
		if !a {
			continue
		}
		c := cost{tr.cat.Functions[i].Name, float64(own1[i]-own0[i]) / float64(n), float64((other1[i]-other0[i])*bpf.SampleGap) / float64(n)}
		sumOwn += c.own
		sumRest += c.rest
		if c.own+c.rest > 0 {
			all = append(all, c)
		}
	}
	tr.armMu.Unlock()
	slices.SortFunc(all, func(a, b cost) int { return cmp.Compare(b.own+b.rest, a.own+a.rest) })
	var top []string
	for _, c := range all[:min(12, len(all))] {
		top = append(top, fmt.Sprintf("%s %.1f+%.1f", c.name, c.own, c.rest))
	}
	return fmt.Sprintf("armed probes per request: %.0f calls in the scope (seen, kept by the rent) + ~%.0f by others and interrupt context (sampled); most: %s",
		sumOwn, sumRest, strings.Join(top, ", "))
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// BenchmarkLabPruneRedis (issue 7): redis SET throughput untraced, fully
// attached (Counts) and pruned, in one boot: kprobe.multi over the whole
// catalogue on 6.12, fentry on a subset on 6.1. Reports ratios to
// untraced: full, pruned once settled (last third of the window), pruned
// over the whole window, and when the pruned curve first reached 0.8×.
func BenchmarkLabPruneRedis(b *testing.B) {
	labtest.Require(b)
	cat, err := LoadCatalogue()
	if err != nil {
		b.Fatal(err)
	}
	be, sub := pruneBackend(b, cat)
	if be == Fentry {
		// One link per function: the functions of a socket server's path
		// and as many others, so attach and detach fit the lab's time.
		i := 0
		sub = cat.Subset(func(f Function) bool {
			i++
			if f.noFentry != "" {
				return false
			}
			for _, p := range []string{"tcp_", "sock_", "sk_", "skb_", "ep_", "__sys_", "ksys_", "vfs_", "ip_", "__ip_", "inet_", "__tcp_"} {
				if strings.HasPrefix(f.Name, p) {
					return true
				}
			}
			return i%200 == 0
		})
	}
	const n, chunk = 3000, 3000
	window := 40 * time.Second
	base := cgroupBase(b)
	mkCgroup(b, base)
	r := startRedis(b, base, 6390)
	defer r.stop()
	// The load client gets a cgroup of its own, so that counts mode can
	// say whose calls the probes pay for.
	r.client = base + "-client"
	mkCgroup(b, r.client)
	for i := 0; i < b.N; i++ {
		r.set(b, n) // warm
		// Untraced the same way as traced: chunks for a while; the chunk
		// rates (redis-benchmark's own) compare with chunk rates, and the
		// whole-window rate (requests over wall time, redis-benchmark's
		// start-up between chunks included) with whole-window rates.
		_, uper, uwhole, _ := r.window(b, 15*time.Second, chunk, nil, nil)

		// measure opens a tracer, runs the load for warm (if any) and
		// resets the scope, as hap.Score does, then for the window d.
		measure := func(opts Options, warm, d time.Duration) (per []float64, whole float64, hits []float64) {
			opts.Backend = be
			what := fmt.Sprintf("%s counts=%v interrupts=%v", be, opts.Counts, opts.Interrupts)
			start := time.Now()
			tr, err := Open(context.Background(), sub, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: %d functions attached in %v", what, tr.attached, time.Since(start))
			t0 := time.Now()
			tr.armMu.Lock()
			tr.debugf = func(format string, args ...any) {
				b.Logf("%.1fs: "+format, append([]any{time.Since(t0).Seconds()}, args...)...)
			}
			tr.armMu.Unlock()
			s, err := tr.AddScope(base)
			if err != nil {
				b.Fatal(err)
			}
			if warm > 0 {
				curve, _, _, _ := r.window(b, warm, chunk, tr, s)
				b.Logf("%s: warm-up %v: %v", what, warm, curve)
				t1 := time.Now()
				if err := tr.Reset(s); err != nil {
					b.Fatal(err)
				}
				b.Logf("%s: reset (pruned probes re-armed) in %v", what, time.Since(t1))
			}
			var cs *Scope
			if opts.Counts {
				if cs, err = tr.AddScope(r.client); err != nil {
					b.Fatal(err)
				}
			}
			curve, per, whole, hits := r.window(b, d, chunk, tr, s)
			snap, err := tr.Snapshot(s)
			if err != nil {
				b.Fatal(err)
			}
			inScope := ""
			if opts.Counts {
				// Calls counted in the scope per request, against all
				// probe hits per request in the curve: the rest come
				// from outside the scope (the load client, interrupts).
				sum := func(s *Snapshot) float64 {
					var calls uint64
					for _, h := range s.Hits {
						calls += h.Count
					}
					return float64(calls) / float64(len(per)*chunk)
				}
				csnap, err := tr.Snapshot(cs)
				if err != nil {
					b.Fatal(err)
				}
				inScope = fmt.Sprintf(", %.0f calls/req in the scope, %.0f in the load client's (task context both; the rest of the runs are other tasks and interrupt context)", sum(snap), sum(csnap))
			}
			b.Logf("%s: %d functions seen, %d pruned, misses %d%s; curve %v", what, len(snap.Hits), snap.Pruned, snap.Misses, inScope, curve)
			if !opts.Counts {
				b.Logf("%s: %s", what, r.floor(b, tr, s, chunk))
			}
			start = time.Now()
			tr.Close()
			b.Logf("closed in %v", time.Since(start))
			return per, whole, hits
		}
		fullPer, _, _ := measure(Options{Counts: true}, 0, 15*time.Second)
		var ip []float64
		if be == KprobeMulti {
			// Where the settled cost comes from: with interrupt context
			// counted, the loopback receive path (softirq) the server
			// drives becomes prunable too.
			ip, _, _ = measure(Options{Interrupts: true}, 0, window)
		}
		per, whole, hits := measure(Options{}, 0, window)
		// As hapscope measures: a warm-up (start-up is not steady state,
		// and pruning settles meanwhile), Reset (every pruned probe is
		// armed again), then the window.
		const warm, mwin = 30 * time.Second, 20 * time.Second
		mper, mwhole, _ := measure(Options{}, warm, mwin)
		// Untraced again: the lab's speed drifts over minutes; the ratios
		// are to the mean of before and after.
		_, uper2, uwhole2, _ := r.window(b, 15*time.Second, chunk, nil, nil)
		b.Logf("untraced before %.0f req/s (whole window %.0f), after %.0f (%.0f)", mean(uper), uwhole, mean(uper2), uwhole2)
		untraced := mean(append(uper, uper2...))
		uwhole = (uwhole + uwhole2) / 2

		full := mean(fullPer)
		tail := func(v []float64) []float64 { return v[len(v)*2/3:] }
		if ip != nil {
			b.Logf("pruned with interrupt context counted: settled %.0f req/s (%.2f×)", mean(tail(ip)), mean(tail(ip))/untraced)
			b.ReportMetric(mean(tail(ip))/untraced, "pruned-interrupts-settled/untraced")
		}
		settled := mean(tail(per))
		// Settled from the first chunk whose probe hits per request are
		// within 20 % of the last third's: the curve's cost has flattened.
		settleAt := -1.0
		if len(hits) > 0 {
			h := mean(tail(hits))
			for k, v := range hits {
				if v <= 1.2*h {
					settleAt = float64(k+1) * window.Seconds() / float64(len(hits))
					break
				}
			}
		}
		b.Logf("redis SET pruned, after a %v warm-up and Reset: window of %v %.0f req/s whole (%.2f×), chunks %.2f× untraced", warm, mwin, mwhole, mwhole/uwhole, mean(mper)/untraced)
		b.Logf("redis SET (%s, %s): untraced %.0f req/s (whole window %.0f), full %.0f (%.2f×), pruned settled %.0f (%.2f×), pruned whole %.0fs window %.0f (%.2f× untraced whole window); probe hits per request settled after ~%.0fs",
			labtest.Kernel(), be, untraced, uwhole, full, full/untraced, settled, settled/untraced, window.Seconds(), whole, whole/uwhole, settleAt)
		b.ReportMetric(mwhole/uwhole, "pruned-after-warmup-window/untraced")
		b.ReportMetric(untraced, "untraced-req/s")
		b.ReportMetric(full/untraced, "full/untraced")
		b.ReportMetric(settled/untraced, "pruned-settled/untraced")
		b.ReportMetric(whole/uwhole, "pruned-window/untraced")
		b.ReportMetric(settleAt, "settled-after-s")
	}
}

// TestSoakPrune is the crash-safety soak of issue 7 (`make soak`, not part
// of make test): redis SET load for HAPSCOPE_SOAK (default 10m) with the
// pruning tracer; every minute the scope is reset, which re-arms every
// pruned probe, so links are replaced and closed under load the whole
// time. The lab fails the run with the console text if the guest oopses.
func TestSoakPrune(t *testing.T) {
	labtest.Require(t)
	d := 10 * time.Minute
	if v := os.Getenv("HAPSCOPE_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("HAPSCOPE_SOAK=%q: %v", v, err)
		}
	}
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	b, sub := pruneBackend(t, cat)
	base := cgroupBase(t)
	mkCgroup(t, base)
	r := startRedis(t, base, 6391)
	defer r.stop()
	tr, err := Open(context.Background(), sub, Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tr.AddScope(base)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lastReset := start
	resets := 0
	for time.Since(start) < d {
		rps := r.set(t, 3000)
		snap, err := tr.Snapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%4.0fs: %.0f req/s, %d functions, %d pruned, misses %d", time.Since(start).Seconds(), rps, len(snap.Hits), snap.Pruned, snap.Misses)
		if time.Since(lastReset) > time.Minute {
			if err := tr.Reset(s); err != nil {
				t.Fatal(err)
			}
			lastReset = time.Now()
			resets++
		}
	}
	snap, err := tr.Snapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Hits) == 0 || resets == 0 {
		t.Errorf("soak saw %d functions after %d resets", len(snap.Hits), resets)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}
