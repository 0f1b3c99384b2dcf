// Package hap scores the Horizontal Attack Profile of a workload: the host
// kernel code it drives, in functions and source lines, and the latent bugs
// that code is expected to hold.
//
// A Profile is plain data: build one from measured functions with New (or
// measure and build in one step with Score), compare two with Diff, write it
// with WriteJSON / WriteText, read it back with ReadJSON.
//
// Kernel modules are part of the kernel a workload drives: a module's
// functions are symbolized with the module's own debug info (FromSnapshot,
// Options.Modules), carry its name (Func.Module) and are counted per module
// (Profile.Modules) as well as per subsystem. A line is a source file and
// line number, whichever binary its code was compiled into: a header line
// inlined into vmlinux and into a module counts once.
package hap

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hapscope/hapscope/symbolize"
)

// SchemaVersion is the version of the Profile JSON format that WriteJSON
// writes. Version 2 added kernel modules (Func.Module, Profile.Modules) and
// Func.Context; ReadJSON still reads version 1 (profiles of vmlinux alone)
// and refuses any other.
const SchemaVersion = 2

// Vmlinux is the name of the kernel image's row in Profile.Modules (its
// functions have Func.Module "").
const Vmlinux = "vmlinux"

// DefaultDensity is the bug density used when Options.Density is zero:
// 0.17 defects per 1,000 lines, Coverity's static analysis of the Linux
// kernel (2004–2005: 0.16–0.17 defects/KLOC). Later figures are higher (one
// defect per ~2,100–3,000 lines on linux-next in 2018, 0.33–0.48/KLOC), so
// the default is the conservative published figure; override it to match
// the bug data you trust.
const DefaultDensity = 0.17

// Coverage modes: how the function set and its lines were obtained.
const (
	ModeExact     = "exact"           // every function probed; lines from DWARF
	ModeEstimated = "estimated-lines" // functions exact, some lines estimated from code size
	ModeSampled   = "sampled"         // functions from sampling: a lower bound
)

// Func is one measured kernel function and its source lines.
type Func struct {
	Name string `json:"name"` // symbol name: a compiler clone keeps its suffix (foo.isra.0)
	// Module is the kernel module the function belongs to, "" for vmlinux.
	// The same name in vmlinux and in a module, or in two modules, is two
	// functions.
	Module string `json:"module,omitempty"`
	Addr   uint64 `json:"addr,omitempty"` // runtime address
	Hits   uint64 `json:"hits,omitempty"` // 0 when the backend does not count
	// Context is the set of contexts the function was counted in
	// (coverage.Context's String: "task", "softirq", "task+softirq", …);
	// empty when not known.
	Context string `json:"context,omitempty"`
	File    string `json:"file,omitempty"` // defining file, kernel-tree path
	// Own and Inlined are the function's own lines and the lines inlined
	// into it (symbolize.Function.Lines).
	Own     []symbolize.Line `json:"-"`
	Inlined []symbolize.Line `json:"-"`
	// Estimated is a size-based line count for a function without line
	// information (0 when lines are exact).
	Estimated int `json:"estimated_lines,omitempty"`
	// Lines is the number of distinct lines of the function (own ∪ inlined,
	// or Estimated); filled in by New.
	Lines int `json:"lines"`
	// Origins splits Hits by where the task came from
	// (coverage.Origin's String: a system call's name, "page fault",
	// "io_uring worker", "interrupt", "other"); nil unless the tracer
	// attributed calls (coverage.Options.Attribution).
	Origins map[string]uint64 `json:"origins,omitempty"`
}

