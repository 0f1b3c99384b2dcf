package lab

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TestOutcome is the result a test binary reported for one test, subtest or
// benchmark ("--- PASS/FAIL/SKIP: Name (1.23s)").
type TestOutcome struct {
	Package string
	Name    string // "TestX", or "TestX/sub" for a subtest
	Action  string // "pass", "fail" or "skip"
	Elapsed time.Duration
	// Message is the last entry the test logged before it ended, without
	// its "file.go:NN: " prefix: for a skip, what t.Skip was given.
	Message string
}

// Top is the name of the top-level test the outcome belongs to.
func (o TestOutcome) Top() string {
	top, _, _ := strings.Cut(o.Name, "/")
	return top
}

// testMarker starts every framing line a test binary prints under
// -test.v=test2json ("=== RUN", "--- SKIP: ", ...); output the tests
// themselves print never carries it.
const testMarker = '\x16'

var (
	statusLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (.+) \(([0-9]+(?:\.[0-9]+)?)s\)$`)
	// logEntry is the start of a t.Log entry: indentation, then "file.go:NN: ".
	logEntry = regexp.MustCompile(`^( +)[^ :]+\.go:[0-9]+: ?`)
)

// maxMessageLines bounds the lines kept of one log entry.
const maxMessageLines = 20

// ParseTestOutput reads the combined output of a Go test binary run with
// -test.v=test2json and returns the outcome of every test, subtest and
// benchmark that reported one, in the order they did. Output lines are
// attributed to the test the last framing line named (=== RUN, CONT, NAME,
// PAUSE), as cmd/test2json does, so that a skip's message is found even
// when parallel tests interleave. Lines without the framing marker are
// never taken for a status line, whatever they say.
func ParseTestOutput(pkg string, r io.Reader) ([]TestOutcome, error) {
	var (
		out  []TestOutcome
		cur  string
		last = map[string][]string{} // last log entry of each test
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.IndexByte(line, testMarker) == 0 {
			frame := strings.TrimLeft(line[1:], " ")
			if name, ok := frameName(frame); ok {
				cur = name
				if strings.HasPrefix(frame, "=== RUN") {
					delete(last, name)
				}
				continue
			}
			if m := statusLine.FindStringSubmatch(frame); m != nil {
				secs, _ := strconv.ParseFloat(m[3], 64)
				o := TestOutcome{Package: pkg, Name: m[2], Action: strings.ToLower(m[1]),
					Elapsed: time.Duration(secs * float64(time.Second))}
				o.Message = strings.Join(last[o.Name], "\n")
				delete(last, o.Name)
				out = append(out, o)
			}
			continue
		}
		if cur == "" {
			continue
		}
		if m := logEntry.FindStringSubmatchIndex(line); m != nil {
			last[cur] = []string{line[m[1]:]}
			continue
		}
		// A continuation line of a multi-line entry is indented by four
		// more spaces than the entry's own "file.go:NN:" line.
		if e := last[cur]; len(e) > 0 && len(e) < maxMessageLines && strings.HasPrefix(line, "        ") {
			last[cur] = append(e, strings.TrimLeft(line, " "))
		}
	}
	return out, sc.Err()
}

// frameName returns the test named by a "=== RUN/CONT/NAME/PAUSE" line.
func frameName(frame string) (string, bool) {
	for _, p := range []string{"=== RUN", "=== CONT", "=== NAME", "=== PAUSE"} {
		if rest, ok := strings.CutPrefix(frame, p); ok && (rest == "" || rest[0] == ' ') {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}
