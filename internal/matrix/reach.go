package matrix

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/reach"
)

// FuzzPort is the TCP port the fuzzer serves the driver protocol on
// (sysfuzz programs bind loopback ports 20000–20003 only).
const FuzzPort = 20100

// FuzzUser is the user the fuzzer drops to before its first program:
// nobody, inside every sandbox and natively.
const FuzzUser = "65534:65534"

// Fuzzer is the reachable-HAP workload: the sysfuzz executor, serving the
// driver protocol on FuzzPort to the driver outside the sandbox, its
// programs run as FuzzUser in a work dir of its own. cmd is the command
// that takes `sysfuzz serve`'s flags: {"/usr/local/bin/sysfuzz", "serve"}.
// It must be a static binary (CGO_ENABLED=0): its image holds it alone.
func Fuzzer(cmd ...string) Workload {
	argv := append(cmd[:len(cmd):len(cmd)], "-listen", ":"+strconv.Itoa(FuzzPort), "-dir", "/tmp/sysfuzz", "-user", FuzzUser)
	return Workload{
		Name: "sysfuzz",
		Service: Service{Argv: argv, Port: FuzzPort, Ready: func(ctx context.Context, addr string) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err
		}},
		Load: fuzzerLoad,
	}
}

// ReachRow is one runtime's reachable HAP: the fuzzer run in it unguided
// and guided, from one seed, for one budget.
type ReachRow struct {
	Runtime string
	Variant string // as Runtime.Variant: a labelled extra row
	// Describe is what ran the fuzzer (hap.Workload.Runtime).
	Describe         string
	Unguided, Guided *reach.Result
	Skipped          string // why the runtime cannot run here
	Err              error
}

// Reach runs the plan's one workload, a Fuzzer, under each runtime,
// twice: unguided, then guided (opt.Guided is ignored), each run in a
// sandbox of its own. The scope is the sandbox's container part (Docker,
// gVisor: the container's cgroup, the runtime's daemons left out) or the
// whole cell, added once the fuzzer answers: the function sets start from
// the fuzzer's first session, the same for every row. tr probes the
// catalogue the rows are compared over. opt.Before, if set, sees each
// program with a first comment line naming the row and the run ("# docker
// guided"). When ctx ends, it returns the rows finished by then with ctx's
// error.
func (p Plan) Reach(ctx context.Context, e *Env, tr *coverage.Tracer, opt reach.Options) ([]ReachRow, error) {
	return p.reach(ctx, e, tr, opt, false, true)
}

// ReachUnguided is Reach with the unguided run only (ReachRow.Guided nil):
// the seed's program stream, the same under every runtime and tracer.
func (p Plan) ReachUnguided(ctx context.Context, e *Env, tr *coverage.Tracer, opt reach.Options) ([]ReachRow, error) {
	return p.reach(ctx, e, tr, opt, false)
}

func (p Plan) reach(ctx context.Context, e *Env, tr *coverage.Tracer, opt reach.Options, modes ...bool) ([]ReachRow, error) {
	if len(p.Workloads) != 1 || p.Workloads[0].Service.Port != FuzzPort {
		return nil, errors.New("a reach plan has one workload, the Fuzzer")
	}
	w := p.Workloads[0]
	end, err := p.begin(e)
	if err != nil {
		return nil, err
	}
	defer end()
	byName := map[string]ReachRow{}
	plain, docker := p.phases()
	for _, rt := range append(plain, docker...) {
		row := ReachRow{Runtime: rt.Name, Variant: rt.Variant}
		if err := rt.Check(e); err != nil {
			row.Skipped = err.Error()
			e.logf("matrix: reach %s skipped: %s", rt.Name, row.Skipped)
			byName[rt.Name] = row
			continue
		}
		for _, guided := range modes {
			o := opt
			o.Guided = guided
			if before := opt.Before; before != nil {
				head := fmt.Sprintf("# %s %s\n", rt.Name, map[bool]string{false: "unguided", true: "guided"}[guided])
				o.Before = func(i int, text string) error { return before(i, head+text) }
			}
			res, describe, err := p.reachCell(ctx, e, tr, w, rt, o)
			if ctx.Err() != nil {
				return finished(p.Runtimes, byName), ctx.Err()
			}
			row.Describe = describe
			if err != nil {
				row.Err = fmt.Errorf("guided %t: %w", guided, err)
				e.logf("matrix: reach %s FAILED: %v", rt.Name, row.Err)
				break
			}
			e.logf("matrix: reach %s guided %t: %d functions after %d programs (%d calls, %d failed)",
				rt.Name, guided, len(res.Snapshot.Hits), o.Programs, res.Calls, res.Errors)
			if guided {
				row.Guided = res
			} else {
				row.Unguided = res
			}
		}
		byName[rt.Name] = row
	}
	return finished(p.Runtimes, byName), nil
}

