package hap

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// moduleSample is sample() with module code: veth and overlay functions,
// one of which shares a header line with vmlinux, and a module function
// whose name vmlinux has too.
func moduleSample() []Func {
	return append(sample(),
		Func{Name: "veth_xmit", Module: "veth", File: "drivers/net/veth.c", Own: ln("drivers/net/veth.c", 340, 341), Inlined: ln("include/linux/fs.h", 10)},
		Func{Name: "ovl_open", Module: "overlay", File: "fs/overlayfs/file.c", Own: ln("fs/overlayfs/file.c", 150)},
		Func{Name: "ksys_read", Module: "overlay", File: "fs/overlayfs/file.c", Own: ln("fs/overlayfs/file.c", 160)},
		Func{Name: "ovl_estimated", Module: "overlay", Estimated: 7},
	)
}

func TestNewModules(t *testing.T) {
	p := New(Meta{Label: "m"}, moduleSample(), Options{})
	checkInvariants(t, p)
	want := []Module{
		{Name: Vmlinux, Functions: 5, Lines: 10, Estimated: 40},
		{Name: "overlay", Functions: 3, Lines: 2, Estimated: 7},
		{Name: "veth", Functions: 1, Lines: 3},
	}
	if d := cmp.Diff(want, p.Modules); d != "" {
		t.Errorf("modules (-want +got):\n%s", d)
	}
	// include/linux/fs.h:10 is in vmlinux's and veth's rows, once in the
	// union: 10 + 3 + 2 module lines, 14 distinct.
	if p.Lines.Union != 14 {
		t.Errorf("union %d, want 14", p.Lines.Union)
	}
	if p.Subsystems[0].Name != "arch/x86" {
		t.Errorf("subsystems %+v", p.Subsystems)
	}
	sub := map[string]Subsystem{}
	for _, s := range p.Subsystems {
		sub[s.Name] = s
	}
	if sub["drivers/net"].Lines != 2 || sub["fs/overlayfs"].Lines != 2 || sub["fs/overlayfs"].Functions != 2 || sub["unknown"].Estimated != 7 {
		t.Errorf("module subsystems: %+v", sub)
	}
	// ksys_read of vmlinux and of overlay are two functions.
	var n int
	for _, f := range p.Functions {
		if f.Name == "ksys_read" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d functions named ksys_read, want vmlinux's and overlay's", n)
	}
	var b bytes.Buffer
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"module   functions  lines  estimated  build-id\nvmlinux  5          10     40         -\noverlay  3          2      7          -\nveth     1          3      0          -\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	// A profile of vmlinux alone has no module table.
	b.Reset()
	New(Meta{}, sample(), Options{}).WriteText(&b)
	if strings.Contains(b.String(), "module") {
		t.Errorf("vmlinux-only text has a module table:\n%s", b.String())
	}
}

