package coverage

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseFilterFunctions(t *testing.T) {
	fs, err := parseFilterFunctions(strings.NewReader(readFixture(t, "available_filter_functions.txt")), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 19 || fs[18] != (traceable{name: "virtnet_poll", module: "virtio_net"}) {
		t.Errorf("got %d entries, last %+v", len(fs), fs[len(fs)-1])
	}
	fa, err := parseFilterFunctions(strings.NewReader(readFixture(t, "available_filter_functions_addrs.txt")), true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(traceable{addr: 0xffffffff816bab74, name: "vfs_read"}, fa[2], cmp.AllowUnexported(traceable{})); diff != "" {
		t.Error(diff)
	}
	if _, err := parseFilterFunctions(strings.NewReader("vfs_read\n"), true); err == nil {
		t.Error("addrs parser accepted a line without address")
	}
	if _, err := parseFilterFunctions(strings.NewReader("a b c\n"), false); err == nil {
		t.Error("accepted three fields")
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, c := range []struct {
		file, want string
		ok         bool
	}{
		{"proc_cgroup_hybrid.txt", "/hapscope/run:1/a", true},
		{"proc_cgroup_v2.txt", "/", true},
	} {
		p, ok, err := parseProcCgroup(readFixture(t, c.file))
		if err != nil || ok != c.ok || p != c.want {
			t.Errorf("%s: got %q %v %v, want %q", c.file, p, ok, err, c.want)
		}
	}
	if _, ok, err := parseProcCgroup("4:memory:/x\n"); ok || err != nil {
		t.Errorf("v1-only file: ok=%v err=%v", ok, err)
	}
	for _, bad := range []string{"garbage\n", "x::/\n", "0::relative\n"} {
		if _, _, err := parseProcCgroup(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseFilterFunctions(f *testing.F) {
	f.Add(readFixture(f, "available_filter_functions.txt"), false)
	f.Add(readFixture(f, "available_filter_functions_addrs.txt"), true)
	f.Fuzz(func(t *testing.T, s string, addrs bool) {
		fs, err := parseFilterFunctions(strings.NewReader(s), addrs)
		if err != nil {
			return
		}
		for _, x := range fs {
			if x.name == "" || strings.ContainsAny(x.name+x.module, " \t\n") {
				t.Fatalf("bad entry %+v", x)
			}
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add(readFixture(f, "proc_cgroup_hybrid.txt"))
	f.Add("0::/\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok, err := parseProcCgroup(s)
		if err == nil && ok && !strings.HasPrefix(p, "/") {
			t.Fatalf("relative path %q", p)
		}
	})
}
