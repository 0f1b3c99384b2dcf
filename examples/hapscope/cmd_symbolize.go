package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/examples/internal/hapcli"
	"github.com/hapscope/hapscope/symbolize"
)

func init() {
	register("symbolize", "print the source lines of kernel functions (DWARF)", cmdSymbolize)
	register("index", "build and cache the line index of a kernel's vmlinux", cmdIndex)
}

// indexFlags are the flags that choose a kernel and its debug info.
type indexFlags struct {
	vmlinux, release, buildID, cache string
	rebuild, quiet                   bool
}

func (f *indexFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.vmlinux, "vmlinux", "", "vmlinux with DWARF (default: the distro debug package of the kernel, then debuginfod)")
	fs.StringVar(&f.release, "release", "", "kernel release the addresses came from (default: the running kernel, whose build-id the vmlinux must match)")
	fs.StringVar(&f.buildID, "build-id", "", "build-id (hex) of the kernel the addresses came from; the vmlinux must match it")
	fs.StringVar(&f.cache, "cache", "", "index cache directory (default: the user cache dir, hapscope/index)")
	fs.BoolVar(&f.rebuild, "rebuild", false, "rebuild the index even if it is cached")
	fs.BoolVar(&f.quiet, "q", false, "no progress bar")
}

func (f *indexFlags) open(ctx context.Context) (*symbolize.Index, error) {
	o := symbolize.Options{
		VMLinux: f.vmlinux, CacheDir: f.cache, Rebuild: f.rebuild,
		Kernel: symbolize.Kernel{Release: f.release, BuildID: strings.ToLower(f.buildID)},
	}
	if !f.quiet {
		o.Progress = hapcli.NewProgress(os.Stderr, "hapscope: ").Index
	}
	return symbolize.Open(ctx, o)
}

func cmdIndex(args []string) int {
	fs := flag.NewFlagSet("index", flag.ContinueOnError)
	var f indexFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope index [--vmlinux PATH] [--release REL | --build-id HEX] [--rebuild]")
		fmt.Fprintln(fs.Output(), "Builds the function → source lines index of a kernel and caches it by build-id.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	start := time.Now()
	ix, err := f.open(context.Background())
	if err != nil {
		return fail(err)
	}
	est := 0
	for fn := range ix.All() {
		if fn.Estimated {
			est++
		}
	}
	fmt.Printf("build-id %s: %d functions (%d without line info, estimated), ready in %s\nindex: %s\n",
		ix.BuildID(), ix.Len(), est, time.Since(start).Round(time.Millisecond), symbolize.IndexPath(f.cache, ix.BuildID()))
	return 0
}

// jsonFunc is one function in `hapscope symbolize --json` output.
type jsonFunc struct {
	Query     string           `json:"query"`
	Name      string           `json:"name"`
	File      string           `json:"file,omitempty"`
	Line      int              `json:"line,omitempty"`
	Entry     string           `json:"entry"`
	Size      uint64           `json:"size"`
	Ranges    [][2]string      `json:"ranges"`
	Estimated bool             `json:"estimated,omitempty"`
	Lines     int              `json:"line_count"`
	Own       map[string][]int `json:"own"`
	Inlined   map[string][]int `json:"inlined"`
}

func byFile(ls []symbolize.Line) map[string][]int {
	m := map[string][]int{}
	for _, l := range ls {
		m[l.File] = append(m[l.File], l.Line)
	}
	return m
}

// spans prints sorted line numbers compactly: 3-5,9.
func spans(ls []int) string {
	var b strings.Builder
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ls[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(ls[j]))
		}
		i = j + 1
	}
	return b.String()
}

func printLines(label string, ls []symbolize.Line) {
	if len(ls) == 0 {
		return
	}
	var files []string
	m := byFile(ls)
	for _, l := range ls { // ls is sorted by file
		if len(files) == 0 || files[len(files)-1] != l.File {
			files = append(files, l.File)
		}
	}
	for i, f := range files {
		if i == 0 {
			fmt.Printf("  %-8s %s:%s\n", label, f, spans(m[f]))
		} else {
			fmt.Printf("  %-8s %s:%s\n", "", f, spans(m[f]))
		}
	}
}

func cmdSymbolize(args []string) int {
	fs := flag.NewFlagSet("symbolize", flag.ContinueOnError)
	var f indexFlags
	f.register(fs)
	jsonOut := fs.Bool("json", false, "print JSON (one array) instead of text")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope symbolize [--vmlinux PATH] [--json] FUNC|0xADDR...")
		fmt.Fprintln(fs.Output(), "Prints each function's file and sorted source lines: its own, and those inlined into it.")
		fmt.Fprintln(fs.Output(), "FUNC may carry compiler suffixes (foo.isra.0); 0xADDR is a vmlinux (link-time) address.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	ix, err := f.open(context.Background())
	if err != nil {
		return fail(err)
	}
	var out []jsonFunc
	var missing []string
	for _, q := range fs.Args() {
		var fns []*symbolize.Function
		if strings.HasPrefix(q, "0x") {
			a, err := strconv.ParseUint(q[2:], 16, 64)
			if err != nil {
				return fail(fmt.Errorf("bad address %q: %w", q, err))
			}
			if fn := ix.FuncAt(a); fn != nil {
				fns = append(fns, fn)
			}
		} else {
			fns = ix.Lookup(q)
		}
		if len(fns) == 0 {
			missing = append(missing, q)
			continue
		}
		for _, fn := range fns {
			own, inl := fn.Lines()
			if *jsonOut {
				j := jsonFunc{Query: q, Name: fn.Name, File: fn.File, Line: fn.Line, Entry: fmt.Sprintf("%#x", fn.Entry),
					Size: fn.Size(), Estimated: fn.Estimated, Lines: fn.LineCount(), Own: byFile(own), Inlined: byFile(inl)}
				for _, r := range fn.Ranges {
					j.Ranges = append(j.Ranges, [2]string{fmt.Sprintf("%#x", r.Lo), fmt.Sprintf("%#x", r.Hi)})
				}
				out = append(out, j)
				continue
			}
			where := fn.File
			if fn.Line > 0 {
				where += ":" + strconv.Itoa(fn.Line)
			}
			fmt.Printf("%s  %s  %#x  %d bytes in %d range(s)\n", fn.Name, where, fn.Entry, fn.Size(), len(fn.Ranges))
			if fn.Estimated {
				fmt.Printf("  ~%d lines (ESTIMATED from size, %.1f bytes/line: no line table covers it)\n", fn.LineCount(), symbolize.BytesPerLine)
				continue
			}
			fmt.Printf("  %d lines: %d own, %d inlined\n", fn.LineCount(), len(own), len(inl))
			printLines("own", own)
			printLines("inlined", inl)
		}
	}
	if *jsonOut {
		if out == nil {
			out = []jsonFunc{}
		}
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(out); err != nil {
			return fail(err)
		}
	}
	if len(missing) > 0 {
		return fail(errors.New("not in the index of build-id " + ix.BuildID() + ": " + strings.Join(missing, ", ") + " (check the name, or that the vmlinux is this kernel's)"))
	}
	return 0
}
