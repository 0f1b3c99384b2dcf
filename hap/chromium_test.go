package hap

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReportInChromium opens a report in headless Chromium (Debian's
// chromium package; no browser download) and checks that it loads without
// errors, that the DOM Chromium parsed has one bar per profile with
// segments that add up to each profile's lines, and that the bars are
// drawn: a screenshot holds, for each segment colour, at least the pixels
// the segments of that colour cover. The page has no scripts, so the DOM
// alone would pass for a page that parses but draws nothing (an SVG
// outside its namespace, a zero or NaN width, a style that hides it).
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
	chromium := func(args ...string) (stdout, stderr bytes.Buffer) {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir=" + filepath.Join(dir, "profile"),
			"--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000"}, append(args, "file://"+page)...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		return stdout, stderr
	}
	stdout, stderr := chromium("--dump-dom")
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

	// What the segments of each colour cover, from the page's markup.
	want := map[color.RGBA]float64{}
	for _, m := range regexp.MustCompile(`<rect class="seg"[^>]* width="([0-9.]+)" height="([0-9.]+)" fill="#([0-9a-f]{6})"`).FindAllStringSubmatch(dom, -1) {
		w, _ := strconv.ParseFloat(m[1], 64)
		h, _ := strconv.ParseFloat(m[2], 64)
		var c color.RGBA
		fmt.Sscanf(m[3], "%02x%02x%02x", &c.R, &c.G, &c.B)
		c.A = 0xff
		want[c] += w * h
	}
	if len(want) < 3 {
		t.Fatalf("%d segment colours in the markup, want at least 3", len(want))
	}
	shot := filepath.Join(dir, "report.png")
	chromium("--force-device-scale-factor=1", "--window-size=1000,1600", "--hide-scrollbars", "--screenshot="+shot)
	f, err = os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	got := map[color.RGBA]float64{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			if _, ok := want[c]; ok {
				got[c]++
			}
		}
	}
	for c, area := range want {
		// Edges are anti-aliased; the legend and the curves add pixels of
		// some colours, never remove any.
		if got[c] < 0.9*area {
			t.Errorf("colour #%02x%02x%02x: %.0f pixels in the screenshot, want at least %.0f (90%% of its segments' area)", c.R, c.G, c.B, got[c], 0.9*area)
		}
	}
}
