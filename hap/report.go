package hap

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"
)

// reportSubsystems is how many subsystems get their own colour in the
// report's bars; the rest are summed as "other".
const reportSubsystems = 10

var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#d4d4d4"}

type seg struct {
	Name         string
	X, W         float64
	Color, Title string
	Lines        int
}

type bar struct {
	Label      string
	Y          float64
	Segs       []seg
	Total      int
	Functions  int
	Bugs       string
	Mode       string
	LabelTitle string
}

type curve struct {
	Label, Color, Points string
	Last                 int
}

type fileRow struct {
	File    string
	Lines   []int // per profile
	Subsys  string
	Highest int
}

type reportData struct {
	Generated  string
	Profiles   []*Profile
	Bars       []bar
	Legend     []seg
	Width      float64
	BarsHeight float64
	Curves     []curve
	HasCurves  bool
	CurveW     float64
	CurveH     float64
	AxisY      float64
	XTicks     []tick
	YTicks     []tick
	Subsystems []fileRow
	Files      []fileRow
	Modules    []tableRow
	Origins    []tableRow
}

// tableRow is one module's or origin's row in the report: a cell per profile.
type tableRow struct {
	Name  string
	Cells []tableCell
}

type tableCell struct {
	Lines, Functions, Estimated int
	Only                        int // origins: lines reached through it only
}

type tick struct {
	Pos   float64
	Label string
}

// WriteHTML writes one self-contained HTML page (inline SVG, no scripts,
// no external resources) comparing profiles: stacked bars of lines by
// subsystem, the convergence curves of unique functions over the window,
// and tables of the top subsystems and files and of the kernel modules
// (vmlinux included) when any profile has module code.
func WriteHTML(w io.Writer, profiles ...*Profile) error {
	if len(profiles) == 0 {
		return fmt.Errorf("report: no profiles")
	}
	d := reportData{Generated: time.Now().UTC().Format(time.RFC3339), Profiles: profiles, Width: 900, CurveW: 900, CurveH: 300}

	// Subsystems ranked by their largest share in any profile.
	weight := map[string]int{}
	for _, p := range profiles {
		for _, s := range p.Subsystems {
			weight[s.Name] = max(weight[s.Name], s.Lines+s.Estimated)
		}
	}
	names := make([]string, 0, len(weight))
	for n := range weight {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(weight[b], weight[a]), cmp.Compare(a, b)) })
	color := map[string]string{}
	for i, n := range names {
		if i < reportSubsystems {
			color[n] = palette[i]
			d.Legend = append(d.Legend, seg{Name: n, Color: palette[i]})
		}
	}
	if len(names) > reportSubsystems {
		d.Legend = append(d.Legend, seg{Name: "other", Color: palette[reportSubsystems]})
	}

	maxTotal := 1
	for _, p := range profiles {
		maxTotal = max(maxTotal, p.Lines.Total)
	}
	const barH, gap, labelW = 28.0, 14.0, 0.0
	scale := (d.Width - 160) / float64(maxTotal)
	for i, p := range profiles {
		b := bar{Label: cmp.Or(p.Label, fmt.Sprintf("profile %d", i+1)), Y: 16 + float64(i)*(barH+gap), Total: p.Lines.Total,
			Functions: len(p.Functions), Bugs: fmt.Sprintf("%.2f", p.Bugs), Mode: p.Mode}
		b.LabelTitle = p.Summary()
		x := labelW
		other := 0
		for _, s := range p.Subsystems {
			n := s.Lines + s.Estimated
			if n == 0 {
				continue
			}
			c, ok := color[s.Name]
			if !ok {
				other += n
				continue
			}
			b.Segs = append(b.Segs, seg{Name: s.Name, X: x, W: float64(n) * scale, Color: c, Lines: n,
				Title: fmt.Sprintf("%s — %s: %d lines, %d functions", b.Label, s.Name, n, s.Functions)})
			x += float64(n) * scale
		}
		if other > 0 {
			b.Segs = append(b.Segs, seg{Name: "other", X: x, W: float64(other) * scale, Color: palette[reportSubsystems], Lines: other,
				Title: fmt.Sprintf("%s — other subsystems: %d lines", b.Label, other)})
		}
		d.Bars = append(d.Bars, b)
	}
	d.BarsHeight = 16 + float64(len(profiles))*(barH+gap)

	// Convergence curves.
	var maxAt time.Duration
	maxF := 1
	for _, p := range profiles {
		for _, pt := range p.Convergence {
			maxAt = max(maxAt, pt.At)
			maxF = max(maxF, pt.Functions)
		}
	}
	if maxAt > 0 {
		d.HasCurves = true
		const left, bottom = 60.0, 30.0
		pw, ph := d.CurveW-left-20, d.CurveH-bottom-10
		d.AxisY = 10 + ph
		for i, p := range profiles {
			if len(p.Convergence) == 0 {
				continue
			}
			var pts []string
			for _, pt := range p.Convergence {
				x := left + pw*float64(pt.At)/float64(maxAt)
				y := 10 + ph*(1-float64(pt.Functions)/float64(maxF))
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			}
			d.Curves = append(d.Curves, curve{Label: d.Bars[i].Label, Color: palette[i%len(palette)],
				Points: strings.Join(pts, " "), Last: p.Convergence[len(p.Convergence)-1].Functions})
		}
		for i := 0; i <= 4; i++ {
			at := maxAt * time.Duration(i) / 4
			d.XTicks = append(d.XTicks, tick{Pos: left + pw*float64(i)/4, Label: at.Round(100 * time.Millisecond).String()})
			d.YTicks = append(d.YTicks, tick{Pos: 10 + ph*(1-float64(i)/4), Label: fmt.Sprint(maxF * i / 4)})
		}
	}

	// Tables.
	for _, n := range names[:min(len(names), 25)] {
		r := fileRow{File: n}
		for _, p := range profiles {
			v := 0
			for _, s := range p.Subsystems {
				if s.Name == n {
					v = s.Lines + s.Estimated
				}
			}
			r.Lines = append(r.Lines, v)
		}
		d.Subsystems = append(d.Subsystems, r)
	}
	files := map[string][]int{}
	for i, p := range profiles {
		for f, ls := range p.LineSet {
			if files[f] == nil {
				files[f] = make([]int, len(profiles))
			}
			files[f][i] = len(ls)
		}
	}
	for f, v := range files {
		d.Files = append(d.Files, fileRow{File: f, Lines: v, Subsys: SubsystemOf(f), Highest: slices.Max(v)})
	}
	slices.SortFunc(d.Files, func(a, b fileRow) int { return cmp.Or(cmp.Compare(b.Highest, a.Highest), cmp.Compare(a.File, b.File)) })
	d.Files = d.Files[:min(len(d.Files), 30)]
	d.Modules = tableRows(profiles, func(p *Profile, add func(string, tableCell)) {
		for _, m := range p.Modules {
			add(m.Name, tableCell{Lines: m.Lines + m.Estimated, Functions: m.Functions, Estimated: m.Estimated})
		}
	})
	if len(d.Modules) == 1 && d.Modules[0].Name == Vmlinux {
		d.Modules = nil // no profile has module code
	}
	d.Origins = tableRows(profiles, func(p *Profile, add func(string, tableCell)) {
		for _, o := range p.Origins {
			add(o.Name, tableCell{Lines: o.Lines, Functions: o.Functions, Only: o.Only})
		}
	})
	d.Origins = d.Origins[:min(len(d.Origins), reportOrigins)]
	return reportTmpl.Execute(w, d)
}

