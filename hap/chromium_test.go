package hap

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReportInChromium opens a report in headless Chromium (Debian's
// chromium package; no browser download) and checks that it loads without
// console errors and that the rendered DOM has one bar per profile with
// segments that add up to each profile's lines.
func TestReportInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HAPSCOPE_REQUIRE_LAB") == "1" {
			t.Fatal("chromium missing; make deps installs it")
		}
		t.Skip("chromium not installed (make deps installs it)")
	}
	dir := t.TempDir()
	a := New(Meta{Label: "native", Convergence: []Point{{At: time.Second, Functions: 2}, {At: 2 * time.Second, Functions: 5}}}, sample(), Options{})
	b := New(Meta{Label: "runc", Convergence: []Point{{At: time.Second, Functions: 1}, {At: 2 * time.Second, Functions: 3}}}, sample()[:3], Options{})
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, a, b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Uncaught") || strings.Contains(line, "net::ERR_") {
			t.Errorf("console error while loading the report: %s", line)
		}
	}
	dom := stdout.String()
	if !strings.Contains(dom, "Horizontal Attack Profile") {
		t.Fatalf("rendered DOM lacks the title:\n%.500s", dom)
	}
	bars := regexp.MustCompile(`(?s)<g class="bar" data-profile="([^"]*)" data-total="(\d+)".*?</g>`).FindAllStringSubmatch(dom, -1)
	if len(bars) != 2 || bars[0][1] != "native" || bars[1][1] != "runc" {
		t.Fatalf("rendered bars: %d, want native and runc", len(bars))
	}
	for i, p := range []*Profile{a, b} {
		segs := regexp.MustCompile(`<rect class="seg"[^>]*data-lines="(\d+)"`).FindAllStringSubmatch(bars[i][0], -1)
		sum := 0
		for _, s := range segs {
			n := 0
			for _, c := range s[1] {
				n = n*10 + int(c-'0')
			}
			sum += n
		}
		if len(segs) != len(p.Subsystems) || sum != p.Lines.Total {
			t.Errorf("bar %s: %d segments summing to %d, want %d segments summing to %d", p.Label, len(segs), sum, len(p.Subsystems), p.Lines.Total)
		}
	}
	if n := strings.Count(dom, `class="curve"`); n != 2 {
		t.Errorf("%d convergence curves rendered, want 2", n)
	}
}
