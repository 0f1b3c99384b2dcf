//go:build linux && amd64

package sysfuzz

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Serve speaks the driver protocol (see the package doc) until r ends:
// programs from r, each ended by a blank line or EOF; one "done <id>
// <calls> <errors>" line per program to w, the reason a program was
// refused to errw. It stops at the first ErrWorkDir.
func Serve(e *Executor, r io.Reader, w, errw io.Writer) error {
	in := bufio.NewReader(r)
	out := bufio.NewWriter(w)
	id := 0
	var prog strings.Builder
	flush := func() error {
		text := prog.String()
		prog.Reset()
		if strings.TrimSpace(text) == "" {
			return nil
		}
		calls, errs := 0, -1
		p, err := Parse(text)
		if err == nil {
			var res *Result
			res, err = e.Run(p)
			if res != nil {
				calls, errs = res.Ran(), res.Errors()
			}
		}
		if err != nil {
			fmt.Fprintf(errw, "sysfuzz: program %d: %v\n", id, err)
			if errors.Is(err, ErrWorkDir) {
				return err
			}
		}
		fmt.Fprintf(out, "done %d %d %d\n", id, calls, errs)
		id++
		return out.Flush()
	}
	for {
		line, rerr := in.ReadString('\n')
		if strings.TrimSpace(line) == "" {
			if err := flush(); err != nil {
				return err
			}
		} else {
			if prog.Len()+len(line) > maxProgText {
				return fmt.Errorf("program %d: longer than %d bytes", id, maxProgText)
			}
			prog.WriteString(line)
		}
		if rerr == io.EOF {
			return flush()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// maxProgText bounds one program's text.
const maxProgText = 64 << 20

// ServeListener serves the driver protocol on each connection ln accepts,
// one at a time, until ln fails or a program breaks the work dir
// (ErrWorkDir): how a fuzzer inside a sandbox is driven from outside it.
// A connection's end ends its session (the next starts at program 0); a
// connection that sends nothing (a readiness check) costs nothing.
func ServeListener(e *Executor, ln net.Listener, errw io.Writer) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		err = Serve(e, c, c, errw)
		c.Close()
		if errors.Is(err, ErrWorkDir) {
			return err
		}
		if err != nil {
			fmt.Fprintf(errw, "sysfuzz: session from %s: %v\n", c.RemoteAddr(), err)
		}
	}
}

// DropPrivileges makes every thread of the process uid and gid with no
// supplementary groups; from root that also clears its capabilities.
// A fuzzer started as a sandbox's root calls it before any program runs.
func DropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop privileges: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", uid, err)
	}
	if os.Geteuid() != uid || os.Getegid() != gid {
		return fmt.Errorf("drop privileges: still uid %d gid %d", os.Geteuid(), os.Getegid())
	}
	return nil
}

// NewExecutor is an executor in dir, which it makes (mode 0700) and which
// must be empty: the executor empties it before and after every program.
// It refuses to run as root unless allowRoot: programs are meant to run as
// a user the sandbox does not trust.
func NewExecutor(dir string, allowRoot bool) (*Executor, error) {
	if dir == "" {
		return nil, errors.New("-dir is required")
	}
	if os.Geteuid() == 0 && !allowRoot {
		return nil, errors.New("refusing to run programs as root (meant for an unprivileged sandbox); -user drops to another user, -allow-root overrides")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("work dir %s is not empty", dir)
	}
	return &Executor{Dir: dir}, nil
}

// ServeCommand is `sysfuzz serve` with its flags in args: the driver
// protocol on stdin and stdout, or with -listen on each TCP connection to
// an address; with -user, the process first drops from root to that user
// (after making the work dir its own).
func ServeCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "work dir (emptied before and after every program)")
	allowRoot := fs.Bool("allow-root", false, "run even as root")
	listen := fs.String("listen", "", "serve each TCP connection to this address (host:port) instead of stdin")
	user := fs.String("user", "", "UID:GID to drop to from root before serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user != "" {
		var uid, gid int
		if _, err := fmt.Sscanf(*user, "%d:%d", &uid, &gid); err != nil || uid <= 0 || gid <= 0 {
			return fmt.Errorf("-user %q: want UID:GID, both above 0", *user)
		}
		if *dir != "" {
			// The parents (a sandbox image may have no /tmp) must let the
			// user through.
			if err := os.MkdirAll(filepath.Dir(*dir), 0o755); err != nil {
				return err
			}
			if err := os.MkdirAll(*dir, 0o700); err != nil {
				return err
			}
			if err := os.Chown(*dir, uid, gid); err != nil {
				return err
			}
		}
		if err := DropPrivileges(uid, gid); err != nil {
			return err
		}
	}
	e, err := NewExecutor(*dir, *allowRoot)
	if err != nil {
		return err
	}
	if *listen == "" {
		return Serve(e, stdin, stdout, stderr)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	return ServeListener(e, ln, stderr)
}
