// Command hapscope measures the Horizontal Attack Profile of a workload: the
// host-kernel code it drives, in functions and source lines.
//
// Usage:
//
//	hapscope <command> [flags] [args]
//
// Each command lives in its own file (cmd_*.go) and registers itself in init.
//
// Exit codes: 0 success (and -h, which prints the usage on stdout);
// 1 the command failed (stderr says why and what to do; for doctor: this
// kernel cannot be traced); 2 usage error (bad flag or value: stderr names
// it); 3 the measured workload failed (run: non-zero exit or ended before the
// window), so nothing was scored; 4 doctor only: hapscope lacks the
// privileges to find out whether this kernel can be traced (run it as root,
// or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); 130 interrupted
// (SIGINT/SIGTERM) before a score: the tracer is detached and the workload
// stopped.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
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

// Exit statuses shared by several commands; the others are in the
// package doc.
const (
	exitFailed = 1
	exitUsage  = 2
)

// current is the name of the command being run, for messages.
var current string

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hapscope <command> [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'hapscope <command> -h' for a command's flags.")
}

// parseFlags parses args into fs. -h or -help prints the usage once, on
// stdout, and returns (0, false): asking for help is not an error. A bad
// flag prints the flag package's message and the usage on stderr and
// returns (exitUsage, false).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	fs.SetOutput(nil) // later usage messages go to stderr
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		os.Stdout.Write(msg.Bytes())
		return 0, false
	default:
		os.Stderr.Write(msg.Bytes())
		return exitUsage, false
	}
}

// usageError reports a bad flag value or argument and returns exitUsage.
func usageError(err error) int {
	fmt.Fprintf(os.Stderr, "hapscope %s: %v\nRun 'hapscope %s -h' for its flags.\n", current, err, current)
	return exitUsage
}

// fail prints err as "hapscope CMD: err" and returns exitFailed.
func fail(err error) int {
	fmt.Fprintf(os.Stderr, "hapscope %s: %v\n", current, err)
	return exitFailed
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(exitUsage)
	}
	switch os.Args[1] {
	case "-h", "-help", "--help", "help":
		usage(os.Stdout)
		os.Exit(0)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "hapscope: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(exitUsage)
	}
	current = os.Args[1]
	os.Exit(c.run(os.Args[2:]))
}
