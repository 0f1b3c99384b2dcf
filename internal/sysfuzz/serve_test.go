//go:build linux && amd64

package sysfuzz

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestNewExecutorChecks(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewExecutor("", true); err == nil {
		t.Error("accepted an empty -dir")
	}
	if err := os.WriteFile(dir+"/keep", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewExecutor(dir, true); err == nil {
		t.Error("accepted a non-empty work dir")
	}
	if os.Geteuid() == 0 {
		if _, err := NewExecutor(t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "-user") {
			t.Errorf("root without -allow-root: err %v, want a refusal naming -user", err)
		}
	}
}

// ServeListener serves one connection after another, each a session of
// its own from program 0; a connection that sends nothing costs nothing;
// closing the listener ends it.
func TestServeListener(t *testing.T) {
	e := &Executor{Dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var errw strings.Builder
	done := make(chan error, 1)
	go func() { done <- ServeListener(e, ln, &errw) }()
	session := func(progs ...string) []string {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var answers []string
		for _, p := range progs {
			if _, err := io.WriteString(c, p+"\n\n"); err != nil {
				t.Fatal(err)
			}
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("no answer to %q: %v", p, err)
			}
			answers = append(answers, strings.TrimSpace(line))
		}
		return answers
	}
	if got := session(); len(got) != 0 {
		t.Errorf("empty session answered %v", got)
	}
	want := []string{"done 0 2 0", "done 1 0 -1"}
	if got := session("getpid()\ngettid()", "nosuchcall()"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("first session: %v, want %v", got, want)
	}
	if got := session("getpid()"); fmt.Sprint(got) != "[done 0 1 0]" {
		t.Errorf("second session: %v, want [done 0 1 0]: each connection starts at program 0", got)
	}
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeListener after Close: %v", err)
	}
	if !strings.Contains(errw.String(), "program 1") {
		t.Errorf("the refused program was not reported: %q", errw.String())
	}
}

// dropEnv makes this test binary drop to the user it names and report.
const dropEnv = "HAPSCOPE_SYSFUZZ_DROP"

func init() {
	if dir := os.Getenv(dropEnv); dir != "" {
		if err := DropPrivileges(65534, 65534); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		_, err := NewExecutor(dir, false)
		groups, _ := os.Getgroups()
		fmt.Printf("uid %d gid %d groups %v executor error %v\n", os.Geteuid(), os.Getegid(), groups, err)
		os.Exit(0)
	}
}

// DropPrivileges from root leaves a process that is nobody on every count
// and may run programs without -allow-root.
func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping privileges needs root; this is not a lab test")
	}
	dir, err := os.MkdirTemp("", "sysfuzz-drop-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), dropEnv+"="+dir+"/work")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "uid 65534 gid 65534 groups [] executor error <nil>" {
		t.Errorf("after DropPrivileges: %s", got)
	}
}
