package matrix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ports of the HTTP workloads.
const (
	tornadoPort = 8891
	expressPort = 8892
)

// tornadoApp is the 2018 study's python-tornado hello world.
const tornadoApp = `import tornado.ioloop, tornado.web
class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, world")
app = tornado.web.Application([(r"/", Hello)])
app.listen(%d, address="0.0.0.0")
tornado.ioloop.IOLoop.current().start()
`

// expressApp is the 2018 study's node-express hello world; %q is the
// express module directory.
const expressApp = `const express = require(%q);
const app = express();
app.get("/", (req, res) => res.send("Hello, world"));
app.listen(%d, "0.0.0.0");
`

// Tornado is a python3-tornado hello world (Debian's python3-tornado, run by
// Debian's /usr/bin/python3, not whatever python3 is first on PATH) driven
// by wrk, as in the 2018 study.
func Tornado() Workload {
	return Workload{
		Name: "python-tornado",
		Service: Service{
			Argv: []string{"/usr/bin/python3", "-c", fmt.Sprintf(tornadoApp, tornadoPort)},
			Port: tornadoPort,
			// Debian's python3.11 standard library and tornado, for an image.
			Files: []string{"/usr/lib/python3.11", "/usr/lib/python3/dist-packages/tornado"},
			Ready: httpReady,
		},
		Load: wrkLoad,
	}
}

// Express is a node express hello world driven by wrk, as in the 2018
// study. dir is the express package directory (…/node_modules/express) as
// a path inside Env.Root; `npm install express` puts it there (the lab has
// no network, so it is installed on the host beforehand).
func Express(dir string) Workload {
	return Workload{
		Name: "node-express",
		Service: Service{
			Argv: []string{"/usr/bin/node", "-e", fmt.Sprintf(expressApp, dir, expressPort)},
			Port: expressPort,
			// express and the packages beside it that it requires.
			Files: []string{filepath.Dir(dir)},
			Ready: httpReady,
		},
		Load: wrkLoad,
	}
}

// httpReady expects a 200 answer to GET /.
func httpReady(ctx context.Context, addr string) error {
	return tcpCheck(ctx, addr, "GET / HTTP/1.0\r\nHost: "+addr+"\r\n\r\n", "HTTP/1.")
}

// wrkLoad runs Debian's wrk against port until ctx ends, outside the
// measured cgroup, then stops it with SIGINT (wrk then prints its totals)
// and parses what it achieved.
func wrkLoad(ctx context.Context, e *Env, addr string) (LoadResult, error) {
	// The command's own context outlives ctx: wrk must be interrupted, not
	// killed, to print its report.
	c := e.command(context.Background(), -1, "wrk", "-t1", "-c4", "-d1h", "--timeout", "10s",
		"http://"+addr+"/")
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return LoadResult{}, fmt.Errorf("start wrk (Debian package wrk): %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
		return LoadResult{}, fmt.Errorf("wrk ended before the window did: %v: %s", err, strings.TrimSpace(out.String()))
	case <-ctx.Done():
	}
	c.Process.Signal(syscall.SIGINT)
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
		return LoadResult{}, fmt.Errorf("wrk did not stop on SIGINT (is SIGINT ignored by the parent?): %s", strings.TrimSpace(out.String()))
	}
	r, perr := parseWrk(out.String())
	if perr != nil {
		return r, fmt.Errorf("wrk (exit %v): %w", err, perr)
	}
	return r, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)\s*$`)
	wrkUnitDur = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}
)

// parseWrk reads wrk's report: "N requests in T, …", and the optional
// "Socket errors: …" and "Non-2xx or 3xx responses: N" lines, all of which
// count as errors.
func parseWrk(s string) (LoadResult, error) {
	var r LoadResult
	m := wrkTotal.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("no %q line in wrk's output: %s", "N requests in T", firstLine(s))
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return r, fmt.Errorf("wrk request count %q: %w", m[1], err)
	}
	f, err := strconv.ParseFloat(m[2], 64)
	if err != nil || f < 0 || f > 1e9 {
		return r, fmt.Errorf("wrk duration %q%s", m[2], m[3])
	}
	r.Requests = n
	r.Elapsed = time.Duration(f * float64(wrkUnitDur[m[3]]))
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			k, err := strconv.Atoi(v)
			if err != nil {
				return r, fmt.Errorf("wrk socket errors %q: %w", v, err)
			}
			r.Errors += k
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		k, err := strconv.Atoi(m[1])
		if err != nil {
			return r, fmt.Errorf("wrk non-2xx count %q: %w", m[1], err)
		}
		r.Errors += k
	}
	if r.Errors < 0 {
		return r, errors.New("wrk error counts overflow")
	}
	return r, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return strconv.Quote(s)
}
