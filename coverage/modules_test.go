package coverage

import (
	"slices"
	"strings"
	"testing"
)

const procModules = `dummy 12288 0 - Live 0xffffffffc0a3e000
veth 45056 0 - Live 0xffffffffc0a2f000
overlay 217088 1 - Live 0xffffffffc09c4000
`

func TestParseProcModules(t *testing.T) {
	if got := parseProcModules(procModules); !slices.Equal(got, []string{"dummy", "veth", "overlay"}) {
		t.Errorf("parseProcModules = %q", got)
	}
	if got := parseProcModules("\n  \n"); len(got) != 0 {
		t.Errorf("blank lines gave %q", got)
	}
}

func FuzzParseProcModules(f *testing.F) {
	f.Add(procModules)
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range parseProcModules(s) {
			if m == "" || strings.ContainsAny(m, " \t\n") {
				t.Fatalf("bad module name %q", m)
			}
		}
	})
}
