package hap

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes p as indented JSON (schema SchemaVersion).
func (p *Profile) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// ReadJSON reads a profile written by WriteJSON. It reads schema 1
// (profiles of vmlinux alone, written before modules were measured: their
// Modules is the one vmlinux row, Schema becomes SchemaVersion) and
// SchemaVersion. It refuses JSON that is not a profile (no schema field),
// other schema versions, and profiles whose totals contradict their own
// data.
func ReadJSON(r io.Reader) (*Profile, error) {
	var raw json.RawMessage
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if head.Schema == nil {
		return nil, errors.New("read profile: not a hapscope profile (no schema field)")
	}
	var p Profile
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	switch p.Schema {
	case SchemaVersion:
	case 1:
		if p.Modules != nil || slices.ContainsFunc(p.Functions, func(f Func) bool { return f.Module != "" || f.Context != "" }) {
			return nil, errors.New("read profile: schema 1 has no modules or contexts, and this profile has them (file edited?)")
		}
		p.Schema = SchemaVersion
		if len(p.Functions) > 0 {
			p.Modules = []Module{{Name: Vmlinux, Functions: len(p.Functions), Lines: p.Lines.Union, Estimated: p.Lines.Estimated, BuildID: p.BuildID}}
		}
	default:
		return nil, fmt.Errorf("read profile: schema %d, this hapscope reads schemas 1 to %d (re-measure or use a matching hapscope)", p.Schema, SchemaVersion)
	}
	n := 0
	for f, ls := range p.LineSet {
		for i, l := range ls {
			if l <= 0 || (i > 0 && ls[i-1] >= l) {
				return nil, fmt.Errorf("read profile: line set of %s is not strictly increasing positive line numbers", f)
			}
		}
		n += len(ls)
	}
	if n != p.Lines.Union {
		return nil, fmt.Errorf("read profile: line set holds %d lines, totals say %d (file edited or truncated?)", n, p.Lines.Union)
	}
	if p.Lines.Total != p.Lines.Union+p.Lines.Estimated {
		return nil, fmt.Errorf("read profile: total lines %d ≠ union %d + estimated %d", p.Lines.Total, p.Lines.Union, p.Lines.Estimated)
	}
	if err := p.checkModules(); err != nil {
		return nil, fmt.Errorf("read profile: %w (file edited or truncated?)", err)
	}
	if err := p.checkOrigins(); err != nil {
		return nil, fmt.Errorf("read profile: %w (file edited or truncated?)", err)
	}
	return &p, nil
}

// checkOrigins checks p.Origins against the functions' origins: one row
// per origin, with its function count, and Only ≤ Lines ≤ the profile's.
func (p *Profile) checkOrigins() error {
	fns := map[string]int{}
	for _, f := range p.Functions {
		for name := range f.Origins {
			fns[name]++
		}
	}
	seen := map[string]bool{}
	for _, o := range p.Origins {
		switch {
		case seen[o.Name]:
			return fmt.Errorf("origin %q has two rows", o.Name)
		case fns[o.Name] != o.Functions:
			return fmt.Errorf("origin %q: row says %d functions, the function list has %d", o.Name, o.Functions, fns[o.Name])
		case o.Only < 0 || o.Only > o.Lines || o.Lines > p.Lines.Total:
			return fmt.Errorf("origin %q: %d lines (%d only) not within the profile's %d", o.Name, o.Lines, o.Only, p.Lines.Total)
		}
		seen[o.Name] = true
	}
	if len(seen) != len(fns) {
		return fmt.Errorf("%d origins in the function list, %d rows", len(fns), len(seen))
	}
	return nil
}

// checkModules checks p.Modules against p.Functions: one row per module of
// the functions, with their count and estimated lines.
func (p *Profile) checkModules() error {
	fns, est := map[string]int{}, map[string]int{}
	for _, f := range p.Functions {
		n := cmp.Or(f.Module, Vmlinux)
		fns[n]++
		est[n] += f.Estimated
	}
	seen := map[string]bool{}
	for _, m := range p.Modules {
		switch {
		case seen[m.Name]:
			return fmt.Errorf("module %s has two rows", m.Name)
		case fns[m.Name] != m.Functions || est[m.Name] != m.Estimated:
			return fmt.Errorf("module %s: row says %d functions, %d estimated lines; the function list has %d, %d", m.Name, m.Functions, m.Estimated, fns[m.Name], est[m.Name])
		case m.Lines < 0 || m.Lines > p.Lines.Union:
			return fmt.Errorf("module %s: %d lines, not within the profile's %d", m.Name, m.Lines, p.Lines.Union)
		}
		seen[m.Name] = true
	}
	if len(seen) != len(fns) {
		return fmt.Errorf("functions of %d modules, %d module rows", len(fns), len(seen))
	}
	return nil
}

