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

func TestParseKallsyms(t *testing.T) {
	syms, err := parseKallsyms(strings.NewReader(readFixture(t, "kallsyms.txt")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(syms) != 31 {
		t.Errorf("got %d symbols, want 31", len(syms))
	}
	want := ksym{addr: 0xffffffff816bab70, typ: 'T', name: "vfs_read"}
	found := false
	for _, s := range syms {
		if s.name == "vfs_read" {
			found = true
			if s != want {
				t.Errorf("vfs_read = %+v, want %+v", s, want)
			}
		}
	}
	if !found {
		t.Error("vfs_read missing")
	}
	last := syms[len(syms)-1]
	if last.module != "__builtin__ftrace" || last.name != "ftrace_trampoline" {
		t.Errorf("module line parsed as %+v", last)
	}
	text, _ := parseKallsyms(strings.NewReader(readFixture(t, "kallsyms.txt")), func(t byte, m string) bool { return m == "" && (t == 't' || t == 'T') })
	if len(text) != 30 {
		t.Errorf("vmlinux text filter kept %d, want 30", len(text))
	}
	for _, bad := range []string{"zz T x\n", "ffffffff81000000 TT x\n", "ffffffff81000000 T\n", "ffffffff81000000 T x mod\n"} {
		if _, err := parseKallsyms(strings.NewReader(bad), nil); err == nil {
			t.Errorf("parseKallsyms(%q) accepted malformed input", bad)
		}
	}
}

func TestParseFilterFunctions(t *testing.T) {
	fs, err := parseFilterFunctions(strings.NewReader(readFixture(t, "available_filter_functions.txt")), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 16 || fs[15] != (traceable{name: "virtnet_poll", module: "virtio_net"}) {
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

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(readFixture(t, "mountinfo_hybrid.txt") + `99 1 0:40 / /tmp/with\040space rw - cgroup2 none rw` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	p, err := cgroup2Mount(ms)
	if err != nil || p != "/sys/fs/cgroup/unified" {
		t.Errorf("cgroup2 mount = %q, %v", p, err)
	}
	if last := ms[len(ms)-1]; last.point != "/tmp/with space" {
		t.Errorf("octal escape: %q", last.point)
	}
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add(readFixture(f, "kallsyms.txt"))
	f.Add("ffffffff81000000 T _text\n")
	f.Fuzz(func(t *testing.T, s string) {
		syms, err := parseKallsyms(strings.NewReader(s), nil)
		if err != nil {
			return
		}
		for _, k := range syms {
			if k.name == "" || strings.ContainsAny(k.name, " \t\n") {
				t.Fatalf("bad name %q", k.name)
			}
		}
	})
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

func FuzzParseMountinfo(f *testing.F) {
	f.Add(readFixture(f, "mountinfo_hybrid.txt"))
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := parseMountinfo(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.fstype == "" {
				t.Fatalf("empty fstype in %+v", m)
			}
		}
	})
}