// tableRows are a report table: a row per name that each(p, add) adds for
// any profile, with a cell per profile, by the row's largest line count in
// any profile.
func tableRows(profiles []*Profile, each func(p *Profile, add func(string, tableCell))) []tableRow {
	rows := map[string]*tableRow{}
	weight := map[string]int{}
	for i, p := range profiles {
		each(p, func(name string, c tableCell) {
			r := rows[name]
			if r == nil {
				r = &tableRow{Name: name, Cells: make([]tableCell, len(profiles))}
				rows[name] = r
			}
			r.Cells[i] = c
			weight[name] = max(weight[name], c.Lines)
		})
	}
	var out []tableRow
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b tableRow) int {
		return cmp.Or(cmp.Compare(weight[b.Name], weight[a.Name]), cmp.Compare(a.Name, b.Name))
	})
	return out
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"add": func(a, b float64) float64 { return a + b },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hapscope report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left} .note{color:#666;font-size:.85em}
.legend span{display:inline-block;margin-right:1em;font-size:.85em} .legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
svg text{font-size:12px;fill:#222}
</style></head><body>
<h1>Horizontal Attack Profile</h1>
<p class="note">Generated {{.Generated}} by hapscope. Lines are distinct kernel source lines (DWARF) of the functions a workload drove; latent bugs = lines × density.</p>
<table id="summary"><tr><th>profile</th><th>kernel</th><th>CPUs</th><th>backend</th><th>mode</th><th>functions</th><th>lines</th><th>own</th><th>inlined</th><th>estimated</th><th>latent bugs</th><th title="probe hits lost during the window, over all tasks">misses (window, all tasks)</th></tr>
{{range .Profiles}}<tr><td>{{.Label}}</td><td>{{.Release}}</td><td>{{if .CPUs}}{{.CPUs}}{{else}}?{{end}}</td><td>{{.Backend}}</td><td>{{.Mode}}</td><td>{{len .Functions}}</td><td>{{.Lines.Total}}</td><td>{{.Lines.Own}}</td><td>{{.Lines.Inlined}}</td><td>{{.Lines.Estimated}}</td><td>{{printf "%.2f" .Bugs}}</td><td>{{.Misses}}</td></tr>
{{end}}</table>

<h2>Lines by subsystem</h2>
<div class="legend">{{range .Legend}}<span><i style="background:{{.Color}}"></i>{{.Name}}</span>{{end}}</div>
<svg id="bars" xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.BarsHeight}}" role="img" aria-label="lines by subsystem per profile">
{{range $i, $b := .Bars}}<g class="bar" data-profile="{{$b.Label}}" data-total="{{$b.Total}}" transform="translate(0,{{$b.Y}})">
<text x="0" y="-2">{{$b.Label}} — {{$b.Total}} lines, {{$b.Functions}} functions, ~{{$b.Bugs}} bugs ({{$b.Mode}})</text>
{{range $b.Segs}}<rect class="seg" data-subsystem="{{.Name}}" data-lines="{{.Lines}}" x="{{.X}}" y="2" width="{{.W}}" height="20" fill="{{.Color}}"><title>{{.Title}}</title></rect>
{{end}}</g>
{{end}}</svg>

