// Package nameset holds set operations on function-name sets, shared by the
// pruning lab tests and the overhead comparison.
package nameset

import "slices"

// Minus returns the names that are keys of a and not true in b, sorted.
func Minus(a, b map[string]bool) []string {
	var out []string
	for n := range a {
		if !b[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
