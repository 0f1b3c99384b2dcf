package hap

import (
	"cmp"
	"slices"

	"github.com/hapscope/hapscope/symbolize"
)

// Difference is what two profiles A and B drive: what only A does, only B,
// and both. Functions are keyed by name and defining file.
type Difference struct {
	OnlyA, OnlyB, Both FuncSet
	// Lines partitions the exact lines of A ∪ B the same way.
	LinesOnlyA, LinesOnlyB, LinesBoth int
	// Subsystems compares exact lines per subsystem.
	Subsystems []SubsystemDiff
}

// FuncSet is a sorted list of function keys ("name" or "name (file)").
type FuncSet []string

// SubsystemDiff compares one subsystem's exact lines in A and B.
type SubsystemDiff struct {
	Name         string
	OnlyA, OnlyB int
	Both         int
}

// Empty reports whether A and B drive the same functions and lines.
func (d *Difference) Empty() bool {
	return len(d.OnlyA) == 0 && len(d.OnlyB) == 0 && d.LinesOnlyA == 0 && d.LinesOnlyB == 0
}

func funcKey(f Func) string {
	if f.File == "" {
		return f.Name
	}
	return f.Name + " (" + f.File + ")"
}

// Diff compares a and b.
func Diff(a, b *Profile) *Difference {
	d := &Difference{}
	ka, kb := map[string]bool{}, map[string]bool{}
	for _, f := range a.Functions {
		ka[funcKey(f)] = true
	}
	for _, f := range b.Functions {
		kb[funcKey(f)] = true
	}
	for k := range ka {
		if kb[k] {
			d.Both = append(d.Both, k)
		} else {
			d.OnlyA = append(d.OnlyA, k)
		}
	}
	for k := range kb {
		if !ka[k] {
			d.OnlyB = append(d.OnlyB, k)
		}
	}
	slices.Sort(d.OnlyA)
	slices.Sort(d.OnlyB)
	slices.Sort(d.Both)

	la, lb := a.lineKeys(), b.lineKeys()
	subs := map[string]*SubsystemDiff{}
	sub := func(l symbolize.Line) *SubsystemDiff {
		n := SubsystemOf(l.File)
		s := subs[n]
		if s == nil {
			s = &SubsystemDiff{Name: n}
			subs[n] = s
		}
		return s
	}
	for l := range la {
		if lb[l] {
			d.LinesBoth++
			sub(l).Both++
		} else {
			d.LinesOnlyA++
			sub(l).OnlyA++
		}
	}
	for l := range lb {
		if !la[l] {
			d.LinesOnlyB++
			sub(l).OnlyB++
		}
	}
	for _, s := range subs {
		d.Subsystems = append(d.Subsystems, *s)
	}
	slices.SortFunc(d.Subsystems, func(x, y SubsystemDiff) int {
		return cmp.Or(cmp.Compare(y.OnlyA+y.OnlyB, x.OnlyA+x.OnlyB), cmp.Compare(x.Name, y.Name))
	})
	return d
}
