package symbolize

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// gccFixture compiles testdata/fixture with gcc -O2 -g -gdwarf-5.
func gccFixture(t testing.TB) string {
	t.Helper()
	return compileFixture(t, t.TempDir(), "gcc", "5").path
}

// snapshot renders every function of ix for comparisons.
func snapshot(ix *Index) []string {
	var out []string
	for f := range ix.All() {
		own, inl := f.Lines()
		out = append(out, f.Name+" "+f.File+" "+fmtLine(own)+" | "+fmtLine(inl))
	}
	return out
}

func fmtLine(ls []Line) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.File + ":" + strconv.Itoa(l.Line) + " ")
	}
	return b.String()
}

func TestIndexRoundTrip(t *testing.T) {
	ix, err := Build(gccFixture(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := ix.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadIndex(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(snapshot(ix), snapshot(back)); d != "" {
		t.Errorf("index changed in a write/read round trip (-built +read):\n%s", d)
	}
	if back.BuildID() != ix.BuildID() || back.BuildID() == "" || back.Text() != ix.Text() {
		t.Errorf("build-id/text %q %#x, want %q %#x", back.BuildID(), back.Text(), ix.BuildID(), ix.Text())
	}
	for f := range ix.All() {
		if g := back.FuncAt(f.Entry); g == nil || g.Name != f.Name || g.Entry != f.Entry {
			t.Errorf("FuncAt(%#x) after reload = %v, want %s", f.Entry, g, f.Name)
		}
	}
	// Damage is an error, never a panic or a silently wrong index.
	good := buf.Bytes()
	for _, c := range []struct {
		name string
		mut  func([]byte) []byte
		want string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }, "truncated"},
		{"flipped bit", func(b []byte) []byte { b[len(b)/2] ^= 4; return b }, "checksum"},
		{"other version", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 99); return b }, "version 99"},
		{"not an index", func(b []byte) []byte { return []byte("\x7fELF") }, "not a hapscope index"},
	} {
		_, err := ReadIndex(c.mut(bytes.Clone(good)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func TestOpenCachesByBuildID(t *testing.T) {
	vm := gccFixture(t)
	built, err := Build(vm, nil)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	k := Kernel{Release: "fixture", BuildID: built.BuildID()}
	calls := 0
	ix, err := Open(context.Background(), Options{VMLinux: vm, Kernel: k, CacheDir: cache, Progress: func(done, total int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Error("Progress was never called while building")
	}
	if _, err := os.Stat(cachePath(cache, k.BuildID)); err != nil {
		t.Fatalf("index not cached: %v", err)
	}
	// Without a vmlinux, the build-id finds the cached index.
	again, err := Open(context.Background(), Options{Kernel: k, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(snapshot(ix), snapshot(again)); d != "" {
		t.Errorf("cached index differs (-built +cached):\n%s", d)
	}
	// A vmlinux of another build is refused, naming both build-ids.
	_, err = Open(context.Background(), Options{VMLinux: vm, Kernel: Kernel{Release: "x", BuildID: "0123abcd"}, CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), "0123abcd") || !strings.Contains(err.Error(), k.BuildID) {
		t.Errorf("mismatched build-id: err = %v, want both build-ids named", err)
	}
	// Nothing to find: the error says what to install.
	_, err = Open(context.Background(), Options{Kernel: Kernel{Release: "no-such-release", BuildID: "feed"}, CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "--vmlinux") {
		t.Errorf("missing debug info: err = %v, want a hint", err)
	}
}

func TestOpenDebuginfod(t *testing.T) {
	vm := gccFixture(t)
	data, err := os.ReadFile(vm)
	if err != nil {
		t.Fatal(err)
	}
	built, err := Build(vm, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		if r.URL.Path != "/buildid/"+built.BuildID()+"/debuginfo" {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	defer srv.Close()
	t.Setenv("DEBUGINFOD_URLS", srv.URL+"/missing "+srv.URL)
	cache := t.TempDir()
	ix, err := Open(context.Background(), Options{Kernel: Kernel{Release: "no-such-release", BuildID: built.BuildID()}, CacheDir: cache})
	if err != nil {
		t.Fatalf("%v (requests %v)", err, hits)
	}
	if d := cmp.Diff(snapshot(built), snapshot(ix)); d != "" {
		t.Errorf("debuginfod index differs:\n%s", d)
	}
	if len(hits) != 2 {
		t.Errorf("requests %v, want the first server tried, then the second", hits)
	}
	if _, err := os.Stat(filepath.Join(cache, "debuginfod", built.BuildID(), "vmlinux")); err != nil {
		t.Errorf("download not kept: %v", err)
	}
}

func TestKASLROffset(t *testing.T) {
	ix, err := Build(gccFixture(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ix.text = 0x1000 // the fixture has no _text: pretend
	k := Kernel{Text: 0x1000 + 0x2a00000}
	off := k.Offset(ix)
	for f := range ix.All() {
		if f.Estimated {
			continue
		}
		if g := ix.FuncAt(f.Entry + 0x2a00000 - off); g != f {
			t.Errorf("runtime %#x → %v, want %s", f.Entry+0x2a00000, g, f.Name)
		}
	}
	if (Kernel{}).Offset(ix) != 0 {
		t.Error("unknown runtime _text must give offset 0")
	}
}

func TestBuildIDFromNotes(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b []byte
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	// As in /sys/kernel/notes: a Xen note, then the GNU build-id.
	b := append(note("Xen", 6, []byte{1, 2, 3, 4}), note("GNU", 3, []byte{0xde, 0xad, 0xbe, 0xef, 0x01})...)
	if got := buildIDFromNotes(b, binary.LittleEndian); got != "deadbeef01" {
		t.Errorf("build-id %q, want deadbeef01", got)
	}
	if got := buildIDFromNotes(b[:len(b)-6], binary.LittleEndian); got != "" {
		t.Errorf("truncated notes gave %q", got)
	}
}

func TestParseKallsymsAndEstimate(t *testing.T) {
	in := `ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81001000 t foo.isra.0
ffffffff81001100 T bar
ffffffff81001400 d some_data
ffffffff81001400 T baz
ffffffffc0000000 t modfn	[ext4]
`
	syms, err := ParseKallsyms(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(syms) != 6 || syms[5].Module != "ext4" {
		t.Fatalf("symbols %+v", syms)
	}
	ix, err := Estimate(syms)
	if err != nil {
		t.Fatal(err)
	}
	foo := ix.Lookup("foo")
	if len(foo) != 1 || !foo[0].Estimated || foo[0].Size() != 0x100 {
		t.Fatalf("foo: %+v", foo)
	}
	if got, want := foo[0].LineCount(), int(estimateLines(0x100)); got != want || got < 1 {
		t.Errorf("foo LineCount %d, want %d", got, want)
	}
	if own, inl := foo[0].Lines(); len(own)+len(inl) != 0 {
		t.Error("an estimated function must not claim exact lines")
	}
	if f := ix.FuncAt(0xffffffff81001200); f == nil || f.Name != "bar" {
		t.Errorf("FuncAt inside bar = %v", f)
	}
	if ix.Text() != 0xffffffff81000000 {
		t.Errorf("text %#x", ix.Text())
	}
	if _, err := ParseKallsyms(strings.NewReader("zz T x\n")); err == nil {
		t.Error("bad address accepted")
	}
}

// TestCompressedDWARF: SHF_COMPRESSED debug sections (gcc -gz=zlib, as
// CONFIG_DEBUG_INFO_COMPRESSED builds) give the same index. (This gcc has no
// zstd; debug/elf reads both.)
func TestCompressedDWARF(t *testing.T) {
	dir := t.TempDir()
	plain := compileFixture(t, dir, "gcc", "5").path
	zlib := filepath.Join(dir, "zlib")
	cmd := exec.Command("gcc", "-O2", "-g", "-gdwarf-5", "-gz=zlib", "-o", zlib, "a.c", "b.c")
	cmd.Dir = "testdata/fixture"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc -gz=zlib: %v\n%s", err, out)
	}
	a, err := Build(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(zlib, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(snapshot(a), snapshot(b)); d != "" {
		t.Errorf("compressed DWARF gives another index (-plain +zlib):\n%s", d)
	}
	if len(snapshot(b)) < 6 {
		t.Errorf("only %d functions", len(snapshot(b)))
	}
}
