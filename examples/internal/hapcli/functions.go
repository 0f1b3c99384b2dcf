package hapcli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hapscope/hapscope/coverage"
)

// ParseFunctionList reads a list of kernel function names: one per line,
// blank lines and text after '#' ignored. A line with more than one word is
// an error (a name has no spaces), as is a repeated name.
func ParseFunctionList(r io.Reader) ([]string, error) {
	var names []string
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case len(f) > 1:
			return nil, fmt.Errorf("line %d: %q: one function name per line", n, strings.TrimSpace(line))
		}
		if first, dup := seen[f[0]]; dup {
			return nil, fmt.Errorf("line %d: %s is already on line %d", n, f[0], first)
		}
		seen[f[0]] = n
		names = append(names, f[0])
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no function names")
	}
	return names, nil
}

// limitCatalogue keeps the functions of cat named in names: every
// function of that name, in vmlinux and in modules, and every copy of a
// name several static functions share. A name the catalogue lacks is an
// error: the measurement would silently be of fewer functions than asked
// for.
func limitCatalogue(cat *coverage.Catalogue, names []string) (*coverage.Catalogue, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	sub := cat.Subset(func(f coverage.Function) bool { return want[f.Name] })
	found := map[string]bool{}
	for _, f := range sub.Functions {
		found[f.Name] = true
	}
	var missing []string
	for _, n := range names { // in the file's order
		if !found[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return sub, nil
	}
	return nil, fmt.Errorf("%d of %d functions are not in this kernel's catalogue (%s): misspelt, not on this kernel, in a module not loaded, or not traceable here (hapscope doctor counts what is left out and why)",
		len(missing), len(names), strings.Join(missing[:min(len(missing), 8)], ", "))
}

// catalogue loads the running kernel's catalogue limited to the functions
// named in the file f.Functions; nil when the flag is not set.
func (f *ScoreFlags) catalogue() (*coverage.Catalogue, error) {
	if f.Functions == "" {
		return nil, nil
	}
	file, err := os.Open(f.Functions)
	if err != nil {
		return nil, fmt.Errorf("-functions: %w", err)
	}
	defer file.Close()
	names, err := ParseFunctionList(file)
	if err != nil {
		return nil, fmt.Errorf("-functions %s: %w", f.Functions, err)
	}
	cat, err := coverage.LoadCatalogue()
	if err != nil {
		return nil, err
	}
	sub, err := limitCatalogue(cat, names)
	if err != nil {
		return nil, fmt.Errorf("-functions %s: %w", f.Functions, err)
	}
	return sub, nil
}