// Meta describes a measurement: what, where, how.
type Meta struct {
	Label   string `json:"label"`           // e.g. "redis-set/runc"
	Release string `json:"kernel_release"`  // uname -r
	BuildID string `json:"kernel_build_id"` // GNU build-id, hex
	Backend string `json:"backend"`         // kprobe.multi, fentry, kprobe, …
	Mode    string `json:"mode"`            // ModeExact, ModeEstimated, ModeSampled
	// Probes is how the tracer probed (coverage.Mode): "pruned" (a function's
	// probe is removed once seen; Func.Hits is 0) or "counts" (every call
	// counted). Empty in profiles written before it was recorded.
	Probes string `json:"probes,omitempty"`
	// Attached is how many kernel functions the tracer probed: the whole
	// catalogue, or the subset the caller chose (hap.ScoreOptions.Catalogue).
	// A function outside them cannot appear in the profile.
	Attached int           `json:"attached_functions,omitempty"`
	Start    time.Time     `json:"start"`     // start of the measured window
	Warmup   time.Duration `json:"warmup_ns"` // excluded before Start
	Window   time.Duration `json:"window_ns"` // measured window
	// Misses and Drops are events lost during the window, over all tasks
	// (the kernel does not count them per cgroup): probe hits the kernel
	// did not run the program for (coverage.Snapshot.Misses), and events
	// the counter could not record.
	Misses    uint64    `json:"misses"`
	Drops     uint64    `json:"drops"`
	Workload  *Workload `json:"workload,omitempty"` // the measured command, if hapscope ran it
	Interrupt bool      `json:"interrupt_context"`  // interrupt context was included
	// Softirq is the attribution rule for soft-IRQ work and how it was
	// applied (coverage.Snapshot.Softirq): soft IRQs a scope's task runs
	// itself on its own path (do_softirq) count, in context "softirq".
	Softirq string `json:"softirq_rule,omitempty"`
	// CPUs is how many CPUs the measured kernel had online: function sets
	// differ between one CPU and several (IPIs, per-CPU work, lock
	// contention paths), so profiles compare only at equal counts. 0 in
	// profiles written before it was recorded.
	CPUs int `json:"cpus,omitempty"`
	// Convergence is the number of unique functions seen at points of the
	// window; a flat tail means steady state was reached.
	Convergence []Point `json:"convergence,omitempty"`
	// OriginsDropped counts calls, over all tasks, whose origin was not
	// recorded (coverage.Snapshot.OriginsDropped): Origins undercount when
	// it is not 0.
	OriginsDropped uint64 `json:"origins_dropped,omitempty"`
}

// Workload is the command whose kernel footprint was measured.
type Workload struct {
	Command  []string `json:"command"`
	ExitCode int      `json:"exit_code"` // -1 while still running at the end of the window
	Error    string   `json:"error,omitempty"`
	// Runtime is what ran the command, with its version and the
	// configuration that decides which kernel code it drives (network,
	// storage, seccomp, LSM), e.g. "Docker 20.10.24 …"; empty for a
	// command run directly.
	Runtime string `json:"runtime,omitempty"`
}

// Point is one sample of a convergence series.
type Point struct {
	At        time.Duration `json:"at_ns"` // since the window start
	Functions int           `json:"functions"`
}

// Lines are unique-line totals. Union ≤ Own + Inlined.
type Lines struct {
	Own       int `json:"own"`       // distinct lines of function bodies
	Inlined   int `json:"inlined"`   // distinct lines of inlined code
	Union     int `json:"union"`     // distinct lines of both (exact)
	Estimated int `json:"estimated"` // size-based estimate for functions without DWARF
	Total     int `json:"total"`     // Union + Estimated: the HAP line count
}

// Subsystem is a share of the profile: kernel top-level directory, or the
// second level under fs/, net/, drivers/ and arch/.
type Subsystem struct {
	Name      string `json:"name"`
	Functions int    `json:"functions"` // by defining file
	Lines     int    `json:"lines"`     // distinct exact lines in its files
	Estimated int    `json:"estimated"` // estimated lines of its functions
}

// Module is the share of one kernel module, or of vmlinux, in a profile.
// Lines counts the distinct lines of the module's functions alone: a header
// line inlined into two modules counts in both rows and once in the
// profile's Lines, so the rows' Lines can sum to more than Lines.Union.
type Module struct {
	Name      string `json:"name"`      // module name; Vmlinux for the kernel image
	Functions int    `json:"functions"` // its functions in the profile
	Lines     int    `json:"lines"`     // distinct exact lines of its functions
	// Estimated is the size-based line count of its functions without
	// DWARF; a module whose debug info was not found and whose lines were
	// estimated (ScoreOptions.AllowEstimate) has Lines 0.
	Estimated int `json:"estimated"`
	// BuildID is the GNU build-id (hex) of the debug info its lines come
	// from, when known (FromSnapshot fills it in).
	BuildID string `json:"build_id,omitempty"`
}

