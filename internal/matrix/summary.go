package matrix

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/hapscope/hapscope/hap"
)

// Stat is the mean and sample standard deviation of N values.
type Stat struct {
	N        int
	Mean, SD float64
}

func newStat(xs []float64) Stat {
	s := Stat{N: len(xs)}
	if s.N == 0 {
		return s
	}
	for _, x := range xs {
		s.Mean += x
	}
	s.Mean /= float64(s.N)
	if s.N > 1 {
		var ss float64
		for _, x := range xs {
			ss += (x - s.Mean) * (x - s.Mean)
		}
		s.SD = math.Sqrt(ss / float64(s.N-1))
	}
	return s
}

// CV is the coefficient of variation (SD / mean), 0 for a zero mean.
func (s Stat) CV() float64 {
	if s.Mean == 0 {
		return 0
	}
	return s.SD / s.Mean
}

// format formats "mean ± sd" ("mean" for one value, "-" for none) with
// the given number of decimals.
func (s Stat) format(decimals int) string {
	switch s.N {
	case 0:
		return "-"
	case 1:
		return fmt.Sprintf("%.*f", decimals, s.Mean)
	}
	return fmt.Sprintf("%.*f ± %.*f", decimals, s.Mean, decimals, s.SD)
}

// Row is one workload × runtime over all its runs.
type Row struct {
	Workload, Runtime string
	Variant           string // Runtime.Variant: "" for a deployed row
	OK, Failed        int
	Skipped           string   // why the runtime cannot run here
	Errors            []string // distinct failure reasons
	// Over the successful runs.
	Functions, Lines, Own, Inlined, Bugs, RPS Stat
	// ContainerLines and RuntimeLines are the lines of the cell's parts
	// (Cell.Parts): the container's own tasks, and the runtime's
	// processes (dockerd, containerd, shim, docker-proxy); N is 0 for
	// runtimes without parts.
	ContainerLines, RuntimeLines Stat
	// ContainerFunctions is the container part's function count: the
	// tenant's own, what the 2018 study's pid lists traced.
	ContainerFunctions Stat
	// SentryLines, StubLines and GoferLines split a gVisor container's
	// lines by its host processes (see splitSandbox): the sentry, the
	// platform's stub processes that run the application's threads, and
	// the gofer; N is 0 elsewhere.
	SentryLines, StubLines, GoferLines Stat
	// DockerdLines, ContainerdLines, ShimLines and ProxyLines split a
	// Docker cell's runtime part by daemon (see splitDaemons): dockerd,
	// containerd, the container's shim, docker-proxy; N is 0 elsewhere.
	DockerdLines, ContainerdLines, ShimLines, ProxyLines Stat
	// Unsettled counts the successful runs whose convergence curve still
	// rose in the last third of the window (Settled): steady state was
	// not reached, so more window would have found more.
	Unsettled int
	// OverNative is Lines' mean minus the native row's of the same
	// workload: the lines the runtime adds (NaN without a native row).
	OverNative float64
	// Median is the successful run whose line count is the median (the
	// one shown in the report), nil when none succeeded.
	Median *hap.Profile
	// Study2018 is the 2018 study's unique-function count for this
	// workload and runtime (0: the study had no such row).
	Study2018 float64
}

