package hap

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// originFixtureEnv makes this test binary the fixture of
// TestLabOrigins: "FILE DIR" in it runs originFixture instead of the tests.
const originFixtureEnv = "HAPSCOPE_ORIGIN_FIXTURE"

func init() {
	if v := os.Getenv(originFixtureEnv); v != "" {
		file, dir, _ := strings.Cut(v, " ")
		originFixture(file, dir)
		os.Exit(1)
	}
}

// originFixture makes, on one locked thread, only three kinds of kernel
// entry, forever: pread64 of file, mkdirat of a new directory under dir, and
// a user page fault on a page not touched before (madvise drops the pages
// when the area is used up, one call in 4,096 iterations). The Go runtime's
// other threads make their own calls (futex, nanosleep…).
func originFixture(file, dir string) {
	runtime.LockOSThread()
	fd, err := unix.Open(file, unix.O_RDONLY, 0)
	if err != nil {
		panic(err)
	}
	const pages = 4096
	area, err := unix.Mmap(-1, 0, pages*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		if _, err := unix.Pread(fd, buf, 0); err != nil {
			panic(err)
		}
		if err := unix.Mkdir(filepath.Join(dir, strconv.Itoa(i)), 0o700); err != nil {
			panic(err)
		}
		area[(i%pages)*4096] = 1
		if i%pages == pages-1 {
			if err := unix.Madvise(area, unix.MADV_DONTNEED); err != nil {
				panic(err)
			}
		}
	}
}

// TestLabOrigins is the acceptance test of syscall attribution: a program
// whose kernel entries are known (originFixture) is scored with
// Attribution, and each function lands under the entries that reach it:
// vfs_read under pread64 only, vfs_mkdir under mkdirat only, the fault
// handler under page fault, and some functions under both pread64 and
// mkdirat (the shared part). It also scores the same program without
// attribution, side by side, and logs what attribution costs it.
func TestLabOrigins(t *testing.T) {
	labtest.Require(t)
	ctx := context.Background()
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	if labtest.Kernel() != "6.12" {
		// fentry on 6.1: one program per function; probe the pread64,
		// mkdirat and fault paths and helpers they may share.
		names := map[string]bool{}
		for _, n := range strings.Fields(`vfs_read vfs_mkdir do_mkdirat ksys_pread64 __x64_sys_pread64 __x64_sys_mkdirat
			handle_mm_fault __handle_mm_fault do_user_addr_fault filemap_read rw_verify_area security_file_permission
			filename_create getname_flags strncpy_from_user current_time touch_atime atime_needs_update
			__fsnotify_parent fsnotify __cond_resched kmem_cache_alloc kmem_cache_free inode_permission
			generic_permission security_inode_permission mnt_want_write mnt_drop_write path_put dput mntput
			_copy_to_user copy_page_to_iter __fdget fput shmem_mkdir shmem_mknod ovl_mkdir ovl_read_iter`) {
			names[n] = true
		}
		cat = cat.Subset(func(f coverage.Function) bool { return names[f.Name] })
	}
	t.Logf("catalogue: %d functions", len(cat.Functions))
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	rates := map[bool]float64{}
	for _, attribute := range []bool{true, false} {
		opt := ScoreOptions{Warmup: time.Second, Window: 4 * time.Second, Samples: 2, Catalogue: cat,
			Coverage:    coverage.Options{Attribution: attribute, Counts: true},
			Symbolize:   symbolize.Options{CacheDir: labtest.IndexCache()},
			ModuleDebug: labtest.ModuleDebug()}
		sc, err := NewScorer(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		dirs := t.TempDir()
		cg, stop := startFixture(t, fmt.Sprintf("hap-origins-%v", attribute), file, dirs)
		before := entries(t, dirs)
		start := time.Now()
		p, err := sc.Score(ctx, cg)
		rates[attribute] = float64(entries(t, dirs)-before) / time.Since(start).Seconds()
		stop()
		if cerr := sc.Close(); cerr != nil {
			t.Error(cerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Log(p.Summary())
		checkInvariants(t, p)
		if !attribute {
			if p.Origins != nil {
				t.Errorf("origins without attribution: %v", p.Origins)
			}
			continue
		}
		checkOrigins(t, p)
	}
	t.Logf("attribution cost: the fixture ran %.0f iterations/s with it, %.0f without (ratio %.2f)",
		rates[true], rates[false], rates[true]/rates[false])
}

func checkOrigins(t *testing.T, p *Profile) {
	t.Helper()
	var b strings.Builder
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("profile:\n%s", b.String())
	if p.OriginsDropped != 0 {
		t.Errorf("%d calls' origins dropped", p.OriginsDropped)
	}
	byName := map[string]Func{}
	var shared []string
	for _, f := range p.Functions {
		byName[f.Name] = f
		var sum uint64
		for _, n := range f.Origins {
			sum += n
		}
		// The counters are read, then the origins' epoch is closed (a
		// few microseconds later) and the closed epochs read: both count
		// the same events but those of that gap. (Before, the origins
		// were read live while the hash was walked: switch_ldt once had
		// 256 hits and 391 by origin on 6.12.) A reset switches the
		// origins' epoch right after zeroing the counters.
		if float64(sum) < 0.95*float64(f.Hits)-5 || float64(sum) > 1.05*float64(f.Hits)+5 {
			t.Errorf("%s: %d hits, %d by origin %v", f.Name, f.Hits, sum, f.Origins)
		}
		if f.Origins["pread64"] > 0 && f.Origins["mkdirat"] > 0 {
			shared = append(shared, f.Name)
		}
		if f.Origins["io_uring worker"] > 0 {
			t.Errorf("%s: reached from an io_uring worker, and the fixture has none", f.Name)
		}
	}
	only := func(fn string, want ...string) {
		f, ok := byName[fn]
		if !ok {
			t.Errorf("%s not in the profile", fn)
			return
		}
		if got := slices.Sorted(maps.Keys(f.Origins)); !slices.Equal(got, want) {
			t.Errorf("%s reached from %v, want %v", fn, got, want)
		}
	}
	only("vfs_read", "pread64")
	only("vfs_mkdir", "mkdirat")
	if f, ok := byName["handle_mm_fault"]; !ok || f.Origins["page fault"] == 0 {
		t.Errorf("handle_mm_fault: origins %v, want page fault among them", f.Origins)
	}
	t.Logf("functions reached from both pread64 and mkdirat: %v", shared)
	if len(shared) == 0 {
		t.Error("no function is reached from both pread64 and mkdirat")
	}
	rows := map[string]Origin{}
	for _, o := range p.Origins {
		rows[o.Name] = o
	}
	for _, n := range []string{"pread64", "mkdirat", "page fault"} {
		if o := rows[n]; o.Lines == 0 || o.Only == 0 || o.Only >= o.Lines && n != "page fault" {
			t.Errorf("origin %s: %+v; want lines of its own and lines shared", n, o)
		}
	}
}

// startFixture runs originFixture in a new cgroup.
func startFixture(t *testing.T, name, file, dir string) (cg string, stop func()) {
	t.Helper()
	cg = labtest.Cgroup(t, name)
	cmd := labtest.Reexec(t, cg, originFixtureEnv+"="+file+" "+dir)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cg, func() {
		cmd.Process.Kill()
		cmd.Wait()
		if s := out.String(); s != "" {
			t.Errorf("fixture: %s", s)
		}
	}
}

func entries(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
