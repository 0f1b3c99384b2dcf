package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
	"github.com/hapscope/hapscope/symbolize"
)

// TestConfig says which Go tests to run in one boot of a lab kernel.
type TestConfig struct {
	Kernel   *Kernel
	Packages []string // go package patterns, e.g. ./coverage/...
	// Run selects tests (default ^TestLab); Bench, when set, selects
	// benchmarks instead (tests are then not run). Skip, when set, leaves
	// out the top-level tests it matches (go test's -skip).
	Run, Bench, Skip string
	// Args are extra flags for every test binary (e.g. -test.count=3).
	Args         []string
	Timeout      time.Duration // whole boot; default 30m
	SingleThread bool          // see Config.SingleThread
	CPUs         int           // see Config.CPUs
	Env          []string      // KEY=VALUE pairs exported to the test binaries
	Console      io.Writer     // test output and guest console
	OutDir       string        // see Config.OutDir
	// Allowed are the skips that do not fail the run; nil means
	// AllowedSkips.
	Allowed []AllowedSkip
}

// PackageResult is one package's outcome in the guest.
type PackageResult struct {
	ImportPath string
	ExitCode   int
	Seconds    int
}

// TestResult is the outcome of RunTests.
type TestResult struct {
	*Result
	Kernel   string          // lab kernel name
	Packages []PackageResult // packages that had matching tests, in order
	Skipped  []string        // packages with no matching test, not booted for
	Tests    []TestOutcome   // every test, subtest and benchmark outcome reported
	Skips    []Skip          // the skips among Tests, checked against the allowed list
	// Missing are tests the host listed that reported no outcome
	// ("pkg TestX"): the binary died, or its output was lost.
	Missing []string
	// Stale are allowed skips whose test ran on this kernel and did not skip.
	Stale []AllowedSkip
}

// Failed reports whether any package failed or did not report, a listed
// test reported no outcome, or a lab test skipped without being allowed to.
func (r *TestResult) Failed() bool {
	if r.Result == nil || r.ExitCode != 0 || len(r.Missing) > 0 {
		return true
	}
	for _, p := range r.Packages {
		if p.ExitCode != 0 {
			return true
		}
	}
	for _, s := range r.Skips {
		if s.Fails() {
			return true
		}
	}
	return false
}

// Tally counts the top-level tests of the run.
func (r *TestResult) Tally() Tally { return Count(r.Tests) }

type testPkg struct {
	importPath, dir, bin string
	names                []string // top-level tests -test.list selected
}

