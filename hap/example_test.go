package hap_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/symbolize"
)

func lines(file string, ls ...int) []symbolize.Line {
	var out []symbolize.Line
	for _, l := range ls {
		out = append(out, symbolize.Line{File: file, Line: l})
	}
	return out
}

// New scores functions that were measured and symbolized elsewhere.
func ExampleNew() {
	p := hap.New(hap.Meta{Label: "cat", Backend: "fentry"}, []hap.Func{
		{Name: "vfs_read", File: "fs/read_write.c", Own: lines("fs/read_write.c", 450, 451, 452), Inlined: lines("include/linux/fs.h", 2900)},
		{Name: "ksys_read", File: "fs/read_write.c", Own: lines("fs/read_write.c", 610, 611)},
	}, hap.Options{Density: 0.17})
	p.WriteText(os.Stdout)
	// Output:
	// cat: 2 functions, 6 lines (5 own, 1 inlined), 2 files, ~0.00 latent bugs at 0.17/KLOC [fentry, exact]
	// kernel unknown (build-id unknown), window 0s after 0s warm-up; misses 0, drops 0 in the window (all tasks)
	// subsystem  functions  lines  estimated  share
	// fs         2          5      0          83.3%
	// include    0          1      0          16.7%
	// total      2          6      0          100.0%
}

// Diff tells what one workload drives that the other does not.
func ExampleDiff() {
	a := hap.New(hap.Meta{Label: "native"}, []hap.Func{
		{Name: "vfs_read", File: "fs/read_write.c", Own: lines("fs/read_write.c", 450, 451)},
		{Name: "tcp_sendmsg", File: "net/ipv4/tcp.c", Own: lines("net/ipv4/tcp.c", 1300, 1301)},
	}, hap.Options{})
	b := hap.New(hap.Meta{Label: "gvisor"}, []hap.Func{
		{Name: "vfs_read", File: "fs/read_write.c", Own: lines("fs/read_write.c", 450, 451)},
	}, hap.Options{})
	d := hap.Diff(a, b)
	fmt.Println("only native:", d.OnlyA)
	d.WriteText(os.Stdout, "native", "gvisor")
	// Output:
	// only native: [tcp_sendmsg (net/ipv4/tcp.c)]
	// functions: only native 1, only gvisor 0, both 1
	// lines:     only native 2, only gvisor 0, both 2
	// subsystem  only native  only gvisor  both
	// net/ipv4   2            0            0
	// fs         0            0            2
}

// FromSnapshot symbolizes what a tracer saw: vmlinux functions with the
// kernel's index, module functions with their module's index, which
// Options.Modules supplies (symbolize.OpenModule on a live kernel; here,
// indexes without DWARF, estimated from kallsyms symbols).
func ExampleFromSnapshot() {
	kallsyms := []symbolize.Symbol{
		{Addr: 0xffffffff81000000, Name: "_text"},
		{Addr: 0xffffffff81200000, Name: "dev_queue_xmit"},
		{Addr: 0xffffffff81200400, Name: "_etext"},
		{Addr: 0xffffffffc0a00000, Name: "veth_xmit", Module: "veth"},
		{Addr: 0xffffffffc0a00300, Name: "veth_poll", Module: "veth"},
	}
	vmlinux, _ := symbolize.Estimate(kallsyms)
	veth, _ := symbolize.EstimateModule(kallsyms, "veth")
	snap := &coverage.Snapshot{Backend: coverage.KprobeMulti, Mode: coverage.Pruned, Hits: []coverage.Hit{
		{Function: coverage.Function{Name: "dev_queue_xmit", Addr: 0xffffffff81200000}, Count: 1, Context: coverage.Task},
		{Function: coverage.Function{Name: "veth_xmit", Module: "veth", Addr: 0xffffffffc0a00000}, Count: 1, Context: coverage.Task | coverage.Softirq},
	}}
	p, err := hap.FromSnapshot(snap, vmlinux, symbolize.Kernel{}, hap.Meta{Label: "ping"}, hap.Options{
		Modules: func(module string) (*symbolize.Index, error) {
			if module == "veth" {
				return veth, nil
			}
			return nil, fmt.Errorf("no index of module %s", module)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range p.Functions {
		module := f.Module
		if module == "" {
			module = hap.Vmlinux
		}
		fmt.Printf("%-14s %-7s %-12s ~%d lines\n", f.Name, module, f.Context, f.Lines)
	}
	p.WriteText(os.Stdout)
	// Output:
	// dev_queue_xmit vmlinux task         ~79 lines
	// veth_xmit      veth    task+softirq ~59 lines
	// ping: 2 functions, 138 lines (0 own, 0 inlined, 138 estimated), 0 files, ~0.02 latent bugs at 0.17/KLOC [kprobe.multi, estimated-lines, pruned]
	// kernel unknown (build-id unknown), window 0s after 0s warm-up; misses 0, drops 0 in the window (all tasks)
	// subsystem  functions  lines  estimated  share
	// unknown    2          0      138        100.0%
	// total      2          0      138        100.0%
	//
	// module   functions  lines  estimated  build-id
	// vmlinux  1          0      79         -
	// veth     1          0      59         -
	// functions by context: task 1, task+softirq 1
}

// Score measures a cgroup on the running kernel: it needs root, a kernel
// that can be traced (see `hapscope doctor`) and the kernel's debug info.
// This example is compiled, not run: there is no such kernel in CI's host.
func ExampleScore() {
	p, err := hap.Score(context.Background(), "/sys/fs/cgroup/system.slice/redis.service", hap.ScoreOptions{
		Warmup: 5 * time.Second,  // start-up is not steady state
		Window: 30 * time.Second, // the measured window
	})
	if err != nil {
		fmt.Println(err) // says which backend failed and why, or what debug info is missing
		return
	}
	fmt.Println(p.Summary())
	p.WriteJSON(os.Stdout)
}
