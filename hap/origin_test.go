package hap

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hapscope/hapscope/symbolize"
)

// Origins: lines reached through one origin only, and those shared, from
// functions with known lines and origins.
func TestOrigins(t *testing.T) {
	l := func(n int) symbolize.Line { return symbolize.Line{File: "fs/x.c", Line: n} }
	p := New(Meta{Label: "t"}, []Func{
		{Name: "r", File: "fs/x.c", Own: []symbolize.Line{l(1), l(2)}, Origins: map[string]uint64{"read": 5}},
		{Name: "m", File: "fs/x.c", Own: []symbolize.Line{l(2)}, Inlined: []symbolize.Line{l(3)}, Origins: map[string]uint64{"mkdir": 2}},
		{Name: "both", File: "fs/x.c", Own: []symbolize.Line{l(4)}, Origins: map[string]uint64{"read": 1, "mkdir": 1}},
		{Name: "est", File: "fs/y.c", Estimated: 10, Origins: map[string]uint64{"read": 3}},
		{Name: "none", File: "fs/x.c", Own: []symbolize.Line{l(5)}},
	}, Options{})
	want := []Origin{
		{Name: "read", Functions: 3, Lines: 3 + 10, Only: 1 + 10}, // 1, 2, 4 + est; only 1 + est
		{Name: "mkdir", Functions: 2, Lines: 3, Only: 1},          // 2, 3, 4; only 3
	}
	if d := cmp.Diff(want, p.Origins); d != "" {
		t.Errorf("Origins (-want +got):\n%s", d)
	}
	var b bytes.Buffer
	if err := p.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p.Origins, back.Origins); d != "" {
		t.Errorf("origins after a JSON round trip (-want +got):\n%s", d)
	}
	edited := strings.Replace(b.String(), "\"only_lines\": 1\n", "\"only_lines\": 7\n", 1)
	if edited == b.String() {
		t.Fatal("no only_lines of 1 in the JSON")
	}
	if _, err := ReadJSON(strings.NewReader(edited)); err == nil {
		t.Error("ReadJSON accepted an origin row with more only-lines than lines")
	}
	plain := New(Meta{Label: "plain"}, []Func{{Name: "f", Own: []symbolize.Line{l(1)}}}, Options{})
	if plain.Origins != nil {
		t.Error("a profile without attribution has origins")
	}
	var h strings.Builder
	if err := WriteHTML(&h, p, plain); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="origins"`, "<tr><td>read</td><td title=\"3 functions\">13 (11)</td><td title=\"0 functions\">-</td></tr>"} {
		if !strings.Contains(h.String(), want) {
			t.Errorf("report lacks %s", want)
		}
	}
	h.Reset()
	if err := WriteHTML(&h, plain); err != nil || strings.Contains(h.String(), `id="origins"`) {
		t.Errorf("report of a profile without origins has an origins table (err %v)", err)
	}
}
