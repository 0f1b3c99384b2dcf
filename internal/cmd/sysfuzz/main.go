// Command sysfuzz generates typed Linux x86-64 system call programs and
// runs them (see package sysfuzz). It is meant to run unprivileged in a
// sandbox whose host-kernel coverage is measured from outside, and refuses
// to run programs as root unless given -allow-root.
//
//	sysfuzz gen -seed N -n COUNT [-calls L]          print COUNT programs, a blank line after each
//	sysfuzz serve -dir DIR [-allow-root] [-listen ADDR] [-user UID:GID]
//	                                                 run programs read from stdin, or from each TCP
//	                                                 connection to ADDR (the line protocol); as root,
//	                                                 -user drops to UID:GID first
//	sysfuzz run -seed N -n COUNT -dir DIR [-calls L] [-allow-root]
//	                                                 generate and run COUNT programs; print calls per
//	                                                 syscall and an errno histogram
//
// gen and run draw the same stream, so `sysfuzz gen -seed 1 -n 10 | sysfuzz
// serve -dir DIR` runs what `sysfuzz run -seed 1 -n 10 -dir DIR` runs.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/hapscope/hapscope/internal/sysfuzz"
	"golang.org/x/sys/unix"
)

const usage = `usage:
  sysfuzz gen -seed N -n COUNT [-calls L]
  sysfuzz serve -dir DIR [-allow-root] [-listen ADDR] [-user UID:GID]
  sysfuzz run -seed N -n COUNT -dir DIR [-calls L] [-allow-root]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "gen":
		err = gen(args)
	case "serve":
		err = serve(args)
	case "run":
		err = run(args)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sysfuzz:", err)
		os.Exit(1)
	}
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	seed := fs.Uint64("seed", 1, "random seed")
	n := fs.Int("n", 10, "number of programs")
	calls := fs.Int("calls", sysfuzz.DefaultCalls, "calls per generated program")
	fs.Parse(args)
	w := bufio.NewWriter(os.Stdout)
	s := sysfuzz.NewStream(*seed, *calls)
	for range *n {
		w.WriteString(s.Next().String())
		w.WriteByte('\n')
	}
	return w.Flush()
}

func serve(args []string) error {
	return sysfuzz.ServeCommand(args, os.Stdin, os.Stdout, os.Stderr)
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	seed := fs.Uint64("seed", 1, "random seed")
	n := fs.Int("n", 100, "number of programs")
	calls := fs.Int("calls", sysfuzz.DefaultCalls, "calls per generated program")
	dir := fs.String("dir", "", "work dir (emptied before and after every program)")
	allowRoot := fs.Bool("allow-root", false, "run even as root")
	fs.Parse(args)
	e, err := sysfuzz.NewExecutor(*dir, *allowRoot)
	if err != nil {
		return err
	}
	type count struct{ calls, errors, skipped int }
	perCall := map[string]*count{}
	errnos := map[string]int{}
	var total count
	s := sysfuzz.NewStream(*seed, *calls)
	for range *n {
		p := s.Next()
		res, err := e.Run(p)
		if err != nil {
			return err
		}
		for i, r := range res.Calls {
			name := p.Calls[i].Meta.Name
			c := perCall[name]
			if c == nil {
				c = &count{}
				perCall[name] = c
			}
			switch {
			case !r.Ran:
				c.skipped++
				total.skipped++
				continue
			case r.Errno != 0:
				c.errors++
				total.errors++
				errnos[unix.ErrnoName(r.Errno)]++
			default:
				errnos["OK"]++
			}
			c.calls++
			total.calls++
		}
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "programs %d, calls %d, failed %d, skipped %d\n", *n, total.calls, total.errors, total.skipped)
	fmt.Fprintf(w, "\n%-20s %8s %8s %8s\n", "syscall", "calls", "errors", "skipped")
	names := make([]string, 0, len(perCall))
	for k := range perCall {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		c := perCall[k]
		fmt.Fprintf(w, "%-20s %8d %8d %8d\n", k, c.calls, c.errors, c.skipped)
	}
	fmt.Fprintf(w, "\n%-20s %8s\n", "errno", "calls")
	names = names[:0]
	for k := range errnos {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return errnos[b] - errnos[a] })
	for _, k := range names {
		fmt.Fprintf(w, "%-20s %8d\n", k, errnos[k])
	}
	return w.Flush()
}
