package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
)

// asExporter makes the test binary act as the exporter (the guest has no Go
// toolchain to build it).
const asExporter = "HAPSCOPE_TEST_AS_EXPORTER"

func TestMain(m *testing.M) {
	if os.Getenv(asExporter) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer that the exporter's stderr and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newCgroup makes a cgroup v2 directory under the lab's cgroup root.
func newCgroup(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return dir
}

// sample is one line of the Prometheus text format.
type sample struct {
	name, labels string
	value        float64
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$`)

func scrape(url string) ([]sample, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out []sample
	for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
		m := sampleLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		out = append(out, sample{m[1], m[2], v})
	}
	return out, nil
}

// find returns the samples of metric name whose labels include all of want
// (`key="value"` strings).
func find(ss []sample, name string, want ...string) []sample {
	var out []sample
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for _, w := range want {
			if !strings.Contains(s.labels, w) {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// TestLabExporter starts the exporter on a read/write loop's cgroup and on
// a cgroup removed once the tracer is attached, scrapes /metrics on the
// loopback after their windows, and checks both: the loop's samples, and
// that the failing cgroup is counted while the exporter keeps serving.
func TestLabExporter(t *testing.T) {
	labtest.Require(t)
	// On 6.1 fentry attaches one program per function: the whole catalogue
	// would take tens of minutes under emulation, so probe the loop's path.
	backend, probing := "kprobe.multi", []string(nil)
	if labtest.Kernel() != "6.12" {
		file := filepath.Join(t.TempDir(), "functions")
		if err := os.WriteFile(file, []byte("ksys_read\nvfs_read\nksys_write\nvfs_write\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		backend, probing = "fentry", []string{"-functions", file}
	}
	busy := newCgroup(t, "exporter-busy")
	gone := newCgroup(t, "exporter-gone")
	fd, err := syscall.Open(busy, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := exec.Command("/bin/sh", "-c", "while :; do dd if=/dev/zero of=/dev/null bs=4096 count=200 2>/dev/null; done")
	w.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setpgid: true}
	err = w.Start()
	syscall.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-w.Process.Pid, syscall.SIGKILL)
		w.Wait()
	}()

	exp := exec.Command(os.Args[0], append(append([]string{"-listen", "127.0.0.1:0", "-counts", "-window", "2s", "-samples", "2"}, probing...), busy, gone)...)
	exp.Env = append(os.Environ(), asExporter+"=1")
	var stderr syncBuffer
	exp.Stderr = &stderr
	start := time.Now()
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed once the exporter has exited, with waitErr set.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = exp.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			exp.Process.Kill()
			<-exited
		}
	}()

	serving := regexp.MustCompile(`serving 2 cgroups on (127\.0\.0\.1:\d+)/metrics`)
	var url string
	for url == "" {
		if m := serving.FindStringSubmatch(stderr.String()); m != nil {
			url = "http://" + m[1] + "/metrics"
			break
		}
		select {
		case <-exited:
			t.Fatalf("exporter exited at start-up: %v\n%s", waitErr, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("exporter not serving after 3 min:\n%s", stderr.String())
		}
	}
	t.Logf("serving after %s on %s", time.Since(start).Round(time.Millisecond), url)
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}

	cg := func(dir string) string { return `cgroup="` + dir + `"` }
	var ss []sample
	for deadline := time.Now().Add(90 * time.Second); ; {
		ss, err = scrape(url)
		if err != nil {
			t.Fatalf("scrape: %v\n%s", err, stderr.String())
		}
		ok := find(ss, "hapscope_last_window_success", cg(busy))
		failed := find(ss, "hapscope_window_errors_total", cg(gone))
		if len(ok) == 1 && ok[0].value == 1 && len(failed) == 1 && failed[0].value >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scored window of %s and failed window of %s after 90 s:\n%v\n%s", busy, gone, ss, stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("both windows after %s", time.Since(start).Round(time.Millisecond))
	one := func(name string, labels ...string) float64 {
		t.Helper()
		got := find(ss, name, labels...)
		if len(got) != 1 {
			t.Errorf("%s%v: %d samples, want 1", name, labels, len(got))
			return -1
		}
		return got[0].value
	}
	if v := one("hapscope_functions", cg(busy)); v <= 0 {
		t.Errorf("hapscope_functions = %g, want > 0", v)
	}
	for _, kind := range []string{"total", "own"} {
		if v := one("hapscope_lines", cg(busy), `kind="`+kind+`"`); v <= 0 {
			t.Errorf("hapscope_lines{kind=%q} = %g, want > 0", kind, v)
		}
	}
	if v := one("hapscope_probe_misses", cg(busy)); v < 0 {
		t.Errorf("hapscope_probe_misses = %g", v)
	}
	wantMode := `mode="exact"` // both lab kernels have DWARF
	if v := one("hapscope_profile_info", cg(busy), `backend="`+backend+`"`, wantMode, `probes="counts"`); v != 1 {
		t.Errorf("hapscope_profile_info = %g, want 1", v)
	}
	if v := one("hapscope_window_errors_total", cg(busy)); v != 0 {
		t.Errorf("%s: %g window errors, want 0", busy, v)
	}
	if v := one("hapscope_last_window_success", cg(gone)); v != 0 {
		t.Errorf("%s (removed): last_window_success = %g, want 0", gone, v)
	}
	if n := len(find(ss, "hapscope_functions", cg(gone))); n != 0 {
		t.Errorf("%s was never scored, yet has hapscope_functions", gone)
	}

	exp.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exporter after SIGTERM: %v\n%s", waitErr, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("exporter still running 2 min after SIGTERM:\n%s", stderr.String())
	}
	if progs, links, err := labtest.BPFObjects("hap_"); err != nil || len(progs)+links > 0 {
		t.Errorf("after the exporter exited: %v programs, %d links, %v", progs, links, err)
	}
	t.Logf("exporter log:\n%s", stderr.String())
}