// Summarize folds cells (of any number of runs) into one row per workload
// and runtime, in the order they first appear.
func Summarize(cells []Cell) []Row {
	type key struct{ w, r string }
	idx := map[key]int{}
	var rows []Row
	var profs [][]*hap.Profile
	var parts []map[string][]float64
	var ctrFuncs [][]float64
	var rps [][]float64
	for _, c := range cells {
		k := key{c.Workload, c.Runtime}
		i, ok := idx[k]
		if !ok {
			i = len(rows)
			idx[k] = i
			rows = append(rows, Row{Workload: c.Workload, Runtime: c.Runtime, Variant: c.Variant, Study2018: Study2018Functions(c.Workload, c.Runtime)})
			profs = append(profs, nil)
			parts = append(parts, map[string][]float64{})
			ctrFuncs = append(ctrFuncs, nil)
			rps = append(rps, nil)
		}
		r := &rows[i]
		switch {
		case c.Skipped != "":
			r.Skipped = c.Skipped
		case c.Err != nil || c.Profile == nil:
			r.Failed++
			msg := "no profile"
			if c.Err != nil {
				msg = c.Err.Error()
			}
			if !contains(r.Errors, msg) {
				r.Errors = append(r.Errors, msg)
			}
		default:
			r.OK++
			if !Settled(c.Profile) {
				r.Unsettled++
			}
			profs[i] = append(profs[i], c.Profile)
			for name, p := range c.Parts {
				parts[i][name] = append(parts[i][name], float64(p.Lines.Total))
				if name == "container" {
					ctrFuncs[i] = append(ctrFuncs[i], float64(len(p.Functions)))
				}
			}
			rps[i] = append(rps[i], c.Load.RPS())
		}
	}
	for i := range rows {
		ps := profs[i]
		col := func(f func(p *hap.Profile) float64) Stat {
			xs := make([]float64, len(ps))
			for j, p := range ps {
				xs[j] = f(p)
			}
			return newStat(xs)
		}
		r := &rows[i]
		r.Functions = col(func(p *hap.Profile) float64 { return float64(len(p.Functions)) })
		r.Lines = col(func(p *hap.Profile) float64 { return float64(p.Lines.Total) })
		r.Own = col(func(p *hap.Profile) float64 { return float64(p.Lines.Own) })
		r.Inlined = col(func(p *hap.Profile) float64 { return float64(p.Lines.Inlined) })
		r.Bugs = col(func(p *hap.Profile) float64 { return p.Bugs })
		r.RPS = newStat(rps[i])
		r.ContainerLines = newStat(parts[i]["container"])
		r.ContainerFunctions = newStat(ctrFuncs[i])
		r.RuntimeLines = newStat(parts[i]["runtime"])
		r.SentryLines = newStat(parts[i]["sentry"])
		r.StubLines = newStat(parts[i]["stubs"])
		r.GoferLines = newStat(parts[i]["gofer"])
		r.DockerdLines = newStat(parts[i]["dockerd"])
		r.ContainerdLines = newStat(parts[i]["containerd"])
		r.ShimLines = newStat(parts[i]["shim"])
		r.ProxyLines = newStat(parts[i]["proxy"])
		if len(ps) > 0 {
			sorted := append([]*hap.Profile(nil), ps...)
			sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].Lines.Total < sorted[b].Lines.Total })
			r.Median = sorted[(len(sorted)-1)/2]
		}
	}
	native := map[string]float64{}
	for _, r := range rows {
		if r.Runtime == "native" && r.Lines.N > 0 {
			native[r.Workload] = r.Lines.Mean
		}
	}
	for i := range rows {
		rows[i].OverNative = math.NaN()
		if n, ok := native[rows[i].Workload]; ok && rows[i].Lines.N > 0 {
			rows[i].OverNative = rows[i].Lines.Mean - n
		}
	}
	return rows
}

// Settled reports whether p's convergence curve was flat over the last
// third of its window: at most 1 % more functions (and at most 2) at the
// end than at two thirds. A profile without a curve counts as settled.
func Settled(p *hap.Profile) bool {
	c := p.Convergence
	if len(c) < 3 {
		return true
	}
	end := c[len(c)-1]
	at := end.At * 2 / 3
	before := 0
	for _, pt := range c {
		if pt.At <= at {
			before = pt.Functions
		}
	}
	grew := end.Functions - before
	return grew <= 2 || float64(grew) <= 0.01*float64(end.Functions)
}

// status is the row's status column: ok, or what is wrong with it.
func (r Row) status() string {
	switch {
	case r.Skipped != "":
		return "not run: " + r.Skipped
	case r.Failed > 0:
		return fmt.Sprintf("%d FAILED: %s", r.Failed, strings.Join(r.Errors, "; "))
	}
	var notes []string
	if r.Unsettled > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d runs not settled (functions still rising at the window's end)", r.Unsettled, r.OK))
	}
	if r.Lines.N > 1 && r.Lines.CV() > 0.03 {
		note := fmt.Sprintf("lines CV %.1f %% > 3 %%", 100*r.Lines.CV())
		// Whether the tenant's own part is what varies, or the runtime's
		// processes (daemons idle at 8–9 k lines, Go's GC in some windows only).
		if r.ContainerLines.N > 1 {
			note += fmt.Sprintf(" (container part %.1f %%)", 100*r.ContainerLines.CV())
		}
		notes = append(notes, note)
	}
	if len(notes) == 0 {
		return "ok"
	}
	return "ok; " + strings.Join(notes, "; ")
}

