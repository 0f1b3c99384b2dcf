// Command score is the smallest use of the hap API: score one cgroup and
// print the result.
//
//	go run ./examples/score /sys/fs/cgroup/system.slice/redis.service
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hapscope/hapscope/hap"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: score CGROUP_V2_DIR")
		os.Exit(2)
	}
	p, err := hap.Score(context.Background(), os.Args[1], hap.ScoreOptions{
		Warmup: 2 * time.Second, // start-up is not steady state
		Window: 10 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "score:", err)
		os.Exit(1)
	}
	fmt.Println(p.Summary())
	for _, s := range p.Subsystems[:min(5, len(p.Subsystems))] {
		fmt.Printf("  %-12s %6d lines in %4d functions\n", s.Name, s.Lines+s.Estimated, s.Functions)
	}
	fmt.Println("by kernel module:")
	for _, m := range p.Modules {
		fmt.Printf("  %-12s %6d lines in %4d functions\n", m.Name, m.Lines+m.Estimated, m.Functions)
	}
}