// finished returns the rows of byName in the order of runtimes.
func finished(runtimes []Runtime, byName map[string]ReachRow) []ReachRow {
	var rows []ReachRow
	for _, rt := range runtimes {
		if r, ok := byName[rt.Name]; ok {
			rows = append(rows, r)
		}
	}
	return rows
}

// reachCell starts the fuzzer under rt, scopes its sandbox and drives one
// reach run over a connection to it.
func (p Plan) reachCell(ctx context.Context, e *Env, tr *coverage.Tracer, w Workload, rt Runtime, opt reach.Options) (*reach.Result, string, error) {
	name := fmt.Sprintf("%s-%s-g%t", w.Name, rt.Name, opt.Guided)
	dir := filepath.Join(e.Cgroup, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return nil, "", err
	}
	defer RemoveCgroup(dir)
	inst, err := rt.Start(ctx, e, name, dir, w.Service)
	if err != nil {
		return nil, "", fmt.Errorf("start the fuzzer under %s: %w", rt.Name, err)
	}
	defer func() {
		if err := inst.Stop(); err != nil {
			e.logf("matrix: stop the fuzzer under %s: %v", rt.Name, err)
		}
	}()
	addr := e.addr(w.Service.Port)
	if err := awaitReady(ctx, w, rt, inst, addr); err != nil {
		return nil, inst.Runtime, err
	}
	scoped := dir
	if c := inst.Parts["container"]; c != "" {
		scoped = c
	}
	scope, err := tr.AddScope(scoped)
	if err != nil {
		return nil, inst.Runtime, err
	}
	defer tr.RemoveScope(scope)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, inst.Runtime, fmt.Errorf("connect to the fuzzer: %w", err)
	}
	defer conn.Close()
	t0 := time.Now()
	res, err := reach.Run(ctx, func() (*coverage.Snapshot, error) { return tr.Snapshot(scope) }, reach.Fuzzer{In: conn, Out: conn}, opt)
	if err != nil {
		if xerr := inst.Exited(); xerr != nil {
			err = fmt.Errorf("%w (the fuzzer exited: %v)", err, xerr)
		}
		return nil, inst.Runtime, err
	}
	e.logf("matrix: reach %s: %d programs in %s", name, opt.Programs, time.Since(t0).Round(time.Second))
	return res, inst.Runtime, nil
}

// fuzzerLoad drives the fuzzer with the smallest program, getpid(), until
// ctx ends: what the fuzzer does for any program besides its calls (read
// the program, run it on a thread of its own, empty the work dir, answer).
func fuzzerLoad(ctx context.Context, e *Env, addr string) (r LoadResult, err error) {
	start := time.Now()
	defer func() { r.Elapsed = time.Since(start) }()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return r, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	rd := bufio.NewReader(c)
	for ctx.Err() == nil {
		if _, err := io.WriteString(c, "getpid()\n\n"); err != nil {
			break
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if f := strings.Fields(line); len(f) == 4 && f[0] == "done" && f[2] == "1" && f[3] == "0" {
			r.Requests++
		} else {
			r.Errors++
		}
	}
	return r, nil
}
