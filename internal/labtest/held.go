package labtest

import (
	"bufio"
	"io"
	"os/exec"
	"testing"
)

// StartHeld starts cmd, a helper that prints "waiting" on stdout and then
// blocks reading stdin, and returns once it is waiting: the caller attaches
// its tracers to a process that has not yet run its workload, then writes to
// the returned stdin to let it go. cmd's stdin and stdout must be unset. The
// helper is killed when the test ends.
func StartHeld(t testing.TB, cmd *exec.Cmd) io.WriteCloser {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "waiting\n" {
		t.Fatalf("helper %s: %q, want \"waiting\"", cmd.Path, l)
	}
	return stdin
}