{{if .HasCurves}}<h2>Convergence: unique functions over the window</h2>
<p class="note">A flat tail means the workload reached steady state; a rising one means the window was too short.</p>
<svg id="convergence" xmlns="http://www.w3.org/2000/svg" width="{{.CurveW}}" height="{{.CurveH}}" role="img" aria-label="unique functions over time">
<line x1="60" y1="10" x2="60" y2="{{.AxisY}}" stroke="#999"/><line x1="60" y1="{{.AxisY}}" x2="{{.CurveW}}" y2="{{.AxisY}}" stroke="#999"/>
{{range .XTicks}}<text x="{{.Pos}}" y="{{add $.AxisY 18}}" text-anchor="middle">{{.Label}}</text>{{end}}
{{range .YTicks}}<text x="54" y="{{.Pos}}" text-anchor="end">{{.Label}}</text><line x1="60" x2="{{$.CurveW}}" y1="{{.Pos}}" y2="{{.Pos}}" stroke="#eee"/>{{end}}
{{range .Curves}}<polyline class="curve" data-profile="{{.Label}}" fill="none" stroke="{{.Color}}" stroke-width="2" points="{{.Points}}"><title>{{.Label}}: {{.Last}} functions at the end</title></polyline>
{{end}}</svg>
<div class="legend">{{range .Curves}}<span><i style="background:{{.Color}}"></i>{{.Label}}</span>{{end}}</div>{{end}}

<h2>Top subsystems (lines)</h2>
<table id="subsystems"><tr><th>subsystem</th>{{range .Profiles}}<th>{{.Label}}</th>{{end}}</tr>
{{range .Subsystems}}<tr><td>{{.File}}</td>{{range .Lines}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>

{{if .Modules}}<h2>Kernel modules (lines)</h2>
<p class="note">Lines of each module's functions (exact and estimated), vmlinux included; a header line inlined into two modules counts in both rows.</p>
<table id="modules"><tr><th>module</th>{{range .Profiles}}<th>{{.Label}}</th>{{end}}</tr>
{{range .Modules}}<tr><td>{{.Name}}</td>{{range .Cells}}<td title="{{.Functions}} functions{{if .Estimated}}, {{.Estimated}} lines estimated{{end}}">{{.Lines}}{{if .Estimated}} (est.){{end}}</td>{{end}}</tr>
{{end}}</table>
{{end}}
{{if .Origins}}<h2>Top system calls and other origins (lines)</h2>
<p class="note">Lines of the functions the tasks entered from each system call, page fault or other origin; in brackets, the lines no other origin reached (what denying that system call would take out of reach of this workload).</p>
<table id="origins"><tr><th>origin</th>{{range .Profiles}}<th>{{.Label}}</th>{{end}}</tr>
{{range .Origins}}<tr><td>{{.Name}}</td>{{range .Cells}}<td title="{{.Functions}} functions">{{if .Functions}}{{.Lines}} ({{.Only}}){{else}}-{{end}}</td>{{end}}</tr>
{{end}}</table>
{{end}}
<h2>Top files (lines)</h2>
<table id="files"><tr><th>file</th><th>subsystem</th>{{range .Profiles}}<th>{{.Label}}</th>{{end}}</tr>
{{range .Files}}<tr><td>{{.File}}</td><td>{{.Subsys}}</td>{{range .Lines}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
</body></html>
`))