// WriteText writes a human-readable summary and subsystem table, then,
// when the profile has module code, a table of its modules (vmlinux
// included), and, when the functions' contexts are known, how many were
// counted in which.
func (p *Profile) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, p.Summary())
	cpus := ""
	if p.CPUs > 0 {
		cpus = fmt.Sprintf(", %d CPUs", p.CPUs)
	}
	fmt.Fprintf(w, "kernel %s (build-id %s%s), window %s after %s warm-up; misses %d, drops %d in the window (all tasks)\n",
		cmp.Or(p.Release, "unknown"), short(p.BuildID), cpus, p.Window, p.Warmup, p.Misses, p.Drops)
	if p.Workload != nil {
		fmt.Fprintf(w, "workload: %s (exit %d)\n", strings.Join(p.Workload.Command, " "), p.Workload.ExitCode)
		if p.Workload.Runtime != "" {
			fmt.Fprintf(w, "runtime: %s\n", p.Workload.Runtime)
		}
	}
	fmt.Fprintln(tw, "subsystem\tfunctions\tlines\testimated\tshare")
	for _, s := range p.Subsystems {
		share := 0.0
		if p.Lines.Total > 0 {
			share = 100 * float64(s.Lines+s.Estimated) / float64(p.Lines.Total)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f%%\n", s.Name, s.Functions, s.Lines, s.Estimated, share)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t100.0%%\n", len(p.Functions), p.Lines.Union, p.Lines.Estimated)
	if err := tw.Flush(); err != nil {
		return err
	}
	if slices.ContainsFunc(p.Modules, func(m Module) bool { return m.Name != Vmlinux }) {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "module\tfunctions\tlines\testimated\tbuild-id")
		for _, m := range p.Modules {
			id := "-"
			if m.BuildID != "" {
				id = short(m.BuildID)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", m.Name, m.Functions, m.Lines, m.Estimated, id)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(p.Origins) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "origin\tfunctions\tlines\treached through it only")
		for i, o := range p.Origins {
			if i == reportOrigins {
				fmt.Fprintf(tw, "(%d more)\t\t\t\n", len(p.Origins)-i)
				break
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", o.Name, o.Functions, o.Lines, o.Only)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if p.OriginsDropped > 0 {
			fmt.Fprintf(w, "origins of %d calls not recorded (the origin hash was full or busy): counts by origin are low\n", p.OriginsDropped)
		}
	}
	if c := p.contexts(); c != "" {
		fmt.Fprintf(w, "functions by context: %s\n", c)
	}
	return nil
}

// reportOrigins is how many origins WriteText lists, most lines first.
const reportOrigins = 20

// contexts counts the functions by Func.Context ("task 120, task+softirq
// 3"), most first; "" when no function's context is known.
func (p *Profile) contexts() string {
	n := map[string]int{}
	for _, f := range p.Functions {
		if f.Context != "" {
			n[f.Context]++
		}
	}
	keys := slices.Collect(maps.Keys(n))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(n[b], n[a]), cmp.Compare(a, b)) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}

// WriteText writes d as tables: lines by subsystem, and, when A or B has
// module code, functions by module.
func (d *Difference) WriteText(w io.Writer, nameA, nameB string) error {
	fmt.Fprintf(w, "functions: only %s %d, only %s %d, both %d\n", nameA, len(d.OnlyA), nameB, len(d.OnlyB), len(d.Both))
	fmt.Fprintf(w, "lines:     only %s %d, only %s %d, both %d\n", nameA, d.LinesOnlyA, nameB, d.LinesOnlyB, d.LinesBoth)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "subsystem\tonly %s\tonly %s\tboth\n", nameA, nameB)
	for _, s := range d.Subsystems {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.Name, s.OnlyA, s.OnlyB, s.Both)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !slices.ContainsFunc(d.Modules, func(m ModuleDiff) bool { return m.Name != Vmlinux }) {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "module (functions)\tonly %s\tonly %s\tboth\n", nameA, nameB)
	for _, m := range d.Modules {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", m.Name, m.OnlyA, m.OnlyB, m.Both)
	}
	return tw.Flush()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	if id == "" {
		return "unknown"
	}
	return id
}
