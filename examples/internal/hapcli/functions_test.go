package hapcli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/coverage"
)

func TestParseFunctionList(t *testing.T) {
	names, err := ParseFunctionList(strings.NewReader("# the read path\nksys_read\n\n  vfs_read   # and its helper\n\tfoo.isra.0\n"))
	if err != nil || !slices.Equal(names, []string{"ksys_read", "vfs_read", "foo.isra.0"}) {
		t.Errorf("got %q, %v", names, err)
	}
	for _, bad := range []struct{ in, want string }{
		{"ksys_read vfs_read\n", "line 1"},
		{"a\nb\na\n", "line 3: a is already on line 1"},
		{"# only a comment\n\n", "no function names"},
		{"", "no function names"},
	} {
		if _, err := ParseFunctionList(strings.NewReader(bad.in)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want an error with %q", bad.in, err, bad.want)
		}
	}
}

func FuzzParseFunctionList(f *testing.F) {
	f.Add("ksys_read\n# c\nvfs_read # x\n")
	f.Add("a b\n")
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ParseFunctionList(strings.NewReader(s))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || strings.ContainsAny(n, " \t\n#") || seen[n] {
				t.Fatalf("bad or repeated name %q in %q", n, names)
			}
			seen[n] = true
		}
	})
}

// A name the catalogue lacks fails the measurement instead of silently
// measuring fewer functions than the file asked for.
func TestLimitCatalogue(t *testing.T) {
	cat := &coverage.Catalogue{Functions: []coverage.Function{{Name: "vfs_read", Addr: 0x10}, {Name: "vfs_write", Addr: 0x20}, {Name: "ksys_read", Addr: 0x30}}}
	sub, err := limitCatalogue(cat, []string{"ksys_read", "vfs_read"})
	if err != nil || len(sub.Functions) != 2 || sub.Functions[0].Name != "vfs_read" || sub.Functions[1].Name != "ksys_read" {
		t.Errorf("subset: %+v, %v", sub, err)
	}
	// A name in vmlinux and in a module selects both functions.
	cat.Functions = append(cat.Functions, coverage.Function{Name: "vfs_read", Module: "m", Addr: 0x40})
	sub, err = limitCatalogue(cat, []string{"vfs_read"})
	if err != nil || len(sub.Functions) != 2 || sub.Functions[1].Module != "m" {
		t.Errorf("name in two objects: %+v, %v", sub, err)
	}
	_, err = limitCatalogue(cat, []string{"vfs_read", "vfs_raed", "nope"})
	if err == nil || !strings.Contains(err.Error(), "2 of 3 functions are not in this kernel's catalogue (vfs_raed, nope)") {
		t.Errorf("unknown names: %v", err)
	}
}

// Options reports an unreadable or malformed -functions file before any
// catalogue is loaded (which needs a traceable kernel).
func TestOptionsFunctionsFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "list")
	if err := os.WriteFile(bad, []byte("ksys_read vfs_read\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{bad: "one function name per line", bad + ".missing": "no such file"} {
		f := ScoreFlags{Window: 1, Samples: 1, Functions: file}
		if _, err := f.Options(); err == nil || !strings.Contains(err.Error(), "-functions") || !strings.Contains(err.Error(), want) {
			t.Errorf("-functions %s: %v, want %q", file, err, want)
		}
	}
}