// RunTests compiles the test binaries of cfg.Packages (static, CGO_ENABLED=0),
// keeps those that have tests matching cfg.Run (or benchmarks matching
// cfg.Bench), and runs them all in a single boot of cfg.Kernel, each with its
// working directory set to its package directory under /host. It prints a
// go-test style "ok"/"FAIL" line per package to cfg.Console.
func RunTests(ctx context.Context, cfg TestConfig) (*TestResult, error) {
	if cfg.Run == "" {
		cfg.Run = "^TestLab"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	runDir := filepath.Join(cache, "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(runDir, "tests-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	list := exec.CommandContext(ctx, "go", append([]string{"list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}{{len .XTestGoFiles}}"}, cfg.Packages...)...)
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w", strings.Join(cfg.Packages, " "), stderrOf(err))
	}
	sel := cfg.Run
	if cfg.Bench != "" {
		sel = cfg.Bench
	}
	var skipRE *regexp.Regexp
	if cfg.Skip != "" {
		if skipRE, err = regexp.Compile(cfg.Skip); err != nil {
			return nil, fmt.Errorf("bad -skip pattern: %w", err)
		}
	}
	allowed := cfg.Allowed
	if allowed == nil {
		allowed = AllowedSkips
	}
	res := &TestResult{Kernel: cfg.Kernel.Spec.Name}
	var pkgs []testPkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[2] == "00" {
			continue
		}
		bin := filepath.Join(work, fmt.Sprintf("%02d-%s.test", len(pkgs), filepath.Base(f[0])))
		build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, f[0])
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build test binary of %s: %w\n%s", f[0], err, b)
		}
		names, err := exec.CommandContext(ctx, bin, "-test.list", sel).Output()
		if err != nil {
			return nil, fmt.Errorf("list tests of %s: %w", f[0], stderrOf(err))
		}
		var selected []string
		for _, n := range strings.Fields(string(names)) {
			if skipRE == nil || !skipRE.MatchString(n) {
				selected = append(selected, n)
			}
		}
		if len(selected) == 0 {
			res.Skipped = append(res.Skipped, f[0])
			continue
		}
		pkgs = append(pkgs, testPkg{importPath: f[0], dir: f[1], bin: bin, names: selected})
	}
	if len(pkgs) == 0 {
		return res, fmt.Errorf("no package in %s has tests matching %q", strings.Join(cfg.Packages, " "), sel)
	}

	k := cfg.Kernel
	var sb strings.Builder
	if err := writeGuestEnv(ctx, &sb, k, work, cfg.OutDir != "", cfg.SingleThread, cfg.Console); err != nil {
		return nil, err
	}
	for _, kv := range cfg.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, " '\"$;") {
			return nil, fmt.Errorf("bad environment entry %q (want KEY=VALUE)", kv)
		}
		fmt.Fprintf(&sb, "export %s\n", shq(kv))
	}
	sb.WriteString("fail=0\n")
	for i, p := range pkgs {
		// -test.v=test2json frames every status line with a marker byte
		// that output of the tests cannot fake; the host parses the
		// package's whole output, sent back through the status port (the
		// console gets a copy without the markers).
		args := []string{labtest.Host(p.bin), "-test.v=test2json", "-test.timeout=" + cfg.Timeout.String()}
		if cfg.Bench != "" {
			args = append(args, "-test.run=^$", "-test.bench="+cfg.Bench)
		} else {
			args = append(args, "-test.run="+cfg.Run)
		}
		if cfg.Skip != "" {
			args = append(args, "-test.skip="+cfg.Skip)
		}
		args = append(args, cfg.Args...)
		for i := range args {
			args[i] = shq(args[i])
		}
		fmt.Fprintf(&sb, "cd %s || exit 126\n", shq(labtest.Host(p.dir)))
		sb.WriteString("t0=$(cut -d. -f1 /proc/uptime)\n")
		sb.WriteString("echo 125 > /run/lab-rc\n")
		fmt.Fprintf(&sb, "{ %s 2>&1; echo $? > /run/lab-rc; } | tee /run/lab-out | tr -d '\\026'\nrc=$(cat /run/lab-rc)\n", strings.Join(args, " "))
		sb.WriteString("t1=$(cut -d. -f1 /proc/uptime)\n")
		fmt.Fprintf(&sb, "sed 's/^/%s %d /' /run/lab-out >&$STATUS_FD\n", outTag, i)
		fmt.Fprintf(&sb, "echo \"pkg %s $rc $((t1-t0))\" >&$STATUS_FD\n", p.importPath)
		fmt.Fprintf(&sb, "if [ $rc = 0 ]; then printf 'ok  \\t%%s\\t%%ss [lab %s]\\n' %s $((t1-t0)); else fail=1; printf 'FAIL\\t%%s\\t%%ss [lab %s]\\n' %s $((t1-t0)); fi\n",
			k.Spec.Name, shq(p.importPath), k.Spec.Name, shq(p.importPath))
	}
	sb.WriteString("exit $fail\n")

	r, err := Run(ctx, Config{
		Kernel: k, Script: sb.String(), Timeout: cfg.Timeout, Console: cfg.Console,
		SingleThread: cfg.SingleThread, OutDir: cfg.OutDir, CPUs: cfg.CPUs,
	})
	res.Result = r
	if r != nil {
		outputs := make([]strings.Builder, len(pkgs))
		for _, line := range r.Status {
			if rest, ok := strings.CutPrefix(line, outTag+" "); ok {
				idx, text, _ := strings.Cut(rest, " ")
				if i, err := strconv.Atoi(idx); err == nil && i >= 0 && i < len(pkgs) {
					outputs[i].WriteString(text)
					outputs[i].WriteByte('\n')
				}
				continue
			}
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "pkg" {
				code, _ := strconv.Atoi(f[2])
				secs, _ := strconv.Atoi(f[3])
				res.Packages = append(res.Packages, PackageResult{ImportPath: f[1], ExitCode: code, Seconds: secs})
			}
		}
		reported := map[string]bool{}
		for _, pr := range res.Packages {
			reported[pr.ImportPath] = true
		}
		for i, p := range pkgs {
			outs, perr := ParseTestOutput(p.importPath, strings.NewReader(outputs[i].String()))
			if perr != nil && err == nil {
				err = fmt.Errorf("lab: read the test output of %s: %w", p.importPath, perr)
			}
			res.Tests = append(res.Tests, outs...)
			if cfg.Bench != "" || !reported[p.importPath] {
				continue
			}
			res.Missing = append(res.Missing, missingTests(p.importPath, p.names, outs)...)
		}
		res.Skips = ClassifySkips(res.Kernel, res.Tests, allowed)
		res.Stale = StaleSkips(res.Kernel, res.Tests, allowed)
	}
	if err == nil && len(res.Packages) != len(pkgs) {
		err = fmt.Errorf("lab: %d of %d packages reported a result", len(res.Packages), len(pkgs))
	}
	return res, err
}

// outTag starts the status-port lines that carry a package's test output.
const outTag = "o"

