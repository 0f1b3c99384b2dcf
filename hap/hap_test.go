package hap

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hapscope/hapscope/symbolize"
)

func ln(file string, lines ...int) []symbolize.Line {
	var out []symbolize.Line
	for _, l := range lines {
		out = append(out, symbolize.Line{File: file, Line: l})
	}
	return out
}

func sample() []Func {
	return []Func{
		{Name: "vfs_read", File: "fs/read_write.c", Own: ln("fs/read_write.c", 450, 451, 452), Inlined: ln("include/linux/fs.h", 10, 11)},
		{Name: "ksys_read", File: "fs/read_write.c", Own: ln("fs/read_write.c", 610, 611), Inlined: ln("include/linux/fs.h", 10)},
		{Name: "ext4_file_read_iter", File: "fs/ext4/file.c", Own: ln("fs/ext4/file.c", 120, 121)},
		{Name: "tcp_sendmsg", File: "net/ipv4/tcp.c", Own: ln("net/ipv4/tcp.c", 1300)},
		{Name: "entry_SYSCALL_64", File: "arch/x86/entry/entry_64.S", Estimated: 40},
	}
}

func TestSubsystemOf(t *testing.T) {
	for path, want := range map[string]string{
		"fs/read_write.c":           "fs",
		"fs/ext4/file.c":            "fs/ext4",
		"net/ipv4/tcp.c":            "net/ipv4",
		"drivers/net/virtio_net.c":  "drivers/net",
		"arch/x86/entry/entry_64.S": "arch/x86",
		"include/linux/fs.h":        "include",
		"mm/filemap.c":              "mm",
		"kernel/sched/core.c":       "kernel",
		"":                          "unknown",
		"/usr/src/x.c":              "unknown",
		"built-in.c":                "(top)",
	} {
		if got := SubsystemOf(path); got != want {
			t.Errorf("SubsystemOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// checkInvariants asserts what must hold for every profile.
func checkInvariants(t *testing.T, p *Profile) {
	t.Helper()
	var fn, lines, est int
	for _, s := range p.Subsystems {
		fn += s.Functions
		lines += s.Lines
		est += s.Estimated
	}
	if fn != len(p.Functions) || lines != p.Lines.Union || est != p.Lines.Estimated {
		t.Errorf("subsystem sums (%d functions, %d lines, %d estimated) ≠ totals (%d, %d, %d)", fn, lines, est, len(p.Functions), p.Lines.Union, p.Lines.Estimated)
	}
	if p.Lines.Union > p.Lines.Own+p.Lines.Inlined || p.Lines.Union < p.Lines.Own || p.Lines.Union < p.Lines.Inlined {
		t.Errorf("union %d not within [max(own %d, inlined %d), own+inlined]", p.Lines.Union, p.Lines.Own, p.Lines.Inlined)
	}
	if p.Lines.Total < len(p.Functions) {
		t.Errorf("lines %d < functions %d", p.Lines.Total, len(p.Functions))
	}
	var mfn, mlines, mest int
	for _, m := range p.Modules {
		mfn += m.Functions
		mlines += m.Lines
		mest += m.Estimated
		if m.Lines > p.Lines.Union {
			t.Errorf("module %s: %d lines > the profile's %d", m.Name, m.Lines, p.Lines.Union)
		}
	}
	if mfn != len(p.Functions) || mest != p.Lines.Estimated || mlines < p.Lines.Union {
		t.Errorf("module sums (%d functions, %d lines, %d estimated) do not fit totals (%d, ≤ %d, %d)", mfn, mlines, mest, len(p.Functions), p.Lines.Union, p.Lines.Estimated)
	}
	if err := p.checkModules(); err != nil {
		t.Error(err)
	}
	if d := Diff(p, p); !d.Empty() || len(d.Both) != len(p.Functions) || d.LinesBoth != p.Lines.Union {
		t.Errorf("Diff(p, p) = only A %d, only B %d, both %d functions; want empty", len(d.OnlyA), len(d.OnlyB), len(d.Both))
	}
}

func TestNew(t *testing.T) {
	p := New(Meta{Label: "t", Backend: "fentry"}, sample(), Options{})
	checkInvariants(t, p)
	// By hand: own = 3+2 (fs) + 2 (ext4) + 1 (tcp) = 8, inlined = 2 (fs.h 10, 11),
	// union = 10, estimated = 40.
	want := Lines{Own: 8, Inlined: 2, Union: 10, Estimated: 40, Total: 50}
	if d := cmp.Diff(want, p.Lines); d != "" {
		t.Fatalf("lines (-want +got):\n%s", d)
	}
	if p.Mode != ModeEstimated {
		t.Errorf("mode = %q, want %q when a function's lines are estimated", p.Mode, ModeEstimated)
	}
	if p.Files != 4 {
		t.Errorf("files = %d, want 4", p.Files)
	}
	if got, want := p.Bugs, 50*DefaultDensity/1000; got != want {
		t.Errorf("bugs = %v, want %v", got, want)
	}
	if p.Subsystems[0].Name != "arch/x86" || p.Subsystems[0].Estimated != 40 {
		t.Errorf("largest subsystem = %+v, want arch/x86 with 40 estimated lines", p.Subsystems[0])
	}
	for _, f := range p.Functions {
		if f.Name == "vfs_read" && f.Lines != 5 {
			t.Errorf("vfs_read lines = %d, want 5", f.Lines)
		}
	}
	if p2 := New(Meta{}, sample()[:4], Options{Density: 1}); p2.Mode != ModeExact || p2.Bugs != 10.0/1000 {
		t.Errorf("exact profile: mode %q bugs %v", p2.Mode, p2.Bugs)
	}
}

func TestDiffPartitions(t *testing.T) {
	fa := sample()[:3]
	fb := append(sample()[1:2], sample()[3:]...)
	a := New(Meta{Label: "a"}, fa, Options{})
	b := New(Meta{Label: "b"}, fb, Options{})
	d := Diff(a, b)
	want := &Difference{
		OnlyA: FuncSet{"ext4_file_read_iter (fs/ext4/file.c)", "vfs_read (fs/read_write.c)"},
		OnlyB: FuncSet{"entry_SYSCALL_64 (arch/x86/entry/entry_64.S)", "tcp_sendmsg (net/ipv4/tcp.c)"},
		Both:  FuncSet{"ksys_read (fs/read_write.c)"},
		// a: fs 450-452,610,611 + fs.h 10,11 + ext4 120,121 = 9; b: fs 610,611 + fs.h 10 + tcp 1300 = 4
		LinesOnlyA: 6, LinesOnlyB: 1, LinesBoth: 3,
		Subsystems: []SubsystemDiff{
			{Name: "fs", OnlyA: 3, Both: 2},
			{Name: "fs/ext4", OnlyA: 2},
			{Name: "include", OnlyA: 1, Both: 1},
			{Name: "net/ipv4", OnlyB: 1},
		},
		Modules: []ModuleDiff{{Name: Vmlinux, OnlyA: 2, OnlyB: 2, Both: 1}},
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Fatalf("Diff (-want +got):\n%s", diff)
	}
	// Partition: only A + only B + both = |A ∪ B|, and A = only A + both.
	if d.LinesOnlyA+d.LinesBoth != a.Lines.Union || d.LinesOnlyB+d.LinesBoth != b.Lines.Union {
		t.Fatal("line partition does not add up")
	}
	if len(d.OnlyA)+len(d.Both) != len(a.Functions) || len(d.OnlyB)+len(d.Both) != len(b.Functions) {
		t.Fatal("function partition does not add up")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p := New(Meta{Label: "rt", Release: "6.12.118+deb13-cloud-amd64", Backend: "kprobe.multi",
		Start: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), Window: 10 * time.Second,
		Workload:    &Workload{Command: []string{"redis-benchmark", "-t", "set"}, ExitCode: 0},
		Convergence: []Point{{At: time.Second, Functions: 3}, {At: 2 * time.Second, Functions: 5}}},
		sample(), Options{})
	var b1 bytes.Buffer
	if err := p.WriteJSON(&b1); err != nil {
		t.Fatal(err)
	}
	q, err := ReadJSON(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var b2 bytes.Buffer
	if err := q.WriteJSON(&b2); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(b1.String(), b2.String()); d != "" {
		t.Fatalf("JSON round trip changed the profile (-first +second):\n%s", d)
	}
	if !Diff(p, q).Empty() {
		t.Fatal("Diff(profile, round-tripped profile) is not empty")
	}
	bad := strings.Replace(b1.String(), `"schema": 2`, `"schema": 99`, 1)
	if _, err := ReadJSON(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "schema 99") {
		t.Fatalf("want a schema error, got %v", err)
	}
	bad = strings.Replace(b1.String(), `"union": 10`, `"union": 11`, 1)
	if _, err := ReadJSON(strings.NewReader(bad)); err == nil {
		t.Fatal("inconsistent totals accepted")
	}
}

// JSON without a schema field is not a profile: saying "schema 0 …
// re-measure" sent users after a version problem they did not have.
func TestReadJSONNotAProfile(t *testing.T) {
	for _, in := range []string{`{}`, `null`, `{"label":"x","lines":{}}`, `{"schema":null}`} {
		_, err := ReadJSON(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "not a hapscope profile (no schema field)") || strings.Contains(err.Error(), "re-measure") {
			t.Errorf("ReadJSON(%s): %v; want \"not a hapscope profile\"", in, err)
		}
	}
	for _, in := range []string{`{"schema":0}`, `{"schema":3}`} {
		_, err := ReadJSON(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "re-measure") {
			t.Errorf("ReadJSON(%s): %v; want the schema version message", in, err)
		}
	}
	if _, err := ReadJSON(strings.NewReader(`[1,2]`)); err == nil {
		t.Error("ReadJSON accepted an array")
	}
}

func FuzzReadJSON(f *testing.F) {
	var b bytes.Buffer
	New(Meta{Label: "f"}, sample(), Options{}).WriteJSON(&b)
	f.Add(b.String())
	f.Add(`{"schema":1}`)
	f.Add(`{"schema":2}`)
	f.Add(`{"schema":1,"functions":[{"name":"a","lines":1}]}`)
	f.Add(`{"schema":2,"functions":[{"name":"a","module":"m","lines":0}],"modules":[{"name":"m","functions":1}]}`)
	f.Add(`{}`)
	f.Add(`null`)
	f.Add(`{"schema":0}`)
	f.Add(`{"schema":1,"line_set":{"a":[2,1]},"lines":{"union":2,"total":2}}`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ReadJSON(strings.NewReader(s))
		if err != nil {
			return
		}
		// What ReadJSON accepts must survive another round trip.
		var out bytes.Buffer
		if err := p.WriteJSON(&out); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadJSON(&out); err != nil {
			t.Fatalf("accepted profile does not read back: %v", err)
		}
		var txt bytes.Buffer
		p.WriteText(&txt)
	})
}

// externalRefs lists what an HTML page would fetch from elsewhere: src,
// href, srcset, action and poster attributes and CSS url() / @import
// values that are absolute (scheme:) or scheme-relative (//host) URLs,
// data: URLs excepted. xmlns attributes name a namespace; nothing fetches
// them.
func externalRefs(html string) []string {
	var out []string
	external := func(v string) bool {
		v = strings.ToLower(strings.Trim(strings.TrimSpace(v), `"'`))
		if strings.HasPrefix(v, "data:") || strings.HasPrefix(v, "#") {
			return false
		}
		return strings.HasPrefix(v, "//") || regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`).MatchString(v)
	}
	attr := regexp.MustCompile(`(?i)\s(?:src|href|xlink:href|srcset|action|poster|data)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)
	for _, m := range attr.FindAllStringSubmatch(html, -1) {
		if external(m[1]) {
			out = append(out, m[0])
		}
	}
	css := regexp.MustCompile(`(?i)(?:url\(\s*("[^"]*"|'[^']*'|[^)]*)\)|@import\s+("[^"]*"|'[^']*'))`)
	for _, m := range css.FindAllStringSubmatch(html, -1) {
		if external(m[1] + m[2]) {
			out = append(out, m[0])
		}
	}
	return out
}

// The self-containment check must be able to fail: every kind of external
// reference is caught, and the SVG namespace alone is not one.
func TestExternalRefs(t *testing.T) {
	for _, page := range []string{
		`<img src="https://example.org/x.png">`,
		`<img src=http://example.org/x.png>`,
		`<link rel="stylesheet" href="//cdn.example.org/a.css">`,
		`<svg xmlns="http://www.w3.org/2000/svg"><image href="http://example.org/i.png"/></svg>`,
		`<svg xmlns="http://www.w3.org/2000/svg"><use xlink:href='https://example.org/s.svg#a'/></svg>`,
		`<div style="background:url(http://example.org/b.png)"></div>`,
		`<style>@import "https://example.org/c.css";</style>`,
		`<style>body{background:url( 'HTTPS://example.org/d.png' )}</style>`,
		`<a href="ftp://example.org/">x</a>`,
	} {
		if refs := externalRefs(page); len(refs) != 1 {
			t.Errorf("externalRefs(%s) = %q, want one reference", page, refs)
		}
	}
	for _, page := range []string{
		`<svg id="bars" xmlns="http://www.w3.org/2000/svg" width="900"></svg>`,
		`<a href="#files">files</a><img src="data:image/png;base64,AAAA">`,
		`<p>see http://example.org in the text</p>`,
	} {
		if refs := externalRefs(page); len(refs) != 0 {
			t.Errorf("externalRefs(%s) = %q, want none", page, refs)
		}
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	p := New(Meta{Label: "txt", Backend: "fentry"}, sample(), Options{})
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"txt: 5 functions, 50 lines", "arch/x86", "fs/ext4", "total"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteHTML(t *testing.T) {
	a := New(Meta{Label: "native", Convergence: []Point{{At: time.Second, Functions: 2}, {At: 2 * time.Second, Functions: 5}}}, sample(), Options{})
	b := New(Meta{Label: "runc <x>", Convergence: []Point{{At: time.Second, Functions: 1}, {At: 3 * time.Second, Functions: 3}}}, sample()[1:4], Options{})
	var out bytes.Buffer
	if err := WriteHTML(&out, a, b); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	if strings.Contains(html, "<script") {
		t.Fatal("report must be without scripts")
	}
	if refs := externalRefs(html); len(refs) > 0 {
		t.Fatalf("report must be self-contained; it references %q", refs)
	}
	if strings.Contains(html, "runc <x>") {
		t.Fatal("labels are not escaped")
	}
	bars := regexp.MustCompile(`(?s)<g class="bar" data-profile="([^"]*)" data-total="(\d+)".*?</g>`).FindAllStringSubmatch(html, -1)
	if len(bars) != 2 {
		t.Fatalf("%d bars, want 2", len(bars))
	}
	for i, p := range []*Profile{a, b} {
		sum := 0
		for _, m := range regexp.MustCompile(`data-lines="(\d+)"`).FindAllStringSubmatch(bars[i][0], -1) {
			n, _ := strconv.Atoi(m[1])
			sum += n
		}
		if bars[i][2] != strconv.Itoa(p.Lines.Total) || sum != p.Lines.Total {
			t.Errorf("bar %d: total %s, segments sum %d, want %d", i, bars[i][2], sum, p.Lines.Total)
		}
	}
	if strings.Contains(html, `id="modules"`) {
		t.Error("a report of vmlinux profiles has a module table")
	}
	if n := strings.Count(html, `<polyline class="curve"`); n != 2 {
		t.Errorf("%d convergence curves, want 2", n)
	}
	if err := WriteHTML(&out); err == nil {
		t.Error("WriteHTML without profiles must fail")
	}
}