// Profile is a scored HAP measurement.
type Profile struct {
	Schema int `json:"schema"`
	Meta
	Density    float64     `json:"density_per_kloc"` // defects per 1,000 lines
	Bugs       float64     `json:"estimated_bugs"`   // Lines.Total × Density / 1000
	Functions  []Func      `json:"functions"`        // sorted by name, then module, then address
	Lines      Lines       `json:"lines"`
	Files      int         `json:"files"`
	Subsystems []Subsystem `json:"subsystems"` // by Lines.Total share, largest first
	// Modules is the profile per kernel module, vmlinux included (named
	// Vmlinux), by lines (exact + estimated), largest first.
	Modules []Module `json:"modules"`
	// LineSet is every distinct exact line, per file (sorted line numbers).
	LineSet map[string][]int `json:"line_set"`
	// Origins is the profile per origin (Func.Origins), by lines, largest
	// first; empty when calls were not attributed.
	Origins []Origin `json:"origins,omitempty"`
}

// Origin is the code a profile's tasks reached from one origin: through a
// system call, a page fault, … (Func.Origins).
type Origin struct {
	Name      string `json:"name"`      // "read", "page fault", …
	Functions int    `json:"functions"` // functions entered from it
	// Lines are the distinct lines of those functions (exact, plus the
	// estimates of functions without DWARF).
	Lines int `json:"lines"`
	// Only is how many of those lines no other origin reached: what a
	// seccomp filter denying this system call would take out of reach of a
	// workload like this one. Lines − Only is shared with other origins.
	Only int `json:"only_lines"`
}

// Options tune New and FromSnapshot.
type Options struct {
	Density float64 // defects per 1,000 lines; 0 means DefaultDensity
	// Modules gives FromSnapshot the line index of a kernel module, with
	// its functions at the loaded module's runtime addresses (as
	// symbolize.OpenModule or symbolize.EstimateModule return it). It is
	// called once per module that the snapshot has hits in. Nil: a
	// snapshot with module hits is an error. New does not use it.
	Modules func(module string) (*symbolize.Index, error)
}

// New scores measured functions. It fills each Func's Lines and computes
// totals, the subsystem and module breakdowns and the bug estimate.
func New(meta Meta, funcs []Func, opt Options) *Profile {
	p := &Profile{Schema: SchemaVersion, Meta: meta, Density: opt.Density}
	if p.Density == 0 {
		p.Density = DefaultDensity
	}
	if p.Mode == "" {
		p.Mode = ModeExact
	}
	own := map[symbolize.Line]bool{}
	union := map[symbolize.Line]bool{}
	inlined := map[symbolize.Line]bool{}
	subs := map[string]*Subsystem{}
	sub := func(name string) *Subsystem {
		s := subs[name]
		if s == nil {
			s = &Subsystem{Name: name}
			subs[name] = s
		}
		return s
	}
	mods := map[string]*Module{}
	modLines := map[string]map[symbolize.Line]bool{}
	p.Functions = slices.Clone(funcs)
	for i := range p.Functions {
		f := &p.Functions[i]
		m := mods[f.Module]
		if m == nil {
			m = &Module{Name: cmp.Or(f.Module, Vmlinux)}
			mods[f.Module] = m
			modLines[f.Module] = map[symbolize.Line]bool{}
		}
		fl := map[symbolize.Line]bool{}
		for _, l := range f.Own {
			own[l], union[l], fl[l] = true, true, true
		}
		for _, l := range f.Inlined {
			inlined[l], union[l], fl[l] = true, true, true
		}
		maps.Copy(modLines[f.Module], fl)
		f.Lines = len(fl)
		if f.Estimated > 0 {
			f.Lines = f.Estimated
			p.Lines.Estimated += f.Estimated
			sub(SubsystemOf(f.File)).Estimated += f.Estimated
			m.Estimated += f.Estimated
		}
		sub(SubsystemOf(f.File)).Functions++
		m.Functions++
	}
	for name, m := range mods {
		m.Lines = len(modLines[name])
		p.Modules = append(p.Modules, *m)
	}
	sortModules(p.Modules)
	slices.SortFunc(p.Functions, func(a, b Func) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Module, b.Module), cmp.Compare(a.Addr, b.Addr))
	})
	p.Lines.Own, p.Lines.Inlined, p.Lines.Union = len(own), len(inlined), len(union)
	p.Lines.Total = p.Lines.Union + p.Lines.Estimated
	p.LineSet = map[string][]int{}
	for l := range union {
		p.LineSet[l.File] = append(p.LineSet[l.File], l.Line)
		sub(SubsystemOf(l.File)).Lines++
	}
	for _, ls := range p.LineSet {
		slices.Sort(ls)
	}
	p.Files = len(p.LineSet)
	if p.Lines.Estimated > 0 && p.Mode == ModeExact {
		p.Mode = ModeEstimated
	}
	p.Bugs = float64(p.Lines.Total) * p.Density / 1000
	p.Origins = origins(p.Functions)
	for _, s := range subs {
		p.Subsystems = append(p.Subsystems, *s)
	}
	sortSubsystems(p.Subsystems)
	return p
}

