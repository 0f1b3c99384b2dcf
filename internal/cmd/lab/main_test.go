package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Two guests' consoles written at once come out as whole lines, each with
// its guest's prefix, in each guest's order, none lost, a last line
// without its newline included.
func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	names := []string{"6.12", "6.1"}
	for _, name := range names {
		w := &prefixWriter{mu: &mu, w: &out, prefix: "[" + name + "] "}
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(w, "%s line ", name) // a line in two writes
				fmt.Fprintf(w, "%d\n", i)
			}
			w.Write([]byte("end"))
			w.Flush()
		})
	}
	wg.Wait()
	next := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var name, name2 string
		var i int
		if _, err := fmt.Sscanf(l, "[%s %s line %d", &name, &name2, &i); err == nil && name == name2+"]" {
			if i != next[name2] {
				t.Errorf("%q: line %d of %s, want %d", l, i, name2, next[name2])
			}
			next[name2] = i + 1
			continue
		}
		if l == "[6.12] end" || l == "[6.1] end" {
			next[l]++
			continue
		}
		t.Errorf("mixed or unprefixed line %q", l)
	}
	for _, name := range names {
		if next[name] != 200 || next["["+name+"] end"] != 1 {
			t.Errorf("%s: %d lines and %d last lines, want 200 and 1", name, next[name], next["["+name+"] end"])
		}
	}
}
