package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/sysfuzz"
)

// TestServe runs hand-written harmless programs through the protocol
// (generated programs are not run outside the lab).
func TestServe(t *testing.T) {
	in := `# a comment line
r0 = pipe2(&out, O_NONBLOCK)
write(r0.1, buf(0x3, "abc"), 0x3)
read(r0.0, buf(0x10), 0x10)
read(r0.0, buf(0x10), 0x10)


r0 = openat(AT_FDCWD, "../escape", O_RDWR|O_CREAT, 0x180)

this is not a program

r0 = eventfd2(0x1, EFD_NONBLOCK)
read(r0, buf(0x8), 0x8)`
	var out, errs bytes.Buffer
	e := &sysfuzz.Executor{Dir: t.TempDir()}
	if err := sysfuzz.Serve(e, strings.NewReader(in), &out, &errs); err != nil {
		t.Fatal(err)
	}
	want := "done 0 4 1\ndone 1 0 -1\ndone 2 0 -1\ndone 3 2 0\n"
	if out.String() != want {
		t.Errorf("got\n%swant\n%s", out.String(), want)
	}
	if n := strings.Count(errs.String(), "\n"); n != 2 {
		t.Errorf("stderr:\n%s", errs.String())
	}
}

func TestGenParses(t *testing.T) {
	s := sysfuzz.NewStream(1, sysfuzz.DefaultCalls)
	for range 100 {
		p := s.Next()
		q, err := sysfuzz.Parse(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("%v\n%s", err, p)
		}
	}
}
