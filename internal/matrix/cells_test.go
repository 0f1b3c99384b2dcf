package matrix

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hapscope/hapscope/hap"
)

// validProfile is a profile hap.ReadJSON accepts: n lines of one file.
func validProfile(label string, n int) *hap.Profile {
	p := &hap.Profile{Schema: hap.SchemaVersion, Meta: hap.Meta{Label: label}, LineSet: map[string][]int{}}
	for i := 1; i <= n; i++ {
		p.LineSet["kernel/x.c"] = append(p.LineSet["kernel/x.c"], i)
	}
	p.Lines.Union, p.Lines.Total = n, n
	return p
}

func writeStudy(t *testing.T, dir string, r Runs) {
	t.Helper()
	for _, c := range r.Cells {
		ps := map[string]*hap.Profile{"": c.Profile}
		for name, p := range c.Parts {
			ps[name] = p
		}
		for part, p := range ps {
			if p == nil {
				continue
			}
			f, err := os.Create(filepath.Join(dir, ProfileName(c, part)))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.WriteJSON(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	if err := WriteRuns(dir, r); err != nil {
		t.Fatal(err)
	}
}

// A study's runs read back as they were written, and two lanes' studies
// merge into one whose table is theirs side by side.
func TestRunsRoundTripAndMerge(t *testing.T) {
	load := LoadResult{Requests: 500, Errors: 0, Elapsed: 10 * time.Second}
	a := Runs{Took: 50 * time.Minute, Partial: "interrupted after 3 of 4 runs", Cells: []Cell{
		{Workload: "redis-set", Runtime: "native", Run: 0, Profile: validProfile("n", 10), Load: load},
		{Workload: "redis-set", Runtime: "docker", Variant: "", Run: 0, Profile: validProfile("d", 14), Load: load,
			Parts: map[string]*hap.Profile{"container": validProfile("c", 12), "dockerd": validProfile("dd", 3)}},
		{Workload: "redis-set", Runtime: "docker-noseccomp", Variant: "without seccomp", Run: 0, Err: errors.New("load had 3 errors in 9 requests: not scored"),
			Load: LoadResult{Requests: 9, Errors: 3, Elapsed: time.Second}},
		{Workload: "redis-set", Runtime: "kata-qemu", Run: 0, Skipped: "needs /dev/kvm"},
	}}
	b := Runs{Took: 55 * time.Minute, Cells: []Cell{
		{Workload: "node-express", Runtime: "native", Run: 0, Profile: validProfile("e", 20), Load: load},
	}}
	da, db := t.TempDir(), t.TempDir()
	writeStudy(t, da, a)
	writeStudy(t, db, b)
	ra, err := ReadRuns(da)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmp.Options{cmp.Comparer(func(x, y error) bool { return (x == nil) == (y == nil) && (x == nil || x.Error() == y.Error()) })}
	if diff := cmp.Diff(a, ra, opts); diff != "" {
		t.Errorf("runs read back (-written +read):\n%s", diff)
	}
	rb, err := ReadRuns(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MergeRuns(ra, rb)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 5 || m.Took != 55*time.Minute || m.Partial != a.Partial {
		t.Errorf("merged: %d cells, took %v, partial %q; want 5, 55m, %q", len(m.Cells), m.Took, m.Partial, a.Partial)
	}
	rows := Summarize(m.Cells)
	if len(rows) != 5 || rows[1].ContainerLines.Mean != 12 || rows[1].DockerdLines.Mean != 3 || rows[4].Workload != "node-express" || rows[2].Failed != 1 || rows[3].Skipped == "" {
		t.Errorf("merged rows: %+v", rows)
	}
	if _, err := MergeRuns(ra, ra); err == nil || !strings.Contains(err.Error(), "in two of the studies") {
		t.Errorf("merging a study with itself: %v, want an error naming the run in both", err)
	}
	// A profile the record names but the directory lacks.
	os.Remove(filepath.Join(db, "node-express-native-run1.json"))
	if _, err := ReadRuns(db); err == nil {
		t.Error("ReadRuns with a profile missing succeeded")
	}
}

func TestDecodeRuns(t *testing.T) {
	for _, c := range []struct{ json, err string }{
		{`{"schema":1,"took_seconds":3,"cells":[{"workload":"w","runtime":"r","run":1,"profile":"w-r-run1.json","requests":1,"load_ns":1}]}`, ""},
		{`{"schema":2,"cells":[]}`, "schema 2"},
		{`{"schema":1,"cells":[{"workload":"w","runtime":"r","run":0,"requests":1,"load_ns":1}]}`, "run 0"},
		{`{"schema":1,"cells":[{"workload":"w","runtime":"r","run":1,"profile":"../x.json","requests":1,"load_ns":1}]}`, "not a file name"},
		{`{"schema":1,"cells":[{"workload":"w","runtime":"r","run":1,"parts":{"c":"/etc/passwd"},"requests":1,"load_ns":1}]}`, "not a named part"},
		{`{"schema":1,"cells":[{"workload":"","runtime":"r","run":1,"requests":1,"load_ns":1}]}`, "no workload"},
		{`{"schema":1,"cells":[{"workload":"w","runtime":"r","run":1,"requests":-1,"load_ns":1}]}`, "negative load"},
		{`{"schema":1,"cells":[],"extra":1}`, "unknown field"},
	} {
		_, err := decodeRuns([]byte(c.json))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("decodeRuns(%s) = %v, want %q", c.json, err, c.err)
		}
	}
}

func FuzzDecodeRuns(f *testing.F) {
	f.Add([]byte(`{"schema":1,"took_seconds":3,"cells":[{"workload":"w","runtime":"r","run":1,"profile":"w-r-run1.json","parts":{"container":"w-r-run1-container.json"},"requests":1,"load_ns":1}]}`))
	f.Add([]byte(`{"schema":1,"cells":[{"workload":"w","runtime":"r","run":2,"skipped":"needs /dev/kvm","requests":0,"load_ns":0}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRuns(b)
		if err != nil {
			return
		}
		for _, c := range rec.Cells {
			for _, name := range append([]string{c.Profile}, slices.Collect(maps.Values(c.Parts))...) {
				if name != "" && (strings.Contains(name, "/") || name == ".." || name == ".") {
					t.Fatalf("accepted profile name %q outside the study's directory", name)
				}
			}
			if c.Run < 1 || c.Requests < 0 {
				t.Fatalf("accepted cell %+v", c)
			}
		}
	})
}
