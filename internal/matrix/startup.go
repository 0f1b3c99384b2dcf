package matrix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/internal/seccomp"
)

// FromStart measures w under rt from before its start: s's window opens
// (s must have no warm-up: hap.NoWarmup), w's service starts under rt in a
// cgroup of its own (<Env.Cgroup>/<name>-from-start), w's load runs once
// it answers, until the window closes. The profile is the service's
// start-up and steady state; with system call attribution it holds every
// call the service made: what a seccomp profile for it must allow
// (hapscope seccomp). Under Docker the daemons stay outside the measured
// cgroup (they are started and the image imported before the window
// opens) and the container is measured from runc init's joining its
// cgroup, so the OCI runtime's own calls after it installs the container's
// seccomp filter are among the calls. A load with errors or no request
// fails it.
func FromStart(ctx context.Context, e *Env, s Scorer, w Workload, rt Runtime) (*hap.Profile, LoadResult, error) {
	var load LoadResult
	end, err := Plan{Runtimes: []Runtime{rt}}.begin(e)
	if err != nil {
		return nil, load, err
	}
	defer end()
	if err := rt.Check(e); err != nil {
		return nil, load, err
	}
	if rt.docker != nil {
		apart := *rt.docker
		apart.daemonsApart = true
		rt = Docker(rt.Name, apart)
		if _, _, _, err := prepareDocker(ctx, e, w.Service); err != nil {
			return nil, load, err
		}
	}
	name := w.Name + "-" + rt.Name + "-from-start"
	dir := filepath.Join(e.Cgroup, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, load, err
	}
	defer RemoveCgroup(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	opened := make(chan struct{})
	type result struct {
		p   *hap.Profile
		err error
	}
	res := make(chan result, 1)
	go func() {
		p, err := s.Score(hap.WithScoreTrace(ctx, &hap.ScoreTrace{WindowStart: func() { close(opened) }, WindowEnd: stopLoad}), dir)
		res <- result{p, err}
	}()
	select {
	case <-opened:
	case r := <-res:
		return nil, load, fmt.Errorf("%s from its start: %w", w.Name, r.err)
	}
	// From here every return waits for the score, which the cancel in
	// the defers ends.
	inst, err := rt.Start(ctx, e, name, dir, w.Service)
	if err != nil {
		cancel()
		<-res
		return nil, load, err
	}
	defer func() {
		if err := inst.Stop(); err != nil {
			e.logf("matrix: stop %s: %v", w.Name, err)
		}
	}()
	addr := e.addr(w.Service.Port)
	if err := awaitReady(ctx, w, rt, inst, addr); err != nil {
		cancel()
		<-res
		return nil, load, err
	}
	load, lerr := w.Load(loadCtx, e, addr)
	r := <-res
	switch {
	case r.err != nil:
		return nil, load, fmt.Errorf("%s from its start: %w", w.Name, r.err)
	case r.p.Warmup != 0:
		return nil, load, fmt.Errorf("%s from its start: the scorer waited %s before its window (want hap.NoWarmup): start-up was not measured", w.Name, r.p.Warmup)
	case lerr != nil && !errors.Is(lerr, context.Canceled):
		return nil, load, fmt.Errorf("load: %w", lerr)
	case load.Requests == 0 || load.Errors > 0:
		return nil, load, fmt.Errorf("load: %d requests, %d errors in the window: the service did not run as it should", load.Requests, load.Errors)
	}
	r.p.Label = w.Name + "/" + rt.Name + " from start"
	r.p.Workload = &hap.Workload{Command: w.Service.Argv, ExitCode: -1, Error: "service; stopped after the window", Runtime: inst.Runtime}
	return r.p, load, nil
}

// Syscalls returns the system calls w made under rt from its start through
// its steady state (FromStart; s attributes calls, with no warm-up).
func Syscalls(ctx context.Context, e *Env, s Scorer, w Workload, rt Runtime) ([]string, error) {
	p, load, err := FromStart(ctx, e, s, w, rt)
	if err != nil {
		return nil, err
	}
	if p.OriginsDropped > 0 {
		return nil, fmt.Errorf("%s: the origins of %d calls were not recorded: its system call list may be short", w.Name, p.OriginsDropped)
	}
	names, err := seccomp.Syscalls(p)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no system call recorded: does the scorer attribute calls (coverage.Options.Attribution)?", w.Name)
	}
	e.logf("matrix: %s under %s made %d system calls from its start: %s; %d requests", w.Name, rt.Name, len(names), p.Summary(), load.Requests)
	return names, nil
}

// HarnessProfile is the seccomp profile that allows exactly the calls of
// workload (a workload's Syscalls) and the calls of the fuzzer's harness
// (the Fuzzer's Syscalls under its getpid() load): the profile a fuzzer
// standing in for code running inside the workload runs under. extra are
// the harness calls the workload did not make, which no attacker inside
// the workload would need.
func HarnessProfile(workload, harness []string) (g *seccomp.Generated, extra []string, err error) {
	for _, n := range harness {
		if !slices.Contains(workload, n) && !slices.Contains(extra, n) {
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	g, err = seccomp.Allow(append(slices.Clone(workload), extra...))
	return g, extra, err
}

// SyscallEntries is the part of cat that system calls enter: every call's
// __x64_sys_ entry point (and the x64_sys_call dispatcher, from 6.9). A
// tracer attributing calls over it lists every call a workload made
// (Syscalls) at a fraction of the whole catalogue's cost.
func SyscallEntries(cat *coverage.Catalogue) *coverage.Catalogue {
	return cat.Subset(func(f coverage.Function) bool {
		return f.Module == "" && (strings.HasPrefix(f.Name, "__x64_sys_") || f.Name == "x64_sys_call")
	})
}