// missingTests returns "pkg Name" for each of names (top-level tests the
// host listed) without an outcome in outs.
func missingTests(pkg string, names []string, outs []TestOutcome) []string {
	seen := map[string]bool{}
	for _, o := range outs {
		seen[o.Name] = true
	}
	var out []string
	for _, n := range names {
		if !seen[n] {
			out = append(out, pkg+" "+n)
		}
	}
	return out
}

// writeGuestEnv writes the script lines that export the lab environment
// (see package labtest) for kernel k. The guest's index cache is a snapshot
// written under runDir (removed by the caller after the boot), so that a
// rebuild of the host's shared cache during the run cannot reach the guest.
func writeGuestEnv(ctx context.Context, sb *strings.Builder, k *Kernel, runDir string, out, single bool, log io.Writer) error {
	if k.Spec.Debug {
		vmlinux, ix, err := prepareIndex(ctx, k, log)
		if err != nil {
			return err
		}
		snap := filepath.Join(runDir, "index-cache")
		if err := snapshotIndex(ix, snap); err != nil {
			return err
		}
		fmt.Fprintf(sb, "export %s=%s %s=%s\n", labtest.EnvVmlinux, shq(labtest.Host(vmlinux)), labtest.EnvIndexCache, shq(labtest.Host(snap)))
		mods, err := DebugModules(ctx, k.Spec.Name, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(sb, "export %s=%s\n", labtest.EnvModuleDebug, shq(labtest.Host(mods)))
	}
	fmt.Fprintf(sb, "export %s=1 %s=%s %s=%s\n", labtest.EnvLab, labtest.EnvKernel, shq(k.Spec.Name), labtest.EnvRelease, shq(k.Release))
	if cache, err := CacheDir(); err == nil {
		fmt.Fprintf(sb, "export %s=%s\n", labtest.EnvLabCache, shq(labtest.Host(cache)))
	}
	if out {
		fmt.Fprintf(sb, "export %s=/out\n", labtest.EnvOut)
	}
	fmt.Fprintf(sb, "export %s=%s %s=%s\n", labtest.EnvScratch, ScratchDir, labtest.EnvAddr, Addr)
	fmt.Fprintf(sb, "echo \"lab: kernel $(uname -r) (expected %s), accel %s\"\n", k.Release, accelName(single))
	return nil
}

// Command runs a host program (path on the host) with args in one boot of
// k, as root, with the lab environment exported and the working directory
// set to the host's current one under /host. Its exit status is the
// result's ExitCode.
func Command(ctx context.Context, k *Kernel, argv []string, cfg Config) (*Result, error) {
	bin, err := filepath.Abs(argv[0])
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cache, "run"), 0o755); err != nil {
		return nil, err
	}
	runDir, err := os.MkdirTemp(filepath.Join(cache, "run"), "cmd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(runDir)
	var sb strings.Builder
	if err := writeGuestEnv(ctx, &sb, k, runDir, cfg.OutDir != "", cfg.SingleThread, cfg.Console); err != nil {
		return nil, err
	}
	args := []string{shq(labtest.Host(bin))}
	for _, a := range argv[1:] {
		args = append(args, shq(a))
	}
	fmt.Fprintf(&sb, "cd %s || exit 126\n%s\n", shq(labtest.Host(wd)), strings.Join(args, " "))
	cfg.Kernel, cfg.Script = k, sb.String()
	return Run(ctx, cfg)
}

// prepareIndex fetches the kernel's vmlinux with DWARF and builds its line
// index into the host's symbolize cache, so that tests in the guest load it
// in milliseconds instead of building it under emulation.
func prepareIndex(ctx context.Context, k *Kernel, log io.Writer) (vmlinux string, ix *symbolize.Index, err error) {
	vmlinux, err = DebugVmlinux(ctx, k.Spec.Name, log)
	if err != nil {
		return "", nil, err
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", nil, err
	}
	start := time.Now()
	ix, err = symbolize.Open(ctx, symbolize.Options{VMLinux: vmlinux, Kernel: symbolize.Kernel{Release: k.Release}, CacheDir: filepath.Join(d, "hapscope")})
	if err != nil {
		return "", nil, fmt.Errorf("build the line index of %s: %w", vmlinux, err)
	}
	fmt.Fprintf(log, "lab: line index of %s (build-id %s, %d functions) ready in %s\n", k.Release, ix.BuildID(), ix.Len(), time.Since(start).Round(time.Millisecond))
	return vmlinux, ix, nil
}

// snapshotIndex writes ix where symbolize.Open with CacheDir dir finds it.
func snapshotIndex(ix *symbolize.Index, dir string) error {
	path := symbolize.IndexPath(dir, ix.BuildID())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := ix.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write the guest's copy of the line index: %w", err)
	}
	return f.Close()
}

func accelName(single bool) string {
	if single {
		return "tcg,thread=single"
	}
	return "tcg,thread=multi"
}

// shq quotes s for sh.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func stderrOf(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
