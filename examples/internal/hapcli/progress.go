package hapcli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/hapscope/hapscope/coverage"
)

// Progress shows the stages of a measurement (attach, detach, index
// build). On a terminal it draws a bar per stage; otherwise (a log file, a
// pipe) it writes one line when a stage starts and one when it ends, so logs
// hold no carriage-return frames. Its methods may be called concurrently.
type Progress struct {
	w      io.Writer
	prefix string
	tty    bool
	now    func() time.Time

	mu    sync.Mutex
	name  string // stage description, "" before the first
	unit  string // singular
	start time.Time
	done  int
	total int
	ended bool
	bar   *progressbar.ProgressBar
}

// NewProgress writes to f, with bars only if f is a terminal. Each line
// starts with prefix.
func NewProgress(f *os.File, prefix string) *Progress {
	return &Progress{w: f, prefix: prefix, tty: term.IsTerminal(int(f.Fd())), now: time.Now}
}

// Coverage reports a coverage.Tracer stage (coverage.Options.Progress).
func (p *Progress) Coverage(c coverage.Progress) {
	name := c.Stage
	if c.Backend != "" {
		name += " " + string(c.Backend)
	}
	unit := "function" // attach counts functions
	if c.Stage == "detach" {
		unit = "link" // one per function with fentry and kprobe, a few with kprobe.multi
	}
	p.update(name, unit, c.Done, c.Total)
}

// Index reports the build of a line index (symbolize.Options.Progress).
func (p *Progress) Index(done, total int) {
	p.update("index DWARF", "compile unit", done, total)
}

func (p *Progress) update(name, unit string, done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name != p.name || p.ended || done < p.done {
		p.finish()
		p.name, p.unit, p.start, p.total, p.ended = name, unit, p.now(), total, false
		if p.tty {
			p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.prefix+name), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		} else if done < total {
			fmt.Fprintf(p.w, "%s%s: %s …\n", p.prefix, name, count(total, unit))
		}
	}
	p.done = done
	if p.bar != nil {
		p.bar.Set(done)
	}
	if done >= total {
		p.finish()
	}
}

// finish ends the current stage, if one is open: it clears the bar, or
// writes the stage's end line.
func (p *Progress) finish() {
	if p.name == "" || p.ended {
		return
	}
	p.ended = true
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
		return
	}
	took := p.now().Sub(p.start).Round(time.Millisecond)
	if p.done >= p.total {
		fmt.Fprintf(p.w, "%s%s: %s in %s\n", p.prefix, p.name, count(p.total, p.unit), took)
	} else {
		fmt.Fprintf(p.w, "%s%s: stopped after %d of %s, %s\n", p.prefix, p.name, p.done, count(p.total, p.unit), took)
	}
}

// count writes n units: "1 link", "42 links".
func count(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
