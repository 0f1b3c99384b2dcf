package hap

import (
	"cmp"
	"slices"

	"github.com/hapscope/hapscope/symbolize"
)

// Difference is what two profiles A and B drive: what only A does, only B,
// and both. Functions are keyed by name, module and defining file.
type Difference struct {
	OnlyA, OnlyB, Both FuncSet
	// Lines partitions the exact lines of A ∪ B the same way.
	LinesOnlyA, LinesOnlyB, LinesBoth int
	// Subsystems compares exact lines per subsystem.
	Subsystems []SubsystemDiff
	// Modules compares functions per kernel module (vmlinux is named
	// Vmlinux): the partition of OnlyA, OnlyB and Both by module.
	Modules []ModuleDiff
}

// FuncSet is a sorted list of function keys: "name", followed by
// " [module]" for module code and " (file)" when the file is known
// ("veth_xmit [veth] (drivers/net/veth.c)").
type FuncSet []string

// ModuleDiff compares the functions of one module in A and B.
type ModuleDiff struct {
	Name         string
	OnlyA, OnlyB int
	Both         int
}

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
	k := f.Name
	if f.Module != "" {
		k += " [" + f.Module + "]"
	}
	if f.File != "" {
		k += " (" + f.File + ")"
	}
	return k
}

// Diff compares a and b.
func Diff(a, b *Profile) *Difference {
	d := &Difference{}
	ka, kb := map[string]string{}, map[string]string{} // key → module row
	for _, f := range a.Functions {
		ka[funcKey(f)] = cmp.Or(f.Module, Vmlinux)
	}
	for _, f := range b.Functions {
		kb[funcKey(f)] = cmp.Or(f.Module, Vmlinux)
	}
	mods := map[string]*ModuleDiff{}
	mod := func(n string) *ModuleDiff {
		m := mods[n]
		if m == nil {
			m = &ModuleDiff{Name: n}
			mods[n] = m
		}
		return m
	}
	for k, m := range ka {
		if _, ok := kb[k]; ok {
			d.Both = append(d.Both, k)
			mod(m).Both++
		} else {
			d.OnlyA = append(d.OnlyA, k)
			mod(m).OnlyA++
		}
	}
	for k, m := range kb {
		if _, ok := ka[k]; !ok {
			d.OnlyB = append(d.OnlyB, k)
			mod(m).OnlyB++
		}
	}
	for _, m := range mods {
		d.Modules = append(d.Modules, *m)
	}
	slices.SortFunc(d.Modules, func(x, y ModuleDiff) int {
		return cmp.Or(cmp.Compare(y.OnlyA+y.OnlyB, x.OnlyA+x.OnlyB), cmp.Compare(y.Both, x.Both), cmp.Compare(x.Name, y.Name))
	})
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
