package matrix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hapscope/hapscope/hap"
)

// Runs is what a study's run of the matrix left: its cells, how long it
// took, and why it holds fewer runs than planned ("" when it does not).
// A study split over several guests (make matrix's lanes) is merged from
// the Runs each left in its directory.
type Runs struct {
	Cells   []Cell
	Took    time.Duration
	Partial string
}

// cellsFile is the record of a directory's Runs, beside the profiles it
// names.
const cellsFile = "cells.json"

type cellsRecord struct {
	Schema  int          `json:"schema"`
	Took    float64      `json:"took_seconds"`
	Partial string       `json:"partial,omitempty"`
	Cells   []cellRecord `json:"cells"`
}

type cellRecord struct {
	Workload string `json:"workload"`
	Runtime  string `json:"runtime"`
	Variant  string `json:"variant,omitempty"`
	Run      int    `json:"run"` // 1-based, as in the profiles' names
	// Profile and Parts name the profiles' files in the same directory.
	Profile  string            `json:"profile,omitempty"`
	Parts    map[string]string `json:"parts,omitempty"`
	Requests int               `json:"requests"`
	LoadErrs int               `json:"load_errors,omitempty"`
	LoadNS   int64             `json:"load_ns"`
	Skipped  string            `json:"skipped,omitempty"`
	Error    string            `json:"error,omitempty"`
}

// ProfileName is the file name of cell c's profile in a study's directory,
// or of its part named part ("" for the cell's own).
func ProfileName(c Cell, part string) string {
	if part == "" {
		return fmt.Sprintf("%s-%s-run%d.json", c.Workload, c.Runtime, c.Run+1)
	}
	return fmt.Sprintf("%s-%s-run%d-%s.json", c.Workload, c.Runtime, c.Run+1, part)
}

// WriteRuns writes dir/cells.json, the record of r that ReadRuns reads
// back. The profiles it names (ProfileName) are the caller's to write.
func WriteRuns(dir string, r Runs) error {
	rec := cellsRecord{Schema: 1, Took: r.Took.Seconds(), Partial: r.Partial, Cells: []cellRecord{}}
	for _, c := range r.Cells {
		cr := cellRecord{Workload: c.Workload, Runtime: c.Runtime, Variant: c.Variant, Run: c.Run + 1,
			Requests: c.Load.Requests, LoadErrs: c.Load.Errors, LoadNS: int64(c.Load.Elapsed), Skipped: c.Skipped}
		if c.Err != nil {
			cr.Error = c.Err.Error()
		}
		if c.Profile != nil {
			cr.Profile = ProfileName(c, "")
		}
		for name := range c.Parts {
			if cr.Parts == nil {
				cr.Parts = map[string]string{}
			}
			cr.Parts[name] = ProfileName(c, name)
		}
		rec.Cells = append(rec.Cells, cr)
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, cellsFile), append(data, '\n'), 0o644)
}

// ReadRuns reads the Runs a study left in dir (cells.json and the
// profiles it names).
func ReadRuns(dir string) (Runs, error) {
	b, err := os.ReadFile(filepath.Join(dir, cellsFile))
	if err != nil {
		return Runs{}, fmt.Errorf("read the study's runs: %w (a directory `hapscope matrix` wrote has one)", err)
	}
	rec, err := decodeRuns(b)
	if err != nil {
		return Runs{}, fmt.Errorf("%s: %w", filepath.Join(dir, cellsFile), err)
	}
	r := Runs{Took: time.Duration(rec.Took * float64(time.Second)), Partial: rec.Partial}
	read := func(name string) (*hap.Profile, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		p, err := hap.ReadJSON(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return p, nil
	}
	for _, cr := range rec.Cells {
		c := Cell{Workload: cr.Workload, Runtime: cr.Runtime, Variant: cr.Variant, Run: cr.Run - 1, Skipped: cr.Skipped,
			Load: LoadResult{Requests: cr.Requests, Errors: cr.LoadErrs, Elapsed: time.Duration(cr.LoadNS)}}
		if cr.Error != "" {
			c.Err = errors.New(cr.Error)
		}
		if cr.Profile != "" {
			if c.Profile, err = read(cr.Profile); err != nil {
				return Runs{}, err
			}
		}
		for name, file := range cr.Parts {
			p, err := read(file)
			if err != nil {
				return Runs{}, err
			}
			if c.Parts == nil {
				c.Parts = map[string]*hap.Profile{}
			}
			c.Parts[name] = p
		}
		r.Cells = append(r.Cells, c)
	}
	return r, nil
}

// decodeRuns decodes and checks cells.json: schema 1, every cell named
// and numbered, every profile a plain file name in the same directory.
func decodeRuns(b []byte) (cellsRecord, error) {
	var rec cellsRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, err
	}
	if rec.Schema != 1 {
		return rec, fmt.Errorf("schema %d, want 1", rec.Schema)
	}
	if rec.Took < 0 || rec.Took > 1e9 {
		return rec, fmt.Errorf("took_seconds %v out of range", rec.Took)
	}
	plain := func(name string) bool {
		return name != "" && name != "." && name != ".." && filepath.Base(name) == name && filepath.IsLocal(name)
	}
	for i, c := range rec.Cells {
		switch {
		case c.Workload == "" || c.Runtime == "":
			return rec, fmt.Errorf("cell %d: no workload or runtime", i)
		case c.Run < 1:
			return rec, fmt.Errorf("cell %d (%s/%s): run %d, want ≥ 1", i, c.Workload, c.Runtime, c.Run)
		case c.Requests < 0 || c.LoadErrs < 0 || c.LoadNS < 0:
			return rec, fmt.Errorf("cell %d (%s/%s): negative load", i, c.Workload, c.Runtime)
		case c.Profile != "" && !plain(c.Profile):
			return rec, fmt.Errorf("cell %d (%s/%s): profile %q is not a file name in the study's directory", i, c.Workload, c.Runtime, c.Profile)
		}
		for name, file := range c.Parts {
			if name == "" || !plain(file) {
				return rec, fmt.Errorf("cell %d (%s/%s): part %q in %q: not a named part in the study's directory", i, c.Workload, c.Runtime, name, file)
			}
		}
	}
	return rec, nil
}

// MergeRuns merges the Runs of studies split over guests (make matrix's
// lanes, which ran side by side): their cells, the longest of their
// times, their reasons for being partial. A cell (workload, runtime and
// run) in two of them is an error: the lanes split the workloads.
func MergeRuns(rs ...Runs) (Runs, error) {
	var m Runs
	type key struct {
		w, r string
		run  int
	}
	seen := map[key]bool{}
	var partial []string
	for _, r := range rs {
		for _, c := range r.Cells {
			k := key{c.Workload, c.Runtime, c.Run}
			if seen[k] {
				return Runs{}, fmt.Errorf("run %d of %s under %s is in two of the studies merged: merge studies of different workloads", c.Run+1, c.Workload, c.Runtime)
			}
			seen[k] = true
			m.Cells = append(m.Cells, c)
		}
		m.Took = max(m.Took, r.Took)
		if r.Partial != "" {
			partial = append(partial, r.Partial)
		}
	}
	m.Partial = strings.Join(partial, "; ")
	return m, nil
}