// origins is the per-origin breakdown of funcs (nil when none has Origins).
func origins(funcs []Func) []Origin {
	by := map[string]*Origin{}
	lines := map[symbolize.Line]map[string]bool{} // line -> origins reaching it
	for _, f := range funcs {
		for name := range f.Origins {
			o := by[name]
			if o == nil {
				o = &Origin{Name: name}
				by[name] = o
			}
			o.Functions++
			if f.Estimated > 0 {
				o.Lines += f.Estimated
				if len(f.Origins) == 1 {
					o.Only += f.Estimated
				}
			}
		}
		if len(f.Origins) == 0 {
			continue
		}
		for _, ls := range [][]symbolize.Line{f.Own, f.Inlined} {
			for _, l := range ls {
				if lines[l] == nil {
					lines[l] = map[string]bool{}
				}
				for name := range f.Origins {
					lines[l][name] = true
				}
			}
		}
	}
	for _, names := range lines {
		for name := range names {
			by[name].Lines++
			if len(names) == 1 {
				by[name].Only++
			}
		}
	}
	var out []Origin
	for _, o := range by {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b Origin) int {
		return cmp.Or(cmp.Compare(b.Lines, a.Lines), cmp.Compare(b.Functions, a.Functions), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func sortSubsystems(s []Subsystem) {
	slices.SortFunc(s, func(a, b Subsystem) int {
		return cmp.Or(cmp.Compare(b.Lines+b.Estimated, a.Lines+a.Estimated), cmp.Compare(b.Functions, a.Functions), cmp.Compare(a.Name, b.Name))
	})
}

func sortModules(m []Module) {
	slices.SortFunc(m, func(a, b Module) int {
		return cmp.Or(cmp.Compare(b.Lines+b.Estimated, a.Lines+a.Estimated), cmp.Compare(b.Functions, a.Functions), cmp.Compare(a.Name, b.Name))
	})
}

// Summary is a one-line description of p.
func (p *Profile) Summary() string {
	return fmt.Sprintf("%s: %d functions, %d lines (%d own, %d inlined%s), %d files, ~%.2f latent bugs at %.2f/KLOC [%s]",
		cmp.Or(p.Label, "profile"), len(p.Functions), p.Lines.Total, p.Lines.Own, p.Lines.Inlined,
		estNote(p.Lines.Estimated), p.Files, p.Bugs, p.Density, strings.Join(slices.DeleteFunc([]string{p.Backend, p.Mode, p.Probes}, func(s string) bool { return s == "" }), ", "))
}

func estNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d estimated", n)
}

// lineKeys returns p's exact lines as a set.
func (p *Profile) lineKeys() map[symbolize.Line]bool {
	out := map[symbolize.Line]bool{}
	for _, f := range slices.Sorted(maps.Keys(p.LineSet)) {
		for _, l := range p.LineSet[f] {
			out[symbolize.Line{File: f, Line: l}] = true
		}
	}
	return out
}
