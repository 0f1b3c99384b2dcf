package seccomp

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hapscope/hapscope/hap"
	"github.com/hapscope/hapscope/symbolize"
)

func TestAllow(t *testing.T) {
	g, err := Allow([]string{"read", "write", "clone3", "io_uring_setup", "io_uring_enter", "page fault", "epoll_wait", "read"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clone", "epoll_wait", "io_uring_enter", "io_uring_setup", "read", "write"}
	if d := cmp.Diff(want, g.Allowed); d != "" {
		t.Errorf("allowed (-want +got):\n%s", d)
	}
	notes := strings.Join(g.Notes, "\n")
	for _, s := range []string{"page fault", "clone3 was used", "io_uring allowed (io_uring_setup, io_uring_enter)"} {
		if !strings.Contains(notes, s) {
			t.Errorf("notes %q do not say %q", notes, s)
		}
	}
	b, err := g.Profile.JSON()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse of Allow's JSON: %v\n%s", err, b)
	}
	if d := cmp.Diff(g.Profile, p); d != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", d)
	}
	for name, want := range map[string]Verdict{
		"read": Allowed, "clone": Allowed, "io_uring_enter": Allowed,
		"clone3": Denied, "mkdirat": Denied, "ptrace": Denied,
	} {
		if v := p.Verdict(name); v != want {
			t.Errorf("Verdict(%s) = %v, want %v", name, v, want)
		}
	}
	for _, s := range []string{`"defaultAction": "SCMP_ACT_ERRNO"`, `"defaultErrnoRet": 1`, `"architectures": [`, `"SCMP_ARCH_X86_64"`, `"errnoRet": 38`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("profile lacks %s:\n%s", s, b)
		}
	}
}

func TestAllowNothing(t *testing.T) {
	if _, err := Allow([]string{"page fault", "interrupt"}); err == nil || !strings.Contains(err.Error(), "--syscalls") {
		t.Errorf("Allow of no system call: err %v, want one that names --syscalls", err)
	}
	if _, err := Allow(nil); err == nil {
		t.Error("Allow(nil): no error")
	}
}

// dockerLike has the shapes of Docker's default profile: a large
// unconditional allow list, argument-conditioned rules, capability
// includes and an excluded architecture.
const dockerLike = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 1,
	"archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
	"syscalls": [
		{"names": ["read", "write", "futex"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
		{"names": ["mount", "bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
		{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
		{"name": "sync", "action": "SCMP_ACT_LOG", "includes": {}},
		{"names": ["kexec_load"], "action": "SCMP_ACT_KILL"}
	]
}`

func TestVerdict(t *testing.T) {
	p, err := Parse([]byte(dockerLike))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]Verdict{
		"read": Allowed, "futex": Allowed, "sync": Allowed,
		"personality": Conditional, "mount": Conditional, "bpf": Conditional,
		"clone3": Denied, "kexec_load": Denied, "ptrace": Denied,
	} {
		if v := p.Verdict(name); v != want {
			t.Errorf("Verdict(%s) = %v, want %v", name, v, want)
		}
	}
	allowAll := &Profile{DefaultAction: ActAllow, Syscalls: []Rule{{Names: []string{"ptrace"}, Action: ActErrno}}}
	if v := allowAll.Verdict("mkdir"); v != Allowed {
		t.Errorf("default-allow profile: Verdict(mkdir) = %v", v)
	}
	if v := allowAll.Verdict("ptrace"); v != Denied {
		t.Errorf("default-allow profile: Verdict(ptrace) = %v", v)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, "no defaultAction"},
		{`{"defaultAction": "SCMP_ACT_ERRNO"} {}`, "data after"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`, "both"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}`, "no action"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}`, "names no system call"},
		{`[1]`, "seccomp profile"},
		{strings.Repeat(" ", maxProfile+1), "larger than"},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.40q): err %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(dockerLike))
	g, err := Allow([]string{"read", "clone3"})
	if err != nil {
		f.Fatal(err)
	}
	b, _ := g.Profile.JSON()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		// A parsed profile answers every question and writes back to a
		// profile that parses to the same verdicts.
		out, err := p.JSON()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse(out)
		if err != nil {
			t.Fatalf("written profile does not parse: %v\n%s", err, out)
		}
		for _, name := range []string{"read", "clone3", "mount", "sync"} {
			if p.Verdict(name) != q.Verdict(name) {
				t.Fatalf("Verdict(%s): %v before writing, %v after", name, p.Verdict(name), q.Verdict(name))
			}
		}
	})
}

func TestPredict(t *testing.T) {
	line := func(file string, lines ...int) []symbolize.Line {
		var ls []symbolize.Line
		for _, n := range lines {
			ls = append(ls, symbolize.Line{File: file, Line: n})
		}
		return ls
	}
	run := hap.New(hap.Meta{Label: "sysfuzz/docker/unguided"}, []hap.Func{
		{Name: "vfs_read", Own: line("fs/read_write.c", 1, 2, 3), Origins: map[string]uint64{"read": 5, "pread64": 1}},
		{Name: "vfs_mkdir", Own: line("fs/namei.c", 10, 11), Inlined: line("include/linux/fs.h", 7), Origins: map[string]uint64{"mkdir": 2}},
		{Name: "do_mkdirat", Own: line("fs/namei.c", 20), Inlined: line("include/linux/fs.h", 7), Origins: map[string]uint64{"mkdirat": 1, "mkdir": 1}},
		{Name: "handle_mm_fault", Own: line("mm/memory.c", 5), Origins: map[string]uint64{"page fault": 3, "mkdir": 1}},
		{Name: "__x64_sys_clone3", Own: line("kernel/fork.c", 9), Origins: map[string]uint64{"clone3": 1}},
		{Name: "odd", Own: line("kernel/sys.c", 1), Origins: map[string]uint64{"syscall 1000": 1}},
	}, hap.Options{})
	g, err := Allow([]string{"read", "pread64", "clone3"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := g.Profile.Predict(run)
	if err != nil {
		t.Fatal(err)
	}
	var cut []string
	for _, f := range pr.Cut {
		cut = append(cut, f.Name)
	}
	// clone3 is answered with ENOSYS: its code is cut too; the fault path
	// stays, whatever call it also came from. (By name, as hap.New sorts.)
	if want := []string{"__x64_sys_clone3", "do_mkdirat", "odd", "vfs_mkdir"}; !slices.Equal(cut, want) {
		t.Errorf("cut %v, want %v", cut, want)
	}
	if want := []string{"clone3", "mkdir", "mkdirat", "syscall 1000"}; !slices.Equal(pr.Denied, want) {
		t.Errorf("denied %v, want %v", pr.Denied, want)
	}
	// Kept: vfs_read's 3 lines and handle_mm_fault's 1; the header line
	// went with both mkdir functions.
	if pr.Kept.Lines.Total != 4 || run.Lines.Total != 10 {
		t.Errorf("kept %d of %d lines, want 4 of 10", pr.Kept.Lines.Total, run.Lines.Total)
	}
	if _, err := g.Profile.Predict(hap.New(hap.Meta{}, []hap.Func{{Name: "x", Own: line("a.c", 1)}}, hap.Options{})); err == nil {
		t.Error("Predict from a run without origins: no error")
	}
	var b strings.Builder
	if err := run.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	read, err := hap.ReadJSON(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Profile.Predict(read); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("Predict from a profile read back from JSON: %v, want an error that says why", err)
	}
}
