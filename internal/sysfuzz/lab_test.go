//go:build linux && amd64

package sysfuzz

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/labtest"
	"golang.org/x/sys/unix"
)

// TestLabSysfuzzExecute runs the first 600 programs of seed 1's stream
// (what `sysfuzz run -seed 1 -n 600` runs) in the lab VM, checking after
// each that no fd is left open and the work dir is empty.
func TestLabSysfuzzExecute(t *testing.T) {
	labtest.Require(t)
	dir := t.TempDir()
	e := &Executor{Dir: dir}
	if _, err := e.Run(&Program{}); err != nil { // starts the runtime's poller
		t.Fatal(err)
	}
	before := openFds(t)
	s := NewStream(1, DefaultCalls)
	perCall := map[string][2]int{} // ran, failed
	errnos := map[string]int{}
	ran, failed, skipped := 0, 0, 0
	const n = 600 // ~45 s in the lab
	for i := range n {
		p := s.Next()
		res, err := e.Run(p)
		if err != nil {
			t.Fatalf("program %d: %v\n%s", i, err, p)
		}
		checkClean(t, before, dir)
		if t.Failed() {
			t.Fatalf("program %d left state behind:\n%s", i, p)
		}
		for k, r := range res.Calls {
			name := p.Calls[k].Meta.Name
			c := perCall[name]
			switch {
			case !r.Ran:
				skipped++
				continue
			case r.Errno != 0:
				c[1]++
				failed++
				errnos[unix.ErrnoName(r.Errno)]++
			default:
				errnos["OK"]++
			}
			c[0]++
			ran++
			perCall[name] = c
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d programs: %d calls made, %d failed, %d skipped\n", n, ran, failed, skipped)
	names := make([]string, 0, len(perCall))
	for k := range perCall {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "  %-20s %6d made %6d failed\n", k, perCall[k][0], perCall[k][1])
	}
	names = names[:0]
	for k := range errnos {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return errnos[b] - errnos[a] })
	for _, k := range names {
		fmt.Fprintf(&b, "  %-12s %6d\n", k, errnos[k])
	}
	t.Log(b.String())
	for _, sc := range Syscalls {
		if sc.NR == unix.SYS_PTRACE && os.Geteuid() == 0 {
			continue // the executor does not run ptrace as root (pid 1 would be traceable)
		}
		if perCall[sc.Name][0] == 0 {
			t.Errorf("%s never ran", sc.Name)
		}
	}
}
