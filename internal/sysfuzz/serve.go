//go:build linux && amd64

package sysfuzz

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
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
