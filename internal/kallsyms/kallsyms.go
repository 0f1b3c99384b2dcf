// Package kallsyms parses /proc/kallsyms. It is the one parser that coverage
// (the attach catalogue) and symbolize (size-based line estimates) share, so
// that both accept and reject the same lines.
package kallsyms

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// Symbol is one line of /proc/kallsyms. It is comparable, so it can be a map
// key.
type Symbol struct {
	Addr   uint64
	Type   byte   // t, T, d, …
	Name   string // without module suffix
	Module string // "" for vmlinux
}

// IsText reports whether typ is a text (code) symbol type: t or T.
func IsText(typ byte) bool { return typ == 't' || typ == 'T' }

// Parse reads /proc/kallsyms ("ADDR TYPE NAME [MODULE]"), in file order.
// Lines that do not have that shape are an error: the file format is fixed.
// Blank lines are skipped. keep, if not nil, selects the symbols to return by
// type and module; a nil keep returns all.
func Parse(r io.Reader, keep func(typ byte, module string) bool) ([]Symbol, error) {
	var out []Symbol
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 3 || len(f) > 4 || len(f[1]) != 1 {
			return nil, fmt.Errorf("kallsyms line %d: want ADDR TYPE NAME [MODULE], got %q", n, line)
		}
		addr, err := strconv.ParseUint(string(f[0]), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %d: address: %w", n, err)
		}
		s := Symbol{Addr: addr, Type: f[1][0]}
		if len(f) == 4 {
			m := f[3]
			if len(m) < 3 || m[0] != '[' || m[len(m)-1] != ']' {
				return nil, fmt.Errorf("kallsyms line %d: module %q not in brackets", n, m)
			}
			s.Module = string(m[1 : len(m)-1])
		}
		if keep != nil && !keep(s.Type, s.Module) {
			continue
		}
		s.Name = string(f[2])
		out = append(out, s)
	}
	return out, sc.Err()
}
