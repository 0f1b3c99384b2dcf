package hap

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes p as indented JSON (schema SchemaVersion).
func (p *Profile) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// ReadJSON reads a profile written by WriteJSON. It refuses JSON that is
// not a profile (no schema field), other schema versions, and profiles
// whose totals contradict their own data.
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
	if p.Schema != SchemaVersion {
		return nil, fmt.Errorf("read profile: schema %d, this hapscope reads schema %d (re-measure or use a matching hapscope)", p.Schema, SchemaVersion)
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
	return &p, nil
}

// WriteText writes a human-readable summary and subsystem table.
func (p *Profile) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, p.Summary())
	fmt.Fprintf(w, "kernel %s (build-id %s), window %s after %s warm-up; misses %d, drops %d in the window (all tasks)\n",
		cmp.Or(p.Release, "unknown"), short(p.BuildID), p.Window, p.Warmup, p.Misses, p.Drops)
	if p.Workload != nil {
		fmt.Fprintf(w, "workload: %s (exit %d)\n", strings.Join(p.Workload.Command, " "), p.Workload.ExitCode)
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
	return tw.Flush()
}

// WriteText writes d as a table.
func (d *Difference) WriteText(w io.Writer, nameA, nameB string) error {
	fmt.Fprintf(w, "functions: only %s %d, only %s %d, both %d\n", nameA, len(d.OnlyA), nameB, len(d.OnlyB), len(d.Both))
	fmt.Fprintf(w, "lines:     only %s %d, only %s %d, both %d\n", nameA, d.LinesOnlyA, nameB, d.LinesOnlyB, d.LinesBoth)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "subsystem\tonly %s\tonly %s\tboth\n", nameA, nameB)
	for _, s := range d.Subsystems {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.Name, s.OnlyA, s.OnlyB, s.Both)
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