func TestDiffModules(t *testing.T) {
	a := New(Meta{Label: "a"}, moduleSample(), Options{})
	b := New(Meta{Label: "b"}, sample(), Options{})
	d := Diff(a, b)
	want := []ModuleDiff{{Name: "overlay", OnlyA: 3}, {Name: "veth", OnlyA: 1}, {Name: Vmlinux, Both: 5}}
	if diff := cmp.Diff(want, d.Modules); diff != "" {
		t.Errorf("module diff (-want +got):\n%s", diff)
	}
	wantA := FuncSet{"ksys_read [overlay] (fs/overlayfs/file.c)", "ovl_estimated [overlay]", "ovl_open [overlay] (fs/overlayfs/file.c)", "veth_xmit [veth] (drivers/net/veth.c)"}
	if diff := cmp.Diff(wantA, d.OnlyA); diff != "" {
		t.Errorf("only a (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	if err := d.WriteText(&out, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "module (functions)  only a  only b  both\noverlay             3") {
		t.Errorf("diff text lacks the module table:\n%s", out.String())
	}
}

// The JSON keeps modules and contexts; a schema 1 profile (vmlinux alone)
// still reads, as one vmlinux row.
func TestJSONModules(t *testing.T) {
	funcs := moduleSample()
	funcs[5].Context = "task+softirq"
	p := New(Meta{Label: "rt", BuildID: "abc"}, funcs, Options{})
	var b1, b2 bytes.Buffer
	if err := p.WriteJSON(&b1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"module": "veth"`, `"context": "task+softirq"`, `"modules": [`, `"schema": 2`} {
		if !strings.Contains(b1.String(), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
	q, err := ReadJSON(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	q.WriteJSON(&b2)
	if d := cmp.Diff(b1.String(), b2.String()); d != "" {
		t.Fatalf("round trip (-first +second):\n%s", d)
	}
	bad := strings.Replace(b1.String(), `"functions": 3`, `"functions": 4`, 1)
	if _, err := ReadJSON(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "module overlay") {
		t.Errorf("a module row that contradicts the functions: %v", err)
	}

	// Schema 1: what this hapscope wrote before modules.
	v1 := New(Meta{Label: "old", BuildID: "abc"}, sample(), Options{})
	b1.Reset()
	v1.WriteJSON(&b1)
	old := strings.Replace(b1.String(), `"schema": 2`, `"schema": 1`, 1)
	i, j := strings.Index(old, `  "modules": [`), strings.Index(old, `  "line_set"`)
	old = old[:i] + old[j:]
	q, err = ReadJSON(strings.NewReader(old))
	if err != nil {
		t.Fatalf("schema 1: %v", err)
	}
	if q.Schema != SchemaVersion || len(q.Modules) != 1 || q.Modules[0] != (Module{Name: Vmlinux, Functions: 5, Lines: 10, Estimated: 40, BuildID: "abc"}) {
		t.Errorf("schema 1 read as schema %d, modules %+v", q.Schema, q.Modules)
	}
	if !Diff(v1, q).Empty() {
		t.Error("schema 1 profile differs from the profile it was written from")
	}
	if _, err := ReadJSON(strings.NewReader(strings.Replace(b1.String(), `"schema": 2`, `"schema": 1`, 1))); err == nil || !strings.Contains(err.Error(), "schema 1 has no modules") {
		t.Errorf("schema 1 with modules: %v", err)
	}
}

// estimatedIndexes are a vmlinux and a module index without DWARF:
// vmlinux has vfs_read at 0x1000 and ksys_read at 0x1100 (link-time
// addresses; _text at 0x1000), veth has veth_xmit at 0xc000 and veth_open
// at 0xc100 (runtime addresses).
func estimatedIndexes(t *testing.T) (vmlinux, veth *symbolize.Index) {
	t.Helper()
	syms := []symbolize.Symbol{
		{Addr: 0x1000, Name: "_text"}, {Addr: 0x1000, Name: "vfs_read"}, {Addr: 0x1100, Name: "ksys_read"}, {Addr: 0x1200, Name: "_etext"},
		{Addr: 0xc000, Name: "veth_xmit", Module: "veth"}, {Addr: 0xc100, Name: "veth_open", Module: "veth"}, {Addr: 0xc200, Name: "veth_close", Module: "veth"},
	}
	vm, err := symbolize.Estimate(syms)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := symbolize.EstimateModule(syms, "veth")
	if err != nil {
		t.Fatal(err)
	}
	return vm, mod
}

func TestFromSnapshotModules(t *testing.T) {
	vm, veth := estimatedIndexes(t)
	kern := symbolize.Kernel{Text: 0x1000 + 0x20000} // KASLR: vmlinux runs 0x20000 higher
	hit := func(name, mod string, addr uint64, c coverage.Context) coverage.Hit {
		return coverage.Hit{Function: coverage.Function{Name: name, Module: mod, Addr: addr}, Count: 1, Context: c}
	}
	snap := &coverage.Snapshot{Mode: coverage.Counts, Hits: []coverage.Hit{
		hit("vfs_read", "", 0x21000, coverage.Task),
		hit("veth_xmit", "veth", 0xc000, coverage.Task),
		hit("veth_xmit_alias", "veth", 0xc000, coverage.Softirq), // a second name of the same code
		hit("veth_open", "veth", 0xc100, coverage.Task),
	}}
	asked := map[string]int{}
	opt := Options{Modules: func(m string) (*symbolize.Index, error) {
		asked[m]++
		if m == "veth" {
			return veth, nil
		}
		return nil, errors.New("no such module")
	}}
	p, err := FromSnapshot(snap, vm, kern, Meta{}, opt)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, p)
	if asked["veth"] != 1 || len(asked) != 1 {
		t.Errorf("Options.Modules asked %v, want veth once", asked)
	}
	got := map[string]Func{}
	for _, f := range p.Functions {
		got[funcKey(f)] = f
	}
	if f := got["veth_xmit [veth]"]; f.Hits != 2 || f.Context != "task+softirq" || f.Estimated == 0 {
		t.Errorf("veth_xmit: %+v; want 2 hits in task+softirq, estimated", f)
	}
	if f := got["vfs_read"]; f.Module != "" || f.Context != "task" {
		t.Errorf("vfs_read: %+v", f)
	}
	if len(p.Modules) != 2 || p.Modules[0].Name != "veth" || p.Modules[0].Functions != 2 || p.Modules[0].Lines != 0 || p.Modules[0].Estimated == 0 || p.Mode != ModeEstimated {
		t.Errorf("modules %+v, mode %s; want veth's 2 functions estimated", p.Modules, p.Mode)
	}

	// A module hit that its index does not hold is an error naming the
	// module, as a vmlinux hit outside vmlinux's index is.
	bad := *snap
	bad.Hits = append(slices.Clone(snap.Hits), hit("veth_gone", "veth", 0xd000, coverage.Task), hit("nowhere", "", 0x99000, coverage.Task))
	if _, err := FromSnapshot(&bad, vm, kern, Meta{}, opt); err == nil || !strings.Contains(err.Error(), "1 of 4 measured functions of module veth") || !strings.Contains(err.Error(), "veth_gone@0xd000") || !strings.Contains(err.Error(), "1 of 2 measured vmlinux functions") {
		t.Errorf("unresolved module hit: %v", err)
	}
	// Every module without an index is named.
	bad.Hits = append(slices.Clone(snap.Hits), hit("br_forward", "bridge", 0xe000, coverage.Softirq), hit("ovl_open", "overlay", 0xf000, coverage.Task))
	if _, err := FromSnapshot(&bad, vm, kern, Meta{}, opt); err == nil || strings.Count(err.Error(), "no such module") != 2 {
		t.Errorf("modules without index: %v", err)
	}
	if _, err := FromSnapshot(&bad, vm, kern, Meta{}, Options{}); err == nil || !strings.Contains(err.Error(), "kernel modules veth, bridge, overlay") {
		t.Errorf("no Options.Modules: %v", err)
	}
	// An index of another module is refused.
	wrong := Options{Modules: func(string) (*symbolize.Index, error) { return veth, nil }}
	if _, err := FromSnapshot(&bad, vm, kern, Meta{}, wrong); err == nil || !strings.Contains(err.Error(), `module bridge: the line index given for it is of "veth"`) {
		t.Errorf("index of another module: %v", err)
	}
	// A snapshot of vmlinux alone needs no Options.Modules.
	bad.Hits = snap.Hits[:1]
	if p, err := FromSnapshot(&bad, vm, kern, Meta{}, Options{}); err != nil || len(p.Modules) != 1 || p.Modules[0].Name != Vmlinux {
		t.Errorf("vmlinux alone: %v, %v", p, err)
	}
}

// A Scorer's module indexes: opened once, kept while the module stays
// where it is, opened again when it moves; a module without DWARF fails
// with advice, or is estimated from kallsyms when allowed.
func TestModuleSet(t *testing.T) {
	const release = "6.12.118+deb13-cloud-amd64"
	ko := labtest.ModuleDebugFiles(t, release, "drivers/net/veth.ko")[0]
	t.Setenv("DEBUGINFOD_URLS", "")
	secs := func(base uint64) map[string]uint64 {
		return map[string]uint64{".text": base, ".text.unlikely": base + 0x100000, ".init.text": base + 0x200000, ".exit.text": base + 0x300000}
	}
	base := uint64(0xffffffffc1000000)
	kallsymsRead := 0
	opt := ScoreOptions{ModuleDebug: filepath.Dir(filepath.Dir(filepath.Dir(ko))), Symbolize: symbolize.Options{CacheDir: t.TempDir()}}
	s := newModuleSet(symbolize.Kernel{Release: release}, opt)
	s.sections = func(string) (map[string]uint64, error) { return secs(base), nil }
	s.buildID = func(string) (string, error) { return "", nil }
	s.kallsyms = func() ([]symbolize.Symbol, error) {
		kallsymsRead++
		return []symbolize.Symbol{{Addr: 0xc000, Name: "nf_x", Module: "nosuch"}, {Addr: 0xc100, Name: "nf_y", Module: "nosuch"}}, nil
	}
	ctx := context.Background()
	a, err := s.index(ctx, "veth")
	if err != nil {
		t.Fatal(err)
	}
	f := a.Lookup("veth_xmit")
	if a.Module() != "veth" || len(f) != 1 || f[0].File != "drivers/net/veth.c" || a.FuncAt(f[0].Entry) != f[0] || f[0].Entry < base || f[0].Entry >= base+0x100000 {
		t.Fatalf("veth index: module %q, veth_xmit %+v", a.Module(), f)
	}
	if b, _ := s.index(ctx, "veth"); b != a {
		t.Error("the module's index was opened again although it did not move")
	}
	base += 0x400000
	b, err := s.index(ctx, "veth")
	if err != nil || b == a || b.Lookup("veth_xmit")[0].Entry != f[0].Entry+0x400000 {
		t.Errorf("after the module moved: %v, same index %v", err, b == a)
	}

	_, err = s.index(ctx, "nosuch")
	if !errors.Is(err, symbolize.ErrNoDebugInfo) || !strings.Contains(err.Error(), "module nosuch") || !strings.Contains(err.Error(), "linux-image-"+release+"-dbg has /usr/lib/debug/lib/modules/"+release+"/kernel/**/nosuch.ko") {
		t.Errorf("module without DWARF: %v", err)
	}
	if kallsymsRead != 0 {
		t.Error("estimated without AllowEstimate")
	}
	s.opt.AllowEstimate = true
	est, err := s.index(ctx, "nosuch")
	if err != nil || est.Module() != "nosuch" || est.FuncAt(0xc000) == nil || !est.FuncAt(0xc000).Estimated || kallsymsRead != 1 {
		t.Errorf("estimated module: %v, %v (kallsyms read %d times)", est, err, kallsymsRead)
	}
}

// TestProfileRealModules scores a snapshot of vmlinux and module hits with
// the real module indexes of the lab's Debian kernels (6.12, 6.1): the
// modules a container's network and storage drive (veth, bridge,
// nf_tables, nf_conntrack, overlay), their sections placed at runtime-like
// addresses. vmlinux is estimated from a few symbols: the point is module
// code. Each module is a row of its own, its functions carry its name and
// their lines lie in its source files, which map to their subsystems.
func TestProfileRealModules(t *testing.T) {
	for _, release := range []string{"6.12.118+deb13-cloud-amd64", "6.1.0-57-cloud-amd64"} {
		t.Run(release, func(t *testing.T) { testProfileRealModules(t, release) })
	}
}

func testProfileRealModules(t *testing.T, release string) {
	mods := []struct {
		name, ko, dir, sub string
		funcs              []string // C names; each must be in the module
	}{
		{"veth", "drivers/net/veth.ko", "drivers/net/", "drivers/net", []string{"veth_xmit", "veth_poll"}},
		{"bridge", "net/bridge/bridge.ko", "net/bridge/", "net/bridge", []string{"br_handle_frame", "br_forward", "br_dev_xmit"}},
		{"nf_tables", "net/netfilter/nf_tables.ko", "net/netfilter/", "net/netfilter", []string{"nft_do_chain"}},
		{"nf_conntrack", "net/netfilter/nf_conntrack.ko", "net/netfilter/", "net/netfilter", []string{"nf_conntrack_in"}},
		{"overlay", "fs/overlayfs/overlay.ko", "fs/overlayfs/", "fs/overlayfs", []string{"ovl_open", "ovl_read_iter"}},
	}
	var rels []string
	for _, m := range mods {
		rels = append(rels, m.ko)
	}
	kos := labtest.ModuleDebugFiles(t, release, rels...)
	cache := t.TempDir()
	// vmlinux has a function named as a module's (here): two functions.
	vm, err := symbolize.Estimate([]symbolize.Symbol{{Addr: 0x1000, Name: "_text"}, {Addr: 0x1000, Name: "vfs_read"}, {Addr: 0x1100, Name: "veth_xmit"}, {Addr: 0x1200, Name: "_etext"}})
	if err != nil {
		t.Fatal(err)
	}
	index := map[string]*symbolize.Index{}
	snap := &coverage.Snapshot{Mode: coverage.Pruned, Hits: []coverage.Hit{
		{Function: coverage.Function{Name: "vfs_read", Addr: 0x1000}, Count: 1, Context: coverage.Task},
		{Function: coverage.Function{Name: "veth_xmit", Addr: 0x1100}, Count: 1, Context: coverage.Task},
	}}
	want := map[string]Func{} // key → expected module, file prefix, context
	for i, m := range mods {
		base := 0xffffffffc0000000 + uint64(i)*0x1000000
		secs := map[string]uint64{".text": base, ".text.unlikely": base + 0x400000, ".init.text": base + 0x800000, ".exit.text": base + 0xa00000, ".altinstr_replacement": base + 0xc00000, ".altinstr_aux": base + 0xe00000}
		ix, err := symbolize.OpenModule(context.Background(), symbolize.ModuleOptions{Name: m.name, Path: kos[i], Kernel: symbolize.Kernel{Release: release}, Sections: secs, CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		index[m.name] = ix
		for j, name := range m.funcs {
			fs := ix.Lookup(name)
			if len(fs) == 0 {
				t.Fatalf("%s has no function %s", m.name, name)
			}
			f := fs[0]
			c := coverage.Softirq
			if m.name == "overlay" || j == 0 {
				c = coverage.Task
			}
			snap.Hits = append(snap.Hits, coverage.Hit{Function: coverage.Function{Name: f.Symbol, Module: m.name, Addr: f.Entry}, Count: 1, Context: c})
			want[f.Symbol+" ["+m.name+"]"] = Func{Module: m.name, File: m.dir, Context: c.String()}
		}
	}
	// A compiler clone of module code is a function of its own, under its
	// symbol name.
	var clone *symbolize.Function
	for f := range index["bridge"].All() {
		if strings.HasPrefix(f.File, "net/bridge/") && (strings.Contains(f.Symbol, ".isra.") || strings.Contains(f.Symbol, ".constprop.") || strings.Contains(f.Symbol, ".part.")) {
			clone = f
			break
		}
	}
	if clone == nil {
		t.Fatal("bridge has no compiler clone of its own code")
	}
	snap.Hits = append(snap.Hits, coverage.Hit{Function: coverage.Function{Name: clone.Symbol, Module: "bridge", Addr: clone.Entry}, Count: 1, Context: coverage.Softirq})
	want[clone.Symbol+" [bridge]"] = Func{Module: "bridge", File: "net/bridge/", Context: "softirq"}
	// veth_xmit counted in task and softirq context: the same function, once.
	snap.Hits = append(snap.Hits, coverage.Hit{Function: coverage.Function{Name: "veth_xmit", Module: "veth", Addr: index["veth"].Lookup("veth_xmit")[0].Entry}, Count: 1, Context: coverage.Softirq})
	want["veth_xmit [veth]"] = Func{Module: "veth", File: "drivers/net/", Context: "task+softirq"}

	p, err := FromSnapshot(snap, vm, symbolize.Kernel{}, Meta{Label: "container"}, Options{Modules: func(m string) (*symbolize.Index, error) {
		return index[m], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, p)
	if len(p.Functions) != len(want)+2 {
		t.Errorf("%d functions, want %d", len(p.Functions), len(want)+2)
	}
	var xmit []string
	for _, f := range p.Functions {
		if f.Name == "veth_xmit" {
			xmit = append(xmit, f.Module)
		}
	}
	if !slices.Equal(xmit, []string{"", "veth"}) {
		t.Errorf("veth_xmit in %v; want vmlinux's and veth's, two functions", xmit)
	}
	// The lines of each module's functions, from its index.
	modLines := map[string]map[symbolize.Line]bool{}
	for _, f := range p.Functions {
		k := funcKey(Func{Name: f.Name, Module: f.Module})
		if f.Module == "" {
			continue
		}
		w, ok := want[k]
		if !ok {
			t.Errorf("unexpected function %s", k)
			continue
		}
		if !strings.HasPrefix(f.File, w.File) || f.Context != w.Context || f.Estimated != 0 || f.Lines == 0 {
			t.Errorf("%s: file %q, context %q, %d lines (%d estimated); want a file under %s, context %s, exact lines", k, f.File, f.Context, f.Lines, f.Estimated, w.File, w.Context)
		}
		sf := index[f.Module].FuncAt(f.Addr)
		own, inl := sf.Lines()
		if modLines[f.Module] == nil {
			modLines[f.Module] = map[symbolize.Line]bool{}
		}
		for _, l := range append(own, inl...) {
			modLines[f.Module][l] = true
		}
	}
	rows := map[string]Module{}
	for _, m := range p.Modules {
		rows[m.Name] = m
	}
	if len(rows) != len(mods)+1 || rows[Vmlinux].Functions != 2 || rows[Vmlinux].Lines != 0 {
		t.Errorf("module rows %+v; want vmlinux's 2 estimated functions and one row per module", p.Modules)
	}
	for _, m := range mods {
		r := rows[m.name]
		n := len(m.funcs)
		if m.name == "bridge" {
			n++ // the clone
		}
		if r.Functions != n || r.Lines != len(modLines[m.name]) || r.Estimated != 0 || r.BuildID != index[m.name].BuildID() || r.BuildID == "" {
			t.Errorf("%s row %+v; want %d functions, %d lines, none estimated, build-id %s", m.name, r, n, len(modLines[m.name]), index[m.name].BuildID())
		}
	}
	// Source files and subsystems of module code.
	subs := map[string]Subsystem{}
	for _, s := range p.Subsystems {
		subs[s.Name] = s
	}
	for _, m := range mods {
		if s := subs[m.sub]; s.Lines == 0 || s.Functions == 0 {
			t.Errorf("subsystem %s of %s: %+v", m.sub, m.name, s)
		}
	}
	if n := subs["net/netfilter"].Functions; n != 2 {
		t.Errorf("net/netfilter has %d functions, want nft_do_chain and nf_conntrack_in", n)
	}
	if len(p.LineSet["drivers/net/veth.c"]) == 0 {
		t.Error("no line of drivers/net/veth.c")
	}
	for f := range p.LineSet {
		if strings.HasPrefix(f, "/") || strings.HasPrefix(f, ".") || SubsystemOf(f) == "unknown" {
			t.Errorf("line file %q is not a kernel-tree path", f)
		}
	}
	ovl := 0
	for f := range p.LineSet {
		if strings.HasPrefix(f, "fs/overlayfs/") {
			ovl++
		}
	}
	if ovl == 0 {
		t.Error("no line of fs/overlayfs/")
	}
	// Header lines shared by modules count once in the profile.
	sum := 0
	for _, r := range p.Modules {
		sum += r.Lines
	}
	if sum <= p.Lines.Union {
		t.Errorf("module rows sum to %d lines, the profile has %d: no header line shared between modules?", sum, p.Lines.Union)
	}

	// JSON round trip.
	var b1, b2 bytes.Buffer
	if err := p.WriteJSON(&b1); err != nil {
		t.Fatal(err)
	}
	q, err := ReadJSON(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	q.WriteJSON(&b2)
	if d := cmp.Diff(b1.String(), b2.String()); d != "" {
		t.Fatalf("JSON round trip (-first +second):\n%s", d)
	}
	if d := cmp.Diff(p.Modules, q.Modules); d != "" || !Diff(p, q).Empty() {
		t.Errorf("read back: modules (-written +read):\n%s", d)
	}
	var txt, html bytes.Buffer
	p.WriteText(&txt)
	if err := WriteHTML(&html, p); err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if !strings.Contains(txt.String(), "\n"+m.name+" ") || !strings.Contains(html.String(), "<td>"+m.name+"</td>") {
			t.Errorf("text or HTML lacks the row of %s", m.name)
		}
	}
	if !strings.Contains(txt.String(), "functions by context: task ") || !strings.Contains(txt.String(), "task+softirq 1") {
		t.Errorf("text lacks the contexts:\n%s", txt.String())
	}
	t.Logf("%s: %d functions, %d lines; modules %+v", release, len(p.Functions), p.Lines.Total, p.Modules)
}
