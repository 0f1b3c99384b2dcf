package kallsyms

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode"
)

// fixture is testdata/kallsyms.txt, lines of a real /proc/kallsyms.
func fixture(t testing.TB) string {
	b, err := os.ReadFile("testdata/kallsyms.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func vmlinuxText(t byte, m string) bool { return m == "" && IsText(t) }

func TestParse(t *testing.T) {
	syms, err := Parse(strings.NewReader(fixture(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(syms) != 31 {
		t.Errorf("got %d symbols, want 31", len(syms))
	}
	want := Symbol{Addr: 0xffffffff816bab70, Type: 'T', Name: "vfs_read"}
	found := false
	for _, s := range syms {
		if s.Name == "vfs_read" {
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
	if last.Module != "__builtin__ftrace" || last.Name != "ftrace_trampoline" {
		t.Errorf("module line parsed as %+v", last)
	}
	text, _ := Parse(strings.NewReader(fixture(t)), vmlinuxText)
	if len(text) != 30 {
		t.Errorf("vmlinux text filter kept %d, want 30", len(text))
	}
}

func TestParseMalformed(t *testing.T) {
	for _, bad := range []string{
		"zz T x\n",
		"ffffffff81000000 TT x\n",
		"ffffffff81000000 T\n",
		"ffffffff81000000 T x mod\n",
		"ffffffff81000000 T x [mod] extra\n",
		"ffffffff81000000 T x []\n",
	} {
		if _, err := Parse(strings.NewReader(bad), nil); err == nil {
			t.Errorf("Parse(%q) accepted malformed input", bad)
		}
	}
	// The error names the line.
	_, err := Parse(strings.NewReader("ffffffff81000000 T _text\n\nzz T x\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error %v does not name line 3", err)
	}
}

func TestIsText(t *testing.T) {
	for _, c := range []byte("tT") {
		if !IsText(c) {
			t.Errorf("IsText(%q) = false", c)
		}
	}
	for _, c := range []byte("dDbBrRwWaAuUvV?") {
		if IsText(c) {
			t.Errorf("IsText(%q) = true", c)
		}
	}
}

// format writes s back as a kallsyms line. The type byte is written as is
// (not with %c, which would UTF-8-encode a byte ≥ 0x80).
func format(s Symbol) string {
	line := fmt.Sprintf("%016x %s %s", s.Addr, []byte{s.Type}, s.Name)
	if s.Module != "" {
		line += "\t[" + s.Module + "]"
	}
	return line + "\n"
}

func hasSpace(s string) bool { return strings.IndexFunc(s, unicode.IsSpace) >= 0 }

func FuzzParseKallsyms(f *testing.F) {
	f.Add(fixture(f))
	f.Add("ffffffff81000000 T _text\n")
	f.Add("ffffffffc0000000 t modfn\t[ext4]\n")
	f.Fuzz(func(t *testing.T, s string) {
		syms, err := Parse(strings.NewReader(s), nil)
		if err != nil {
			return
		}
		for _, k := range syms {
			if k.Name == "" || hasSpace(k.Name) {
				t.Fatalf("bad name %q", k.Name)
			}
			if hasSpace(k.Module) {
				t.Fatalf("bad module %q", k.Module)
			}
			line := format(k)
			again, err := Parse(strings.NewReader(line), nil)
			if err != nil {
				t.Fatalf("%+v formatted as %q does not re-parse: %v", k, line, err)
			}
			if len(again) != 1 || again[0] != k {
				t.Fatalf("%+v formatted as %q re-parses as %+v", k, line, again)
			}
		}
	})
}
