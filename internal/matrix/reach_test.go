package matrix

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hapscope/hapscope/internal/sysfuzz"
)

// The fuzzer's load runs getpid() programs over one connection and counts
// each answered one; Fuzzer's service answers its readiness check without
// a program.
func TestFuzzerLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errw strings.Builder
	go sysfuzz.ServeListener(&sysfuzz.Executor{Dir: t.TempDir()}, ln, &errw)
	w := Fuzzer("/sysfuzz", "serve")
	if got := strings.Join(w.Service.Argv, " "); got != "/sysfuzz serve -listen :20100 -dir /tmp/sysfuzz -user 65534:65534" {
		t.Errorf("argv %q", got)
	}
	ctx := context.Background()
	if err := w.Service.Ready(ctx, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	r, err := w.Load(lctx, nil, ln.Addr().String())
	if err != nil || r.Requests == 0 || r.Errors != 0 || r.Elapsed < 300*time.Millisecond {
		t.Errorf("load: %+v, %v; want requests, no errors, the whole 300ms", r, err)
	}
	if errw.Len() > 0 {
		t.Errorf("fuzzer said: %s", errw.String())
	}
}
