// Package reach measures reachable HAP: the host-kernel functions a program
// running inside a sandbox can drive. A system call fuzzer (package sysfuzz,
// speaking its driver protocol, as `sysfuzz serve` does) runs in the
// sandbox; its cgroup is a coverage scope; after each program the driver
// reads the scope's function set, and, guided, keeps the programs that
// reached functions no earlier program had and mutates them.
//
// The unguided baseline is the same generator without feedback: sysfuzz's
// Stream, fresh programs and mutations of recent ones. The guided run draws
// from the same random source in the same proportions (one program in three
// a mutation, once there is something to mutate), but mutates only programs
// that found new functions. So the two differ in feedback alone, and the
// unguided stream of a seed is the same everywhere.
//
// Budgets are counted in programs, not time: the lab's emulation runs
// programs at a speed no host does, so a time budget would not compare.
package reach

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/coverage"
	"github.com/hapscope/hapscope/internal/sysfuzz"
)

// Options configure a run.
type Options struct {
	Seed     uint64
	Programs int  // the budget
	Calls    int  // calls per generated program; 0: sysfuzz.DefaultCalls
	Guided   bool // coverage feedback on
	// Points is how many points of the growth curve to record, evenly
	// over the budget (default 20).
	Points int
	// Timeout bounds the wait for one program's answer (default 1 min): a
	// program that wedges the fuzzer ends the run with an error that
	// holds it.
	Timeout time.Duration
	// Progress, if set, is called at each point of the curve.
	Progress func(Point)
	// Before, if set, is called with each program's number and text
	// before the program is sent: where a program that crashes the kernel
	// is recorded first. An error ends the run.
	Before func(i int, text string) error
}

// Point is one point of the growth curve.
type Point struct {
	Programs  int `json:"programs"`
	Functions int `json:"functions"`
}

// Result is what a run reached.
type Result struct {
	// Snapshot is the scope's functions over the whole run.
	Snapshot *coverage.Snapshot
	Curve    []Point
	// Corpus holds the programs (text) that reached new functions, in
	// order: those a guided run mutates.
	Corpus []string
	// Calls and Errors count the calls the fuzzer made and those that
	// failed; Refused counts programs it did not run (it validates every
	// program; a refusal is a bug of the generator).
	Calls, Errors, Refused int
}

// Fuzzer is a sysfuzz executor speaking the driver protocol: programs are
// written to In, answers read from Out.
type Fuzzer struct {
	In  io.Writer
	Out io.Reader
}

