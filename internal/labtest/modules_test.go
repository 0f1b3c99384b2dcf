package labtest

import (
	"strings"
	"testing"
)

func TestParseModulesDep(t *testing.T) {
	in := "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n\nkernel/net/llc/llc.ko.xz:\n"
	deps, err := ParseModulesDep([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b := deps["bridge"]
	if b.File != "kernel/net/bridge/bridge.ko.xz" || strings.Join(b.Deps, " ") != "kernel/net/llc/llc.ko.xz kernel/net/802/stp.ko.xz" {
		t.Errorf("bridge: %+v", b)
	}
	if l, ok := deps["llc"]; !ok || len(l.Deps) != 0 {
		t.Errorf("llc: %+v %v", l, ok)
	}
	for _, bad := range []string{"no colon here\n", ": kernel/x.ko\n", "a b.ko: c.ko\n"} {
		if _, err := ParseModulesDep([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if moduleName("kernel/drivers/net/nf-foo.ko.zst") != "nf_foo" {
		t.Error("moduleName")
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko kernel/c.ko.xz\nkernel/b.ko:\n"))
	f.Add([]byte("# comment\n\n x.ko :y.ko"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseModulesDep(data)
		if err != nil {
			return
		}
		for name, d := range deps {
			if d.File == "" || strings.ContainsAny(d.File, " \t\n") || moduleName(d.File) != name {
				t.Fatalf("entry %q: %+v", name, d)
			}
		}
	})
}
