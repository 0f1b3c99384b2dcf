package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSymbolizeCLI runs `hapscope index` and `hapscope symbolize` on the
// symbolize package's gcc fixture (no kernel needed).
func TestSymbolizeCLI(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	vm := fixture(t)
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(cmd.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String(), e.String(), err
	}
	// The fixture is not the running kernel: without --release/--build-id
	// the build-id check refuses it.
	if _, stderr, err := run("index", "-q", "--vmlinux", vm); err == nil || !strings.Contains(stderr, "build-id") {
		t.Errorf("index of a foreign vmlinux: err %v, stderr %q; want a build-id refusal", err, stderr)
	}
	out, stderr, err := run("index", "-q", "--vmlinux", vm, "--release", "fixture")
	if err != nil || !strings.Contains(out, ".hsidx") {
		t.Fatalf("index: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = run("symbolize", "-q", "--vmlinux", vm, "--release", "fixture", "--json", "outer", "split.cold")
	if err != nil {
		t.Fatalf("symbolize: %v\n%s", err, stderr)
	}
	var got []jsonFunc
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].Name != "outer" || got[1].Name != "split" || len(got[1].Ranges) != 2 {
		t.Fatalf("got %+v", got)
	}
	if l := got[0].Own["a.c"]; len(l) == 0 || l[0] != 19 || len(got[0].Inlined["hdr.h"]) == 0 {
		t.Errorf("outer: own %v inlined %v", got[0].Own, got[0].Inlined)
	}
	out, stderr, err = run("symbolize", "-q", "--vmlinux", vm, "--release", "fixture", "outer", "nosuch")
	if err == nil || !strings.Contains(stderr, "nosuch") || !strings.Contains(out, "own      a.c:19-24") {
		t.Errorf("text output / missing name: err %v\n%s%s", err, out, stderr)
	}
}

// fixture compiles the symbolize package's gcc fixture and returns its path.
func fixture(t *testing.T) string {
	t.Helper()
	vm := filepath.Join(t.TempDir(), "fixture")
	cc := exec.Command("gcc", "-O2", "-g", "-o", vm, "a.c", "b.c")
	cc.Dir = filepath.Join("..", "..", "symbolize", "testdata", "fixture")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return vm
}

// TestIndexProgressInLog: with stderr a pipe (a log), the index build's
// progress is a start line and an end line, with no carriage-return frames.
func TestIndexProgressInLog(t *testing.T) {
	vm := fixture(t)
	r := cli(t, "index", "--vmlinux", vm, "--release", "fixture")
	if r.code != 0 {
		t.Fatalf("index: exit %d\n%s", r.code, r.stderr)
	}
	if strings.ContainsRune(r.stderr, '\r') {
		t.Errorf("carriage returns in piped stderr: %q", r.stderr)
	}
	// A start line ("… N compile units …") unless the first report is
	// already the last (the fixture has 2 units), then the end line.
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "hapscope: index DWARF: ") {
			t.Errorf("stderr line %q is not an index stage line", l)
		}
	}
	if len(lines) > 2 || !strings.Contains(lines[len(lines)-1], " compile units in ") {
		t.Errorf("stderr %q: want at most a start and an end line of the index stage", r.stderr)
	}
}