// runtimeLabel is the row's runtime name, marked when it is a variant.
func (r Row) runtimeLabel() string {
	if r.Variant != "" {
		return r.Runtime + " (variant)"
	}
	return r.Runtime
}

// overNative formats OverNative.
func (r Row) overNative() string {
	if math.IsNaN(r.OverNative) || r.Runtime == "native" {
		return "-"
	}
	return fmt.Sprintf("%+.0f", r.OverNative)
}

// Runs is the number of runs that were attempted (succeeded or failed).
func (r Row) Runs() int { return r.OK + r.Failed }

func writeTabbed(w io.Writer, s string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if _, err := io.WriteString(tw, s); err != nil {
		return err
	}
	return tw.Flush()
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// study2018 holds the unique kernel functions the 2018 study reported
// (nabla-measurements, read off its graphs; see shared/ANCHORS.md), by
// its workload and runtime names.
var study2018 = map[string]map[string]float64{
	"node-express":   {"Docker": 498, "gVisor-ptrace": 328, "gVisor-KVM": 472, "Kata-QEMU": 280, "Kata-Firecracker": 380, "Nabla": 155},
	"redis":          {"Docker": 385, "gVisor-ptrace": 290, "gVisor-KVM": 358, "Kata-QEMU": 330, "Kata-Firecracker": 412, "Nabla": 158},
	"python-tornado": {"Docker": 535, "gVisor-ptrace": 280, "gVisor-KVM": 438, "Kata-QEMU": 267, "Kata-Firecracker": 365, "Nabla": 157},
}

// Study2018Functions returns the 2018 study's unique-function count for a
// matrix workload and runtime, or 0 when the study had no such row. The
// study ran gVisor under Docker (--runtime=runsc) with its own network
// stack, as the docker-gvisor rows do; both redis workloads map to the
// study's one redis row.
func Study2018Functions(workload, runtime string) float64 {
	w := workload
	if strings.HasPrefix(w, "redis-") {
		w = "redis"
	}
	r := map[string]string{
		"docker": "Docker", "docker-gvisor-ptrace": "gVisor-ptrace", "gvisor-kvm": "gVisor-KVM",
		"kata-qemu": "Kata-QEMU", "kata-firecracker": "Kata-Firecracker", "nabla": "Nabla",
	}[runtime]
	return study2018[w][r]
}

// SandboxSplit formats SentryLines, StubLines and GoferLines as
// "sentry / stubs / gofer" ("-" for a row that is not a split gVisor
// container).
func (r Row) SandboxSplit() string {
	return formatSplit(r.SentryLines, r.StubLines, r.GoferLines)
}

// DaemonSplit formats DockerdLines, ContainerdLines, ShimLines and
// ProxyLines as "dockerd / containerd / shim / proxy" ("-" for a row
// whose runtime part is not split by daemon).
func (r Row) DaemonSplit() string {
	return formatSplit(r.DockerdLines, r.ContainerdLines, r.ShimLines, r.ProxyLines)
}

// formatSplit formats the line counts of a split's parts as "a / b / …",
// or "-" when none of them was measured.
func formatSplit(parts ...Stat) string {
	var f []string
	measured := false
	for _, s := range parts {
		f = append(f, s.format(0))
		measured = measured || s.N > 0
	}
	if !measured {
		return "-"
	}
	return strings.Join(f, " / ")
}

// WriteTable prints rows as a plain-text table.
func WriteTable(w io.Writer, rows []Row) error {
	var b strings.Builder
	fmt.Fprintln(&b, "workload\truntime\truns ok\tfunctions\tlines (own+inlined)\town\tinlined\tlines over native\tcontainer functions\tcontainer lines\truntime-process lines\tdockerd / containerd / shim / proxy lines\tsentry / stubs / gofer lines\test. bugs\treq/s (traced)\tlines CV\t2018 functions\tstatus")
	for _, r := range rows {
		study := "-"
		if r.Study2018 > 0 {
			study = fmt.Sprintf("%.0f", r.Study2018)
		}
		status := r.status()
		cv := "-"
		if r.Lines.N > 1 {
			cv = fmt.Sprintf("%.1f%%", 100*r.Lines.CV())
		}
		fmt.Fprintf(&b, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Workload, r.runtimeLabel(), r.OK, r.Runs(),
			r.Functions.format(0), r.Lines.format(0), r.Own.format(0), r.Inlined.format(0), r.overNative(),
			r.ContainerFunctions.format(0), r.ContainerLines.format(0), r.RuntimeLines.format(0), r.DaemonSplit(), r.SandboxSplit(), r.Bugs.format(2), r.RPS.format(0), cv, study, status)
	}
	if err := writeTabbed(w, b.String()); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Variant != "" && !seen[r.Runtime] {
			seen[r.Runtime] = true
			if _, err := fmt.Fprintf(w, "variant %s: %s\n", r.Runtime, r.Variant); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteReport writes one self-contained HTML report: the summary table
// (mean ± sd over runs, the 2018 study's function counts beside ours)
// followed by hap's report of each row's median run.
func WriteReport(w io.Writer, title string, rows []Row) error {
	var profiles []*hap.Profile
	for _, r := range rows {
		if r.Median != nil {
			profiles = append(profiles, r.Median)
		}
	}
	var body bytes.Buffer
	if len(profiles) > 0 {
		if err := hap.WriteHTML(&body, profiles...); err != nil {
			return err
		}
	} else {
		body.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>hapscope matrix</title></head><body>\n<p>No cell was scored.</p>\n</body></html>\n")
	}
	var table bytes.Buffer
	if err := summaryHTML.Execute(&table, struct {
		Title string
		Rows  []Row
	}{title, rows}); err != nil {
		return err
	}
	doc := body.String()
	i := strings.Index(doc, "<body>")
	if i < 0 {
		return fmt.Errorf("hap.WriteHTML output has no <body>")
	}
	i += len("<body>")
	_, err := io.WriteString(w, doc[:i]+"\n"+table.String()+doc[i:])
	return err
}

var summaryHTML = template.Must(template.New("summary").Funcs(template.FuncMap{
	"stat": func(s Stat, d int) string { return s.format(d) },
	"cv": func(s Stat) string {
		if s.N < 2 {
			return "-"
		}
		return fmt.Sprintf("%.1f %%", 100*s.CV())
	},
	"join":   strings.Join,
	"label":  Row.runtimeLabel,
	"status": Row.status,
	"over":   Row.overNative,
}).Parse(`<section id="matrix-summary" style="font-family:sans-serif">
<h1>{{.Title}}</h1>
<p>Each cell: mean ± sample standard deviation over its successful runs. Lines are distinct kernel source lines
(own + inlined, as DWARF attributes them); estimated bugs = lines × bug density. The 2018 column is the HAP study's
unique-function count (ftrace function_graph, read off its graphs); runc with Docker's default seccomp profile stands
for its Docker row and both redis tests for its single redis row.</p>
<table id="matrix" border="1" cellspacing="0" cellpadding="4" style="border-collapse:collapse">
<thead><tr><th>workload</th><th>runtime</th><th>runs ok</th><th>functions</th><th>2018 functions</th><th>lines</th>
<th>own</th><th>inlined</th><th>lines over native</th><th>container functions</th><th>container lines</th><th>runtime-process lines</th><th>dockerd / containerd / shim / proxy lines</th><th>sentry / stubs / gofer lines</th><th>est. bugs</th><th>req/s (traced)</th><th>lines CV</th><th>status</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr><td>{{.Workload}}</td><td{{if .Variant}} title="{{.Variant}}"{{end}}>{{label .}}</td><td>{{.OK}}/{{.Runs}}</td>
<td>{{stat .Functions 0}}</td><td>{{if .Study2018}}{{printf "%.0f" .Study2018}}{{else}}-{{end}}</td>
<td>{{stat .Lines 0}}</td><td>{{stat .Own 0}}</td><td>{{stat .Inlined 0}}</td><td>{{over .}}</td><td>{{stat .ContainerFunctions 0}}</td><td>{{stat .ContainerLines 0}}</td><td>{{stat .RuntimeLines 0}}</td><td>{{.DaemonSplit}}</td><td>{{.SandboxSplit}}</td><td>{{stat .Bugs 2}}</td><td>{{stat .RPS 0}}</td><td>{{cv .Lines}}</td>
<td>{{status .}}</td></tr>
{{- end}}
</tbody></table>
</section>
`))
