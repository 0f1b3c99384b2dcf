package coverage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestOpenRefusedUnderLockdown is acceptance item 6: on a locked-down kernel
// (this development host) Open fails and the error names lockdown, EPERM and
// every backend it tried.
func TestOpenRefusedUnderLockdown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: as a user every backend fails with EPERM for another reason")
	}
	mode := lockdown()
	if mode == "" || mode == "none" {
		t.Skipf("kernel lockdown is %q here: this test checks the refusal on locked-down kernels", mode)
	}
	cat, err := LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Open(context.Background(), cat, Options{})
	if err == nil {
		tr.Close()
		t.Fatalf("Open succeeded under lockdown=%s", mode)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"lockdown=" + mode, "operation not permitted", "EPERM", string(KprobeMulti), string(Fentry), string(Kprobe)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	// Facts only: integrity lockdown by itself does not forbid fentry, so
	// the message must not blame lockdown as the cause.
	if strings.Contains(msg, "forbids") {
		t.Errorf("error claims a cause it cannot know: %s", msg)
	}
	// Forcing one backend gives that backend's reason.
	_, err = Open(context.Background(), cat, Options{Backend: Fentry})
	if err == nil || !strings.Contains(err.Error(), "fentry") || !strings.Contains(err.Error(), "lockdown") {
		t.Errorf("forced fentry: %v", err)
	}
}

func TestCgroupOf(t *testing.T) {
	dir, err := CgroupOf(os.Getpid())
	if err != nil {
		if _, err2 := cgroupRoot(); err2 != nil {
			t.Skipf("no cgroup2 here: %v", err2)
		}
		t.Fatal(err)
	}
	_, id, level, err := cgroupInfo(dir)
	if err != nil || id == 0 || level < 0 {
		t.Fatalf("cgroupInfo(%s) = %d %d %v", dir, id, level, err)
	}
	back, err := cgroupByID(id)
	if err != nil || back != dir {
		t.Errorf("cgroupByID(%d) = %q, %v; want %q", id, back, err, dir)
	}
	if _, _, _, err := cgroupInfo("/proc"); err == nil {
		t.Error("cgroupInfo accepted /proc")
	}
}

func TestOpenEmpty(t *testing.T) {
	_, err := Open(context.Background(), &Catalogue{}, Options{})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Open of an empty catalogue: %v", err)
	}
}

func TestNextPeriod(t *testing.T) {
	p := minPrunePeriod
	for i := 0; i < 10; i++ {
		p = nextPeriod(p, 0)
	}
	if p != maxPrunePeriod {
		t.Errorf("no new functions for 10 periods: period %v, want the maximum %v", p, maxPrunePeriod)
	}
	q := nextPeriod(p, 100)
	if q != p/2 {
		t.Errorf("100 new functions: period %v, want half of %v", q, p)
	}
	if r := nextPeriod(q, 8); r != q {
		t.Errorf("8 new functions: period %v, want it kept at %v", r, q)
	}
	for i := 0; i < 10; i++ {
		q = nextPeriod(q, 1000)
	}
	if q != minPrunePeriod {
		t.Errorf("many new functions: period %v, want the minimum %v", q, minPrunePeriod)
	}
}

// TestMultiParts: Open's kprobe.multi links cover every catalogue function
// exactly once; in Pruned mode the prior's functions come first, in links
// of shardSize holding nothing else.
func TestMultiParts(t *testing.T) {
	if len(prior) < 500 || !prior["vfs_read"] || !prior["schedule"] {
		t.Fatalf("prior.txt: %d names, vfs_read %v, schedule %v: want the lab's common functions", len(prior), prior["vfs_read"], prior["schedule"])
	}
	var cat Catalogue
	for i := range 5000 {
		name := fmt.Sprintf("cold_%d", i)
		if i%7 == 0 {
			name = []string{"vfs_read", "schedule", "tcp_sendmsg", "do_epoll_wait"}[i/7%4] // clones share a name
		}
		cat.Functions = append(cat.Functions, Function{Name: name, Addr: uint64(0x1000 + 16*i)})
	}
	for _, mode := range []Mode{Counts, Pruned} {
		parts := multiParts(&cat, mode)
		seen := map[int]bool{}
		hotDone := false
		for _, p := range parts {
			hot := prior[cat.Functions[p[0]].Name]
			if mode == Counts && len(parts) != 1 {
				t.Fatalf("counts: %d links, want 1", len(parts))
			}
			if mode == Pruned {
				if hot && hotDone {
					t.Errorf("a prior link after the others")
				}
				hotDone = hotDone || !hot
				if limit := map[bool]int{true: shardSize, false: openShard}[hot]; len(p) > limit {
					t.Errorf("link of %d functions (prior %v), want at most %d", len(p), hot, limit)
				}
			}
			for _, i := range p {
				if seen[i] {
					t.Fatalf("%s: function %d in two links", mode, i)
				}
				seen[i] = true
				if mode == Pruned && prior[cat.Functions[i].Name] != hot {
					t.Errorf("link mixes prior and other functions")
				}
			}
		}
		if len(seen) != len(cat.Functions) {
			t.Errorf("%s: %d functions in links, want %d", mode, len(seen), len(cat.Functions))
		}
	}
}

// A replacement pays for every call site it patches: the functions the new
// link probes again and every function the old link held.
func TestWorthReplacing(t *testing.T) {
	for _, c := range []struct {
		heat    uint64
		n, rest int
		want    bool
	}{
		{heat: 128 * 387, n: 256, rest: 131, want: true},
		{heat: 128*387 - 1, n: 256, rest: 131, want: false},
		{heat: 128 * 387, n: 1024, rest: 131, want: false}, // same rest, a bigger old link to close
		{heat: 128, n: 1, rest: 0, want: true},             // a link of one seen function
		{heat: 127, n: 1, rest: 0, want: false},
	} {
		if got := worthReplacing(c.heat, c.n, c.rest); got != c.want {
			t.Errorf("worthReplacing(heat %d, link of %d, %d to probe again) = %v, want %v", c.heat, c.n, c.rest, got, c.want)
		}
	}
}
