// Command prior writes coverage/prior.txt: the kernel functions that
// measured workloads ran, which the pruning tracer groups in their own
// kprobe.multi links at Open (see coverage.Open). It is a speed hint only:
// which functions a tracer reports never depends on it.
//
//	go run ./internal/cmd/prior -exclude redis out/matrix/*-run*.json > coverage/prior.txt
//
// Profiles whose label contains an -exclude substring are left out (the
// committed list leaves out redis, so that the redis pruning benchmark
// measures a workload the list was not made from).
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hapscope/hapscope/hap"
)

func main() {
	exclude := flag.String("exclude", "", "comma-separated label substrings of profiles to leave out")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: prior [-exclude a,b] PROFILE.json...")
		os.Exit(2)
	}
	seen := map[string]bool{}
	var labels, releases []string
	used := 0
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prior:", err)
			os.Exit(1)
		}
		p, err := hap.ReadJSON(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prior: %s: %v\n", path, err)
			os.Exit(1)
		}
		if *exclude != "" && slices.ContainsFunc(strings.Split(*exclude, ","), func(s string) bool { return strings.Contains(p.Label, s) }) {
			continue
		}
		used++
		if !slices.Contains(labels, p.Label) {
			labels = append(labels, p.Label)
		}
		if !slices.Contains(releases, p.Release) {
			releases = append(releases, p.Release)
		}
		for _, fn := range p.Functions {
			seen[fn.Name] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	slices.Sort(labels)
	slices.Sort(releases)
	fmt.Printf("# Functions run by %d measured profiles on %s (%s),\n# made by internal/cmd/prior. A speed hint for pruning only.\n", used, strings.Join(releases, ", "), strings.Join(labels, ", "))
	for _, n := range names {
		fmt.Println(n)
	}
}
