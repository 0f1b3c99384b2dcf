// Command hapscope measures the Horizontal Attack Profile of a workload: the
// host-kernel code it drives, in functions and source lines.
//
// Usage:
//
//	hapscope <command> [flags] [args]
//
// Each command lives in its own file (cmd_*.go) and registers itself in init.
//
// Exit codes: 0 success; 1 the command failed (stderr says why and what to
// do; for doctor: this kernel cannot be traced); 2 usage error; 3 the
// measured workload failed (run: non-zero exit or ended before the window),
// so nothing was scored; 130 interrupted (SIGINT/SIGTERM) before a score:
// the tracer is detached and the workload stopped.
package main

import (
	"fmt"
	"os"
	"sort"
)

// command is one hapscope subcommand.
type command struct {
	summary string
	run     func(args []string) int // returns the process exit code
}

var commands = map[string]command{}

// register adds a subcommand; called from init functions of cmd_*.go files.
func register(name, summary string, run func(args []string) int) {
	if _, dup := commands[name]; dup {
		panic("hapscope: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hapscope <command> [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'hapscope <command> -h' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "hapscope: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
