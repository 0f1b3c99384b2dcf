package hap_test

import (
	"context"
	"fmt"
	"os"
	"time"

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
