package coverage_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/hapscope/hapscope/coverage"
)

// Measure the kernel functions a cgroup's workload runs in steady state.
func Example() {
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	tr, err := coverage.Open(ctx, cat, coverage.Options{
		Progress: func(p coverage.Progress) { log.Printf("%s %s %d/%d", p.Backend, p.Stage, p.Done, p.Total) },
	})
	if err != nil {
		log.Fatal(err) // says, per backend, why it cannot trace here
	}
	defer tr.Close()
	scope, err := tr.AddScope("/sys/fs/cgroup/my-workload")
	if err != nil {
		log.Fatal(err)
	}
	snap, err := tr.Measure(ctx, scope, 5*time.Second, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d functions via %s (%d misses, %d dropped)\n", len(snap.Names()), snap.Backend, snap.Misses, snap.Dropped)
}
