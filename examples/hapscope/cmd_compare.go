package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hapscope/hapscope/hap"
)

func init() {
	register("compare", "what two profiles (JSON) drive: only A, only B, both", cmdCompare)
	register("report", "write one self-contained HTML report of profiles (JSON)", cmdReport)
}

func readProfile(path string) (*hap.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := hap.ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.Label == "" {
		p.Label = strings.TrimSuffix(filepath.Base(path), ".json")
	}
	return p, nil
}

func cmdCompare(args []string) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the difference as JSON")
	list := fs.Bool("functions", false, "also list the functions only one side drives")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope compare [--json] [--functions] A.json B.json")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return exitUsage
	}
	a, err := readProfile(fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	b, err := readProfile(fs.Arg(1))
	if err != nil {
		return fail(err)
	}
	d := hap.Diff(a, b)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Println(a.Summary())
	fmt.Println(b.Summary())
	if a.BuildID != b.BuildID {
		fmt.Printf("note: different kernels (%s vs %s): line numbers of different builds do not compare\n", a.Release, b.Release)
	}
	d.WriteText(os.Stdout, a.Label, b.Label)
	if *list {
		for _, side := range []struct {
			name string
			fns  hap.FuncSet
		}{{a.Label, d.OnlyA}, {b.Label, d.OnlyB}} {
			fmt.Printf("\nonly %s (%d):\n", side.name, len(side.fns))
			for _, f := range side.fns {
				fmt.Println("  " + f)
			}
		}
	}
	return 0
}

func cmdReport(args []string) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	out := fs.String("html", "", "write the HTML report to this file (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hapscope report --html OUT.html A.json [B.json ...]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	var ps []*hap.Profile
	for _, path := range fs.Args() {
		p, err := readProfile(path)
		if err != nil {
			return fail(err)
		}
		ps = append(ps, p)
	}
	f, err := os.Create(*out)
	if err != nil {
		return fail(err)
	}
	if err := hap.WriteHTML(f, ps...); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "hapscope: report of %d profiles written to %s\n", len(ps), *out)
	return 0
}
