package matrix

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hapscope/hapscope/hap"
	"path/filepath"
	"sync"
	"sync/atomic"
)

func TestParseRedisInfo(t *testing.T) {
	body := "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:12345\r\ntotal_error_replies:2\r\n"
	got, err := parseRedisInfo(bufio.NewReader(strings.NewReader(fmt.Sprintf("$%d\r\n%s\r\n", len(body), body))))
	if err != nil {
		t.Fatal(err)
	}
	if got != (redisCounters{commands: 12345, errors: 2}) {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{"-ERR unknown\r\n", "$-5\r\n", "$10\r\nabc", "$5\r\nab:cd\r\n"} {
		if _, err := parseRedisInfo(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseRedisInfo(f *testing.F) {
	f.Add("$30\r\ntotal_commands_processed:7\r\n\r\n")
	f.Add("$2\r\nx")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseRedisInfo(bufio.NewReader(strings.NewReader(s)))
		if err == nil && !strings.Contains(s, "total_commands_processed") {
			t.Fatalf("counters %+v without total_commands_processed", c)
		}
	})
}

// runcSpecFixture is `runc spec` of runc 1.1.5 (Debian bookworm), the
// runc the lab runs.
func runcSpecFixture(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/runc-1.1.5-spec.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// generic decodes JSON into maps and slices, for comparisons by value.
func generic(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSpecRoundTrip checks that reading runc's spec into the runtime-spec
// types and writing it back loses and adds nothing.
func TestSpecRoundTrip(t *testing.T) {
	data := runcSpecFixture(t)
	spec, err := parseSpec(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(generic(t, data), generic(t, out)); d != "" {
		t.Errorf("round trip of runc 1.1.5's spec (-runc +written):\n%s", d)
	}
	if _, err := parseSpec([]byte(`{"process": []}`)); err == nil {
		t.Error("parseSpec accepted a process that is not an object")
	}
}

func TestEditSpec(t *testing.T) {
	data := runcSpecFixture(t)
	spec, err := parseSpec(data)
	if err != nil {
		t.Fatal(err)
	}
	seccomp, err := DockerSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	if err := editSpec(spec, []string{"redis-server", "--port", "1"}, "/tmp/b/rootfs", "/x/ctr", seccomp); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	got, orig := generic(t, out), generic(t, data)
	linux, origLinux := got["linux"].(map[string]any), orig["linux"].(map[string]any)
	var wantNS []any
	for _, n := range origLinux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "network" {
			wantNS = append(wantNS, n)
		}
	}
	if len(wantNS) == len(origLinux["namespaces"].([]any)) {
		t.Fatal("fixture has no network namespace to drop")
	}
	if d := cmp.Diff(wantNS, linux["namespaces"]); d != "" {
		t.Errorf("namespaces (-want +got):\n%s", d)
	}
	if linux["cgroupsPath"] != "/x/ctr" {
		t.Errorf("cgroupsPath = %v", linux["cgroupsPath"])
	}
	if sc, _ := linux["seccomp"].(map[string]any); sc["defaultAction"] != "SCMP_ACT_ERRNO" || len(sc["syscalls"].([]any)) == 0 {
		t.Errorf("seccomp section = %v", linux["seccomp"])
	}
	p := got["process"].(map[string]any)
	if _, on := p["terminal"]; on || p["cwd"] != "/tmp" || !cmp.Equal(p["args"], []any{"redis-server", "--port", "1"}) {
		t.Errorf("process = %v", p)
	}
	// What was not edited stays as runc wrote it.
	op := orig["process"].(map[string]any)
	for _, k := range []string{"user", "env", "capabilities", "rlimits", "noNewPrivileges"} {
		if d := cmp.Diff(op[k], p[k]); d != "" {
			t.Errorf("process.%s changed (-runc +edited):\n%s", k, d)
		}
	}
	if d := cmp.Diff(orig["hostname"], got["hostname"]); d != "" {
		t.Errorf("hostname changed: %s", d)
	}
	if d := cmp.Diff(map[string]any{"path": "/tmp/b/rootfs", "readonly": true}, got["root"]); d != "" {
		t.Errorf("root (-want +got):\n%s", d)
	}
	mounts, origMounts := got["mounts"].([]any), orig["mounts"].([]any)
	if len(mounts) != len(origMounts)+2 || !cmp.Equal(mounts[:len(origMounts)], origMounts) {
		t.Errorf("mounts: %d, want runc's %d then /tmp and /run", len(mounts), len(origMounts))
	}
	for i, d := range []string{"/tmp", "/run"} {
		if m := mounts[len(origMounts)+i].(map[string]any); m["destination"] != d || m["type"] != "tmpfs" {
			t.Errorf("mount %d = %v, want tmpfs on %s", len(origMounts)+i, m, d)
		}
	}
	// No seccomp: the section is absent, not empty.
	spec, _ = parseSpec(data)
	if err := editSpec(spec, []string{"x"}, "/r", "/c", nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := json.Marshal(spec); strings.Contains(string(out), "seccomp") {
		t.Error("editSpec without seccomp wrote a seccomp section")
	}
	if err := editSpec(&specs.Spec{}, nil, "", "", nil); err == nil {
		t.Error("a spec without process/linux must be refused")
	}
}

const wrkReport = `Running 1h test @ http://127.0.0.1:8891/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    18.43ms   42.53ms 271.61ms   89.63%
    Req/Sec     1.45k     1.68k    5.16k    84.62%
  3855 requests in 2.99s, 771.75KB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   1287.68
Transfer/sec:    257.79KB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 3855 || r.Errors != 10 || r.Elapsed != 2990*time.Millisecond {
		t.Fatalf("got %+v, want 3855 requests, 10 errors, 2.99s", r)
	}
	clean := strings.Replace(strings.Replace(wrkReport, "  Socket errors: connect 0, read 2, write 1, timeout 3\n", "", 1), "  Non-2xx or 3xx responses: 4\n", "", 1)
	if r, err := parseWrk(clean); err != nil || r.Errors != 0 || r.Requests != 3855 {
		t.Fatalf("clean report: %+v, %v", r, err)
	}
	if r, err := parseWrk(strings.Replace(clean, "2.99s", "1.50m", 1)); err != nil || r.Elapsed != 90*time.Second {
		t.Fatalf("minutes: %+v, %v", r, err)
	}
	for _, bad := range []string{"", "unable to connect to 127.0.0.1:8891 Connection refused", "  12 requests in 1.0parsecs, 3KB read"} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	f.Add(wrkReport)
	f.Add("  1 requests in 1us, 1B read\n  Non-2xx or 3xx responses: 99999999999999999999\n")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseWrk(s)
		if err != nil {
			return
		}
		if r.Requests < 0 || r.Errors < 0 || r.Elapsed < 0 {
			t.Fatalf("negative result %+v from %q", r, s)
		}
		if !strings.Contains(s, " requests in ") {
			t.Fatalf("result %+v without a requests line", r)
		}
	})
}

// seccompLines lists a linux.seccomp section as sorted lines, one per
// syscall name and rule: name, action, errno, argument conditions.
func seccompLines(p *specs.LinuxSeccomp) []string {
	var lines []string
	for _, r := range p.Syscalls {
		args, _ := json.Marshal(r.Args)
		errno := "<nil>"
		if r.ErrnoRet != nil {
			errno = strconv.FormatUint(uint64(*r.ErrnoRet), 10)
		}
		for _, n := range r.Names {
			lines = append(lines, fmt.Sprintf("%s %s errno=%s args=%s", n, r.Action, errno, args))
		}
	}
	sort.Strings(lines)
	return lines
}

// TestDockerSeccomp compares the profile from Docker's package with the
// golden file written from the hand copy it replaced (the profile the
// study's runc rows were measured with), and checks what those rows rely
// on.
func TestDockerSeccomp(t *testing.T) {
	p, err := DockerSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Fatalf("default action %v/%v, want errno EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	golden, err := os.ReadFile("testdata/docker-seccomp-amd64.golden")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(golden), "\n"), "\n")
	got := append([]string{fmt.Sprintf("default %s %d arches %v", p.DefaultAction, *p.DefaultErrnoRet, p.Architectures)}, seccompLines(p)...)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("profile differs from the golden one (-golden +got):\n%s", d)
	}
	allowed := map[string]bool{}
	conditional := map[string]bool{}
	for _, r := range p.Syscalls {
		if r.Action != specs.ActAllow {
			continue
		}
		for _, n := range r.Names {
			if len(r.Args) > 0 {
				conditional[n] = true
			} else {
				allowed[n] = true
			}
		}
	}
	// What a server needs, unconditionally.
	for _, n := range []string{"read", "write", "epoll_wait", "accept4", "futex", "mmap", "execve", "arch_prctl", "ptrace"} {
		if !allowed[n] {
			t.Errorf("%s not allowed", n)
		}
	}
	// Docker denies these to a container without CAP_SYS_ADMIN & co.
	for _, n := range []string{"mount", "unshare", "setns", "bpf", "perf_event_open", "init_module", "kexec_load", "reboot", "keyctl", "add_key", "userfaultfd", "clone3"} {
		if allowed[n] || conditional[n] {
			t.Errorf("%s allowed; Docker's default profile denies it", n)
		}
	}
	for _, n := range []string{"clone", "socket", "personality"} {
		if allowed[n] || !conditional[n] {
			t.Errorf("%s: want allowed only with argument conditions", n)
		}
	}
}

func TestStudy2018Functions(t *testing.T) {
	for _, c := range []struct {
		w, r string
		want bool
	}{
		{"redis-set", "docker", true}, {"redis-get", "docker-gvisor-ptrace", true}, {"node-express", "nabla", true},
		{"python-tornado", "kata-qemu", true}, {"redis-set", "native", false}, {"redis-set", "runc-direct", false},
		{"redis-set", "docker-gvisor-systrap", false}, {"redis-set", "gvisor-ptrace", false}, {"bogus", "docker", false},
	} {
		if got := Study2018Functions(c.w, c.r); (got > 0) != c.want {
			t.Errorf("Study2018Functions(%s, %s) = %v, want present=%v", c.w, c.r, got, c.want)
		}
	}
	if Study2018Functions("redis-set", "docker") != Study2018Functions("redis-get", "docker") {
		t.Error("both redis tests must map to the study's one redis row")
	}
}

func testProfile(funcs, lines int) *hap.Profile {
	p := &hap.Profile{Functions: make([]hap.Func, funcs)}
	p.Lines.Total, p.Lines.Own, p.Lines.Inlined = lines, lines*2/3, lines/2
	p.Label = fmt.Sprintf("p%d", lines)
	return p
}

func TestSummarize(t *testing.T) {
	sec := LoadResult{Requests: 100, Elapsed: time.Second}
	cells := []Cell{
		{Workload: "w", Runtime: "a", Run: 0, Profile: testProfile(10, 100), Load: sec},
		{Workload: "w", Runtime: "b", Run: 0, Skipped: "needs /dev/kvm"},
		{Workload: "w", Runtime: "a", Run: 1, Profile: testProfile(12, 130), Load: LoadResult{Requests: 300, Elapsed: time.Second}},
		{Workload: "w", Runtime: "a", Run: 2, Err: errors.New("load had 3 errors")},
		{Workload: "w", Runtime: "a", Run: 3, Profile: testProfile(11, 110), Load: sec},
		{Workload: "w", Runtime: "b", Run: 1, Skipped: "needs /dev/kvm"},
	}
	rows := Summarize(cells)
	if len(rows) != 2 || rows[0].Runtime != "a" || rows[1].Runtime != "b" {
		t.Fatalf("rows %+v", rows)
	}
	a := rows[0]
	if a.OK != 3 || a.Failed != 1 || a.Runs() != 4 || len(a.Errors) != 1 {
		t.Errorf("a: ok %d failed %d errors %v", a.OK, a.Failed, a.Errors)
	}
	if a.Functions.Mean != 11 || a.Functions.SD != 1 || a.Functions.N != 3 {
		t.Errorf("functions %+v, want 11 ± 1 over 3", a.Functions)
	}
	if math.Abs(a.Lines.SD-math.Sqrt(700/3.0)) > 1e-9 || math.Abs(a.Lines.Mean-340/3.0) > 1e-9 {
		t.Errorf("lines %+v", a.Lines)
	}
	if a.RPS.Mean < 166 || a.RPS.Mean > 167 {
		t.Errorf("req/s %+v, want (100+300+100)/3", a.RPS)
	}
	if a.Median == nil || a.Median.Lines.Total != 110 {
		t.Errorf("median run %v, want the 110-line one", a.Median)
	}
	if b := rows[1]; b.Skipped == "" || b.OK != 0 || b.Median != nil || b.Lines.N != 0 {
		t.Errorf("b: %+v", b)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"11 ± 1", "3/4", "1 FAILED: load had 3 errors", "not run: needs /dev/kvm"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestStatCV(t *testing.T) {
	s := newStat([]float64{90, 100, 110})
	if s.Mean != 100 || s.SD != 10 || s.CV() != 0.1 {
		t.Errorf("%+v cv %v", s, s.CV())
	}
	if one := newStat([]float64{5}); one.SD != 0 || one.format(0) != "5" {
		t.Errorf("one value: %+v %q", one, one.format(0))
	}
	if none := newStat(nil); none.format(1) != "-" || none.CV() != 0 {
		t.Errorf("no value: %+v", none)
	}
}

func TestWriteReport(t *testing.T) {
	cells := []Cell{
		{Workload: "redis-set", Runtime: "docker", Profile: testProfile(400, 20000), Load: LoadResult{Requests: 10, Elapsed: time.Second}},
		{Workload: "redis-set", Runtime: "nabla", Skipped: "not installable here"},
	}
	var buf bytes.Buffer
	if err := WriteReport(&buf, "test <matrix>", Summarize(cells)); err != nil {
		t.Fatal(err)
	}
	doc := buf.String()
	for _, want := range []string{`<table id="matrix"`, "test &lt;matrix&gt;", "<td>385</td>", "<td>158</td>", "not run: not installable here", "<td>20000</td>"} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Index(doc, `id="matrix"`) > strings.Index(doc, "Horizontal Attack Profile</h1>") {
		t.Error("the summary table must come before hap's per-profile report")
	}
	buf.Reset()
	if err := WriteReport(&buf, "empty", Summarize(cells[1:])); err != nil || !strings.Contains(buf.String(), "No cell was scored") {
		t.Errorf("report without profiles: %v", err)
	}
}

func TestHTTPWorkloads(t *testing.T) {
	for _, w := range []Workload{Tornado(), Express("/x/node_modules/express")} {
		prog := strings.Join(w.Service.Argv, " ")
		if strings.Contains(prog, "%!") || !strings.Contains(prog, strconv.Itoa(w.Service.Port)) || !strings.HasPrefix(w.Service.Argv[0], "/usr/bin/") {
			t.Errorf("%s: argv %q (want Debian's interpreter by absolute path, port %d)", w.Name, w.Service.Argv, w.Service.Port)
		}
	}
	if !strings.Contains(strings.Join(Express("/x/node_modules/express").Service.Argv, " "), `require("/x/node_modules/express")`) {
		t.Error("express app does not load the given module directory")
	}
}

type windowScorer struct{ callsEnd bool }

func (w windowScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if w.callsEnd {
		hap.ContextScoreTrace(ctx).WindowEnd()
	}
	return &hap.Profile{}, nil
}

// The overhead comparison times scoring from the scorer's own end of window,
// and the hook the load generator put in the context still runs.
func TestTimedScorerWindowEnd(t *testing.T) {
	stopped := 0
	ctx := hap.WithScoreTrace(context.Background(), &hap.ScoreTrace{WindowEnd: func() { stopped++ }})
	ts := &timedScorer{s: windowScorer{callsEnd: true}}
	if _, err := ts.Score(ctx, "/x"); err != nil {
		t.Fatal(err)
	}
	if stopped != 1 {
		t.Errorf("load generator's WindowEnd ran %d times, want 1", stopped)
	}
	if ts.after < 0 {
		t.Errorf("after = %v, want ≥ 0", ts.after)
	}
	ts = &timedScorer{s: windowScorer{}}
	if _, err := ts.Score(context.Background(), "/x"); err == nil {
		t.Error("a scorer that never ends its window: no error")
	}
}

// Each round's ratio uses that round's untraced run; ftrace, run once after
// the rounds, is compared with the median untraced round.
func TestOverheadRatios(t *testing.T) {
	load := func(rps int) LoadResult { return LoadResult{Requests: rps * 10, Elapsed: 10 * time.Second} }
	o := &Overhead{
		Workload: "redis-set",
		Untraced: []LoadResult{load(1000), load(2000), load(4000)},
		Methods: []Method{
			{Name: "hapscope pruned", Loads: []LoadResult{load(500), load(1600), load(1000)}, ScoreAfter: []time.Duration{time.Second, time.Second, 2 * time.Second}},
			{Name: "ftrace function_graph", Loads: []LoadResult{load(400)}, ScoreAfter: []time.Duration{40 * time.Second}, TraceLines: 1},
		},
	}
	if diff := cmp.Diff([]float64{0.5, 0.8, 0.25}, o.Ratios(o.Methods[0])); diff != "" {
		t.Errorf("pruned ratios (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]float64{0.2}, o.Ratios(o.Methods[1])); diff != "" {
		t.Errorf("ftrace ratio (-want +got):\n%s", diff)
	}
	var b strings.Builder
	if err := WriteOverhead(&b, []*Overhead{o}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2000 (1000–4000)", "0.500 (0.250–0.800)", "1.00 (1.00–2.00) s", "0.200", "ratio to the median untraced"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSummaryPartsAndVariants(t *testing.T) {
	ok := LoadResult{Requests: 10, Elapsed: time.Second}
	cells := []Cell{
		{Workload: "redis-set", Runtime: "native", Profile: testProfile(300, 10000), Load: ok},
		{Workload: "redis-set", Runtime: "docker", Profile: testProfile(400, 12500), Load: ok,
			Parts: map[string]*hap.Profile{"container": testProfile(350, 11000), "runtime": testProfile(90, 2000),
				"dockerd": testProfile(40, 900), "containerd": testProfile(30, 700), "shim": testProfile(20, 400), "proxy": testProfile(1, 10)}},
		{Workload: "redis-set", Runtime: "docker-noseccomp", Variant: "without seccomp", Profile: testProfile(400, 12400), Load: ok},
	}
	rows := Summarize(cells)
	if rows[1].OverNative != 2500 || rows[1].ContainerLines.Mean != 11000 || rows[1].RuntimeLines.Mean != 2000 || rows[1].ContainerFunctions.Mean != 350 {
		t.Errorf("docker row: over native %v, container %v lines, %v functions, runtime %v; want 2500, 11000, 350, 2000",
			rows[1].OverNative, rows[1].ContainerLines, rows[1].ContainerFunctions, rows[1].RuntimeLines)
	}
	if rows[0].ContainerFunctions.N != 0 {
		t.Errorf("native row has container functions %v: it has no parts", rows[0].ContainerFunctions)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	if got, want := rows[1].DaemonSplit(), "900 / 700 / 400 / 10"; got != want {
		t.Errorf("docker row's daemon split %q, want %q", got, want)
	}
	if got := rows[0].DaemonSplit(); got != "-" {
		t.Errorf("native row's daemon split %q, want -", got)
	}
	for _, want := range []string{"docker-noseccomp (variant)", "+2400", "+2500", "variant docker-noseccomp: without seccomp", "900 / 700 / 400 / 10"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "docker (variant)") {
		t.Errorf("the deployed docker row is marked a variant:\n%s", b.String())
	}
}

// A row whose lines vary says whether its container part varies too.
func TestStatusContainerCV(t *testing.T) {
	ok := LoadResult{Requests: 10, Elapsed: time.Second}
	var cells []Cell
	for i, lines := range []int{10000, 12000, 14000} {
		cells = append(cells, Cell{Workload: "w", Runtime: "docker", Run: i, Profile: testProfile(400, lines), Load: ok,
			Parts: map[string]*hap.Profile{"container": testProfile(350, 9000+10*i)}})
	}
	rows := Summarize(cells)
	if got, want := rows[0].status(), "ok; lines CV 16.7 % > 3 % (container part 0.1 %)"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	cells = cells[:1]
	if got := Summarize(cells)[0].status(); got != "ok" {
		t.Errorf("one run: status %q, want ok", got)
	}
}

func TestSettled(t *testing.T) {
	curve := func(fs ...int) *hap.Profile { return withCurve(&hap.Profile{}, fs...) }
	for _, c := range []struct {
		p    *hap.Profile
		want bool
	}{
		{curve(100, 400, 500, 500, 500, 501), true},  // flat over the last third
		{curve(100, 400, 450, 480, 495, 520), false}, // +25 over the last third
		{curve(100, 1000, 1000, 1000, 1005, 1009), true},
		{curve(100, 200), true}, // too short to tell
		{&hap.Profile{}, true},
	} {
		if got := Settled(c.p); got != c.want {
			t.Errorf("Settled(%v) = %v, want %v", c.p.Convergence, got, c.want)
		}
	}
	rows := Summarize([]Cell{
		{Workload: "w", Runtime: "r", Profile: withCurve(testProfile(10, 100), 100, 400, 450, 480, 495, 520), Load: LoadResult{Requests: 1, Elapsed: time.Second}},
	})
	var b bytes.Buffer
	WriteTable(&b, rows)
	if !strings.Contains(b.String(), "1 of 1 runs not settled") {
		t.Errorf("table does not flag the unsettled run:\n%s", b.String())
	}
}

func withCurve(p *hap.Profile, fs ...int) *hap.Profile {
	for i, f := range fs {
		p.Convergence = append(p.Convergence, hap.Point{At: time.Duration(i+1) * time.Second, Functions: f})
	}
	return p
}

type fakeScorer struct{}

func (fakeScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if tr := hap.ContextScoreTrace(ctx); tr != nil && tr.WindowEnd != nil {
		tr.WindowEnd()
	}
	return &hap.Profile{}, nil
}

// TestRunDockerRowsLast: the Docker rows run after every run of the other
// rows (their NAT chains would make a later native row "native on a Docker
// host"), and the cells come back in the plan's order.
func TestRunDockerRowsLast(t *testing.T) {
	var started []string
	fake := func(name string, docker bool) Runtime {
		rt := Runtime{Name: name, Check: func(*Env) error { return nil },
			Start: func(ctx context.Context, e *Env, id, dir string, svc Service) (*Instance, error) {
				started = append(started, name)
				return &Instance{Stop: fakeCgroup(t, dir), Exited: func() error { return nil }}, nil
			}}
		if docker {
			rt.docker = &DockerOptions{}
		}
		return rt
	}
	w := Idle()
	p := Plan{Workloads: []Workload{w}, Runtimes: []Runtime{fake("native", false), fake("docker", true), fake("bwrap", false)}, Runs: 2}
	e := &Env{Cgroup: t.TempDir()}
	cells, err := p.Run(context.Background(), e, fakeScorer{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(started, " "), "native bwrap native bwrap docker docker"; got != want {
		t.Errorf("started %s, want %s", got, want)
	}
	var order []string
	for _, c := range cells {
		if c.Err != nil {
			t.Errorf("%s: %v", c.Runtime, c.Err)
		}
		order = append(order, fmt.Sprintf("%s/%d", c.Runtime, c.Run))
	}
	if got, want := strings.Join(order, " "), "native/0 docker/0 bwrap/0 native/1 docker/1 bwrap/1"; got != want {
		t.Errorf("cells %s, want %s", got, want)
	}
}

// slowPartScorer ends the window of cgroups named "*/slow" 100 ms after the
// others, and records whether the load still ran when each window ended.
type slowPartScorer struct {
	loadStopped *atomic.Bool
	mu          sync.Mutex
	ranAtEnd    map[string]bool
}

func (s *slowPartScorer) Score(ctx context.Context, cgroup string) (*hap.Profile, error) {
	if strings.HasSuffix(cgroup, "/slow") {
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	s.ranAtEnd[filepath.Base(cgroup)] = !s.loadStopped.Load()
	s.mu.Unlock()
	if tr := hap.ContextScoreTrace(ctx); tr != nil && tr.WindowEnd != nil {
		tr.WindowEnd()
	}
	return &hap.Profile{}, nil
}

// TestPartsShareTheWindow: the load runs until the last of a cell's
// windows (the scope's and its parts') has ended.
func TestPartsShareTheWindow(t *testing.T) {
	var stopped atomic.Bool
	w := Idle()
	w.Load = func(ctx context.Context, e *Env, addr string) (LoadResult, error) {
		<-ctx.Done()
		stopped.Store(true)
		return LoadResult{}, nil
	}
	rt := Runtime{Name: "parted", Check: func(*Env) error { return nil },
		Start: func(ctx context.Context, e *Env, id, dir string, svc Service) (*Instance, error) {
			return &Instance{Stop: fakeCgroup(t, dir), Exited: func() error { return nil },
				Parts: map[string]string{"slow": filepath.Join(dir, "slow"), "fast": filepath.Join(dir, "fast")}}, nil
		}}
	s := &slowPartScorer{loadStopped: &stopped, ranAtEnd: map[string]bool{}}
	cells, err := Plan{Workloads: []Workload{w}, Runtimes: []Runtime{rt}}.Run(context.Background(), &Env{Cgroup: t.TempDir()}, s)
	if err != nil || cells[0].Err != nil {
		t.Fatal(err, cells[0].Err)
	}
	if len(cells[0].Parts) != 2 {
		t.Errorf("parts %v, want slow and fast", cells[0].Parts)
	}
	for name, ran := range s.ranAtEnd {
		if !ran {
			t.Errorf("window of %s ended after the load had stopped", name)
		}
	}
	if len(s.ranAtEnd) != 3 || !stopped.Load() {
		t.Errorf("windows %v, load stopped %v: want 3 windows and the load stopped", s.ranAtEnd, stopped.Load())
	}
}

func TestRunscRole(t *testing.T) {
	for _, c := range []struct{ cmdline, want string }{
		// As runsc v2025+ starts them (argv[0] set by runsc itself).
		{"runsc-sandbox\x00--root=/var/run/docker/runtime-runc/moby\x00--platform=systrap\x00boot\x00--bundle=/run/x\x00abc\x00", "sentry"},
		{"runsc-gofer\x00--root=/var/run/docker/runtime-runc/moby\x00gofer\x00--bundle=/run/x\x00", "gofer"},
		// A runsc that keeps its own name.
		{"/usr/local/bin/runsc\x00--debug\x00boot\x00--bundle\x00/b\x00", "sentry"},
		// runsc re-executing itself through /proc/self/exe.
		{"/proc/self/exe\x00gofer\x00", "gofer"},
		{"redis-server\x00*:6379\x00", ""},
		// A workload that names the subcommands is not runsc.
		{"/bin/sh\x00-c\x00boot\x00", ""},
		{"", ""},
		{"\x00", ""},
	} {
		if got := runscRole([]byte(c.cmdline)); got != c.want {
			t.Errorf("runscRole(%q) = %q, want %q", c.cmdline, got, c.want)
		}
	}
}

// fakeCgroup gives a test's cgroup directory the cpu.stat of an idle
// cgroup, and makes the wait for quiet short. It returns the instance's
// Stop, which removes the file again (RemoveCgroup only rmdirs).
func fakeCgroup(t *testing.T, dir string) func() error {
	span := quietSpan
	quietSpan = 20 * time.Millisecond
	t.Cleanup(func() { quietSpan = span })
	stat := filepath.Join(dir, "cpu.stat")
	if err := os.WriteFile(stat, []byte("usage_usec 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() error { return os.Remove(stat) }
}

func TestProcStat(t *testing.T) {
	state, parent, ok := procStat(strconv.Itoa(os.Getpid()))
	if !ok || parent != strconv.Itoa(os.Getppid()) || (state != "R" && state != "S") {
		t.Errorf("procStat(self) = %q, %q, %v; want R or S, %d, true", state, parent, ok, os.Getppid())
	}
	if zombie(strconv.Itoa(os.Getpid())) {
		t.Error("this process is a zombie")
	}
	if _, _, ok := procStat("999999999"); ok || !zombie("999999999") {
		t.Error("a process that does not exist is there")
	}
}

func TestDescribeSeccomp(t *testing.T) {
	def, err := DockerSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	custom := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActAllow}}}
	for _, tc := range []struct {
		s    *specs.LinuxSeccomp
		want string
	}{
		{nil, "no seccomp filter"},
		{def, "Docker's default seccomp profile"},
		{custom, "a custom seccomp profile (2 system calls allowed, default action SCMP_ACT_ERRNO)"},
	} {
		if got := describeSeccomp(tc.s); got != tc.want {
			t.Errorf("describeSeccomp: %q, want %q", got, tc.want)
		}
	}
}

func TestDemuxLogs(t *testing.T) {
	frame := func(stream byte, s string) []byte {
		return append([]byte{stream, 0, 0, 0, 0, 0, 0, byte(len(s))}, s...)
	}
	in := append(append(frame(1, "one\n"), frame(2, "two\n")...), frame(1, "three")...)
	if got := demuxLogs(in); got != "one\ntwo\nthree" {
		t.Errorf("demuxLogs: %q", got)
	}
	if got := demuxLogs([]byte("plain text")); got != "plain text" {
		t.Errorf("demuxLogs of text: %q", got)
	}
	if got := demuxLogs(append(frame(1, "ok\n"), 1, 0, 0, 0, 0, 0, 0, 9, 'x')); got != "ok\n\x01\x00\x00\x00\x00\x00\x00\x09x" {
		t.Errorf("demuxLogs of a cut frame: %q", got)
	}
}

// nft list tables after dockerd 20.10 (iptables-nft) started on a machine
// with no firewall.
const nftTables = "table ip nat\ntable ip filter\ntable ip6 nat\ntable ip6 filter\n"

func TestParseTables(t *testing.T) {
	if got, want := parseTables(nftTables), []string{"ip nat", "ip filter", "ip6 nat", "ip6 filter"}; !slices.Equal(got, want) {
		t.Errorf("parseTables = %q, want %q", got, want)
	}
	if got := parseTables(""); got == nil || len(got) != 0 {
		t.Errorf("parseTables of no tables = %#v, want an empty, non-nil list (saveTables ran)", got)
	}
}

func FuzzParseTables(f *testing.F) {
	f.Add(nftTables)
	f.Add("table inet x\n\ttable bridge y\ntable\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, tb := range parseTables(s) {
			// Each is "FAMILY NAME", pasted after `delete table`.
			if f := strings.Fields(tb); len(f) != 2 || f[0]+" "+f[1] != tb {
				t.Errorf("table %q from %q", tb, s)
			}
		}
	})
}

func TestDaemonRole(t *testing.T) {
	for _, c := range []struct{ comm, parent, want string }{
		{"dockerd", "", "dockerd"},
		{"containerd", "", "containerd"},
		// comm holds 15 bytes: containerd-shim-runc-v2, -runsc-v1.
		{"containerd-shim", "", "shim"},
		{"docker-proxy", "", "proxy"},
		// A daemon's child takes its parent's role; anything else stays.
		{"iptables", "dockerd", "dockerd"},
		{"runc", "", ""},
		{"containerd-foo", "", ""},
	} {
		if got := daemonRole(proc{comm: c.comm, parentRole: c.parent}); got != c.want {
			t.Errorf("daemonRole(%q, parent %q) = %q, want %q", c.comm, c.parent, got, c.want)
		}
	}
}

// TestSplitProcs splits a fake cgroup (a directory whose cgroup.procs
// lists real processes, named as Docker's daemons are) by daemonRole.
func TestSplitProcs(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	bin := t.TempDir()
	var pids []string
	for _, name := range []string{"dockerd", "containerd-shim-runc-v2", "other"} {
		b, err := os.ReadFile(sleep)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
		c := exec.Command(filepath.Join(bin, name), "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		pids = append(pids, strconv.Itoa(c.Process.Pid))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strings.Join(pids, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _, err := splitProcs(dir, daemonRoles, daemonRole)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"dockerd": filepath.Join(dir, "dockerd"), "shim": filepath.Join(dir, "shim")}
	if diff := cmp.Diff(want, s.parts()); diff != "" {
		t.Errorf("parts (-want +got):\n%s", diff)
	}
	for role, pid := range map[string]string{"dockerd": pids[0], "shim": pids[1]} {
		b, err := os.ReadFile(filepath.Join(dir, role, "cgroup.procs"))
		if err != nil || strings.TrimSpace(string(b)) != pid {
			t.Errorf("%s/cgroup.procs = %q, %v; want %s", role, b, err, pid)
		}
	}
	// The roles that got no process leave no cgroup behind.
	for _, role := range []string{"containerd", "proxy"} {
		if _, err := os.Stat(filepath.Join(dir, role)); err == nil {
			t.Errorf("%s: a cgroup for a role no process has", role)
		}
	}
	str := s.String()
	for _, w := range []string{"dockerd " + pids[0] + " dockerd;", "shim " + pids[1] + " containerd-shim;", "containerd none;", pids[2] + " other"} {
		if !strings.Contains(str, w) {
			t.Errorf("String() = %q, want it to hold %q", str, w)
		}
	}
}