// Run drives f for opt.Programs programs and returns the functions reached.
// snapshot reads the coverage of the cgroup the fuzzer runs in, as
// (*coverage.Tracer).Snapshot of its scope does; the scope is not reset,
// so its snapshot grows with every program, from what the fuzzer's own
// start-up drove (the same for every sandbox running the same fuzzer).
func Run(ctx context.Context, snapshot func() (*coverage.Snapshot, error), f Fuzzer, opt Options) (*Result, error) {
	if opt.Programs <= 0 {
		return nil, errors.New("reach: the budget (Options.Programs) must be positive")
	}
	if opt.Calls <= 0 {
		opt.Calls = sysfuzz.DefaultCalls
	}
	if opt.Points <= 0 {
		opt.Points = 20
	}
	if opt.Timeout <= 0 {
		opt.Timeout = time.Minute
	}
	answers := make(chan answer)
	stop := make(chan struct{})
	defer close(stop)
	go readAnswers(f.Out, answers, stop)
	src := newSource(opt)
	res := &Result{}
	seen := 0
	if snap, err := snapshot(); err == nil {
		seen = len(snap.Hits)
	} else {
		return nil, fmt.Errorf("reach: %w", err)
	}
	for i := 0; i < opt.Programs; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		p := src.next()
		text := p.String() // each call ends in a newline
		if strings.TrimSpace(text) == "" {
			text = "# no calls\n" // a program all the same: it is answered
		}
		if opt.Before != nil {
			if err := opt.Before(i, text); err != nil {
				return res, fmt.Errorf("reach: before program %d: %w", i, err)
			}
		}
		if _, err := io.WriteString(f.In, text+"\n"); err != nil {
			return res, fmt.Errorf("reach: send program %d: %w", i, err)
		}
		var a answer
		select {
		case a = <-answers:
		case <-time.After(opt.Timeout):
			return res, fmt.Errorf("reach: program %d got no answer in %v (the fuzzer is wedged); the program:\n%s", i, opt.Timeout, text)
		case <-ctx.Done():
			return res, ctx.Err()
		}
		if a.err != nil {
			return res, fmt.Errorf("reach: program %d: %w", i, a.err)
		}
		if a.id != i {
			return res, fmt.Errorf("reach: program %d answered as %d (the fuzzer lost track)", i, a.id)
		}
		if a.errors < 0 {
			res.Refused++
		} else {
			res.Calls += a.calls
			res.Errors += a.errors
		}
		snap, err := snapshot()
		if err != nil {
			return res, fmt.Errorf("reach: after program %d: %w", i, err)
		}
		grew := len(snap.Hits) > seen
		seen = len(snap.Hits)
		res.Snapshot = snap
		if grew {
			res.Corpus = append(res.Corpus, text)
		}
		src.feedback(p, grew)
		if n := i + 1; n == opt.Programs || n%max(1, opt.Programs/opt.Points) == 0 {
			pt := Point{Programs: n, Functions: seen}
			res.Curve = append(res.Curve, pt)
			if opt.Progress != nil {
				opt.Progress(pt)
			}
		}
	}
	return res, nil
}

// source draws the programs of a run: sysfuzz's Stream unguided; guided,
// the same draws with a pool of the programs that found new functions.
type source struct {
	stream *sysfuzz.Stream // unguided
	r      *rand.Rand
	calls  int
	corpus []*sysfuzz.Program
}

func newSource(opt Options) *source {
	if !opt.Guided {
		return &source{stream: sysfuzz.NewStream(opt.Seed, opt.Calls)}
	}
	return &source{r: sysfuzz.NewRand(opt.Seed), calls: opt.Calls}
}

func (s *source) next() *sysfuzz.Program {
	if s.stream != nil {
		return s.stream.Next()
	}
	if len(s.corpus) > 0 && s.r.IntN(3) == 0 {
		return sysfuzz.Mutate(s.r, s.corpus[s.r.IntN(len(s.corpus))])
	}
	return sysfuzz.Generate(s.r, s.calls)
}

// feedback tells the source whether p reached new functions.
func (s *source) feedback(p *sysfuzz.Program, grew bool) {
	if s.stream == nil && grew {
		s.corpus = append(s.corpus, p)
	}
}

type answer struct {
	id, calls, errors int
	err               error
}

// readAnswers parses "done <id> <calls> <errors>" lines from r until it
// ends (then it answers with the error, again and again) or stop closes.
func readAnswers(r io.Reader, out chan<- answer, stop <-chan struct{}) {
	send := func(a answer) bool {
		select {
		case out <- a:
			return true
		case <-stop:
			return false
		}
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if !send(parseAnswer(sc.Text())) {
			return
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	for send(answer{err: fmt.Errorf("the fuzzer's output ended: %w", err)}) {
	}
}

// parseAnswer parses one line of the driver protocol.
func parseAnswer(line string) answer {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "done" {
		return answer{err: fmt.Errorf("not a protocol line: %q", line)}
	}
	var n [3]int
	for i, s := range f[1:] {
		v, err := strconv.Atoi(s)
		if err != nil {
			return answer{err: fmt.Errorf("protocol line %q: %w", line, err)}
		}
		n[i] = v
	}
	if n[0] < 0 || n[1] < 0 || n[2] < -1 || n[2] > n[1] {
		return answer{err: fmt.Errorf("protocol line %q: counts out of range", line)}
	}
	return answer{id: n[0], calls: n[1], errors: n[2]}
}
