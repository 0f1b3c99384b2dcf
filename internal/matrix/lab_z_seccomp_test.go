package matrix

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/internal/reach"
	"github.com/hapscope/hapscope/internal/seccomp"
	"github.com/hapscope/hapscope/internal/sysfuzz"
	"github.com/hapscope/hapscope/symbolize"
)

// This file's name sorts after lab_test.go so that its test runs after
// TestLabMatrixSmoke in the same guest. Docker's firewall tables outlived
// its daemons once, and a native row measured after them drove
// nf_conntrack and nf_nat (CI: 12 and 5 functions), which the smoke test
// rightly refused; stopDocker now deletes the tables Docker made (the
// smoke test checks), and the order is kept as a second guard.

// TestLabSeccompGenerated: the seccomp profile generated from redis' own
// system calls — measured under Docker from runc init's joining the
// container's cgroup through redis' steady state under load — runs redis
// under Docker and serves the load without errors; the same profile
// without bind stops redis at start-up, so the profile is what the
// container ran under. Then the fuzzer runs under Docker's default profile
// and under redis' (checkReachProfile).
func TestLabSeccompGenerated(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	sub := SyscallEntries(cat)
	t.Logf("attributing calls of %d system call entry points", len(sub.Functions))
	opt := hap.ScoreOptions{Warmup: hap.NoWarmup, Window: 20 * time.Second, Samples: 4, Catalogue: sub,
		Coverage: coverage.Options{Attribution: true}}
	opt.ModuleDebug = labtest.ModuleDebug()
	opt.Symbolize = symbolize.Options{CacheDir: labtest.IndexCache()}
	env := labEnv(t, "hapscope-seccomp")
	sc, err := hap.NewScorer(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	w := Redis("set")
	// Redis as Docker runs it, from runc init's joining the container's
	// cgroup: the calls runc makes after installing the filter are the
	// profile's to allow too.
	docker := Docker("docker", DockerOptions{})
	names, err := Syscalls(ctx, env, sc, w, docker)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fz := Fuzzer(strings.TrimPrefix(exe, labtest.HostRoot), fuzzArg)
	harness, err := Syscalls(ctx, env, sc, fz, docker)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := seccomp.Allow(names)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redis made %d system calls from exec to steady state: %s", len(g.Allowed), strings.Join(g.Allowed, " "))
	for _, n := range g.Notes {
		t.Logf("note: %s", n)
	}
	// What redis must have made: its exec, its listening socket, its event
	// loop, and a reply to each request.
	for _, want := range []string{"execve", "bind", "listen", "write"} {
		if !slices.Contains(g.Allowed, want) {
			t.Errorf("%s not among redis' system calls %v", want, g.Allowed)
		}
	}
	if !slices.Contains(g.Allowed, "epoll_wait") && !slices.Contains(g.Allowed, "epoll_pwait") {
		t.Errorf("no epoll_wait or epoll_pwait among redis' system calls %v", g.Allowed)
	}
	noBind, err := seccomp.Allow(slices.DeleteFunc(slices.Clone(g.Allowed), func(n string) bool { return n == "bind" }))
	if err != nil {
		t.Fatal(err)
	}

	// Redis under the generated profile, and under the profile less bind.
	sc2, err := hap.NewScorer(ctx, hap.ScoreOptions{Warmup: time.Second, Window: 3 * time.Second, Samples: 1, Catalogue: sub,
		Symbolize: opt.Symbolize, ModuleDebug: opt.ModuleDebug})
	if err != nil {
		t.Fatal(err)
	}
	var runtimes []Runtime
	for _, pr := range []struct {
		name string
		g    *seccomp.Generated
	}{{"generated", g}, {"generated-no-bind", noBind}} {
		b, err := pr.g.Profile.JSON()
		if err != nil {
			t.Fatal(err)
		}
		runtimes = append(runtimes, Docker("docker-"+pr.name, DockerOptions{SecurityOpt: []string{"seccomp=" + string(b)}}))
	}
	cells, err := Plan{Workloads: []Workload{w}, Runtimes: runtimes}.Run(ctx, env, sc2)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2 {
		t.Fatalf("%d cells, want 2", len(cells))
	}
	ok, denied := cells[0], cells[1]
	if ok.Err != nil || ok.Skipped != "" || ok.Profile == nil {
		t.Fatalf("redis under its generated profile (%s): skipped %q, error %v", ok.Runtime, ok.Skipped, ok.Err)
	}
	t.Logf("%s: %d requests, %d errors; %s", ok.Runtime, ok.Load.Requests, ok.Load.Errors, ok.Profile.Workload.Runtime)
	if ok.Load.Requests == 0 || ok.Load.Errors != 0 {
		t.Errorf("%s: load %+v, want requests and no errors", ok.Runtime, ok.Load)
	}
	if !strings.Contains(ok.Profile.Workload.Runtime, "seccomp custom profile") {
		t.Errorf("%s runs as %q: want seccomp custom profile", ok.Runtime, ok.Profile.Workload.Runtime)
	}
	if denied.Err == nil {
		t.Errorf("%s: redis served %d requests with bind denied: the profile was not applied", denied.Runtime, denied.Load.Requests)
	} else {
		t.Logf("%s failed as it must: %v", denied.Runtime, denied.Err)
	}
	if err := sc2.Close(); err != nil {
		t.Fatal(err)
	}
	checkReachProfile(t, ctx, env, sub, fz, names, harness)
}

// fuzzArg makes this test binary the sysfuzz executor, serving with the
// flags that follow (Fuzzer's), in a sandbox.
const fuzzArg = "hapscope-sysfuzz-serve"

func init() {
	if len(os.Args) > 1 && os.Args[1] == fuzzArg {
		if err := sysfuzz.ServeCommand(os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "sysfuzz:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// checkReachProfile runs the fuzzer under the default seccomp profile and
// under redis' generated one (plus the calls of the fuzzer's own harness,
// which no attacker inside redis would need) and checks what the profile
// cuts: no call the redis profile denies enters its system call entry
// point, and the default profile let the fuzzer reach some of them.
func checkReachProfile(t *testing.T, ctx context.Context, env *Env, sub *coverage.Catalogue, fz Workload, redis, harness []string) {
	g, extra, err := HarnessProfile(redis, harness)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the fuzzer's harness adds %d calls redis did not make: %s", len(extra), strings.Join(extra, " "))
	b, err := g.Profile.JSON()
	if err != nil {
		t.Fatal(err)
	}
	rows := []Runtime{Docker("docker", DockerOptions{}), Docker("docker-redis-profile", DockerOptions{SecurityOpt: []string{"seccomp=" + string(b)}})}
	tr, err := coverage.Open(ctx, sub, coverage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const budget = 30
	res, err := Plan{Workloads: []Workload{fz}, Runtimes: rows}.Reach(ctx, env, tr, reach.Options{Seed: 1, Programs: budget, Points: 3})
	if err != nil {
		t.Fatal(err)
	}
	sets := make([]map[string]bool, len(res))
	for i, r := range res {
		if r.Err != nil || r.Skipped != "" || r.Unguided == nil || r.Guided == nil {
			t.Fatalf("%s: skipped %q, error %v", r.Runtime, r.Skipped, r.Err)
		}
		sets[i] = map[string]bool{}
		for _, x := range []*reach.Result{r.Unguided, r.Guided} {
			if x.Refused != 0 || len(x.Curve) == 0 || x.Curve[len(x.Curve)-1].Programs != budget {
				t.Errorf("%s: %d programs refused, curve %v: want none refused and a curve to %d", r.Runtime, x.Refused, x.Curve, budget)
			}
			for _, h := range x.Snapshot.Hits {
				sets[i][h.Name] = true
			}
		}
		t.Logf("%s (%s): unguided %d functions, guided %d; %d calls, %d failed", r.Runtime, r.Describe,
			len(r.Unguided.Snapshot.Hits), len(r.Guided.Snapshot.Hits), r.Guided.Calls, r.Guided.Errors)
	}
	var cut, leaked []string
	for _, c := range sysfuzz.Syscalls {
		// A description's variant (fcntl$getfl) is its call's.
		name, _, _ := strings.Cut(c.Name, "$")
		fn := "__x64_sys_" + name
		if g.Profile.Verdict(name) != seccomp.Denied || slices.Contains(cut, name) || slices.Contains(leaked, name) {
			continue
		}
		if sets[1][fn] {
			leaked = append(leaked, name)
		}
		if sets[0][fn] {
			cut = append(cut, name)
		}
	}
	t.Logf("reached under the default profile, denied by redis': %v", cut)
	if len(leaked) > 0 {
		t.Errorf("%s: the fuzzer entered %v, which its profile denies", res[1].Runtime, leaked)
	}
	if len(cut) == 0 {
		t.Errorf("%s reached no call redis' profile denies: nothing to cut", res[0].Runtime)
	}
}
