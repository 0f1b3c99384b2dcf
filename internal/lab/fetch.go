package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hapscope/hapscope/internal/labtest"
)

// KernelSpec says which Debian package a lab kernel comes from.
type KernelSpec struct {
	Name    string         // short name used on the command line: "6.12", "6.1"
	Suite   string         // Debian suite that ships it
	Package *regexp.Regexp // matches the -unsigned image package names of this line
	// Debug: the lab boots only an image whose -dbg package (vmlinux with
	// DWARF) is offered at the same version, so that its lines are exact.
	Debug bool
	Notes string // what the kernel offers hapscope
}

// Kernels are the lab kernels, newest first.
var Kernels = []KernelSpec{
	{
		Name:    "6.12",
		Suite:   "trixie",
		Package: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64-unsigned$`),
		Debug:   true,
		Notes:   "kprobe.multi, fentry, kprobes, ftrace function/function_graph",
	},
	{
		Name:    "6.1",
		Suite:   "bookworm",
		Package: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$`),
		Debug:   true,
		Notes:   "fentry, kprobes; no kprobe.multi (CONFIG_FPROBE off)",
	},
}

// Spec returns the KernelSpec called name.
func Spec(name string) (KernelSpec, error) {
	var names []string
	for _, k := range Kernels {
		if k.Name == name {
			return k, nil
		}
		names = append(names, k.Name)
	}
	return KernelSpec{}, fmt.Errorf("unknown lab kernel %q (have %s)", name, strings.Join(names, ", "))
}

// Kernel is a fetched, unpacked lab kernel.
type Kernel struct {
	Spec    KernelSpec
	Package string // Debian package name
	Version string // Debian package version
	Release string // what uname -r reports in the guest
	Dir     string // unpacked package root
	Vmlinuz string // bootable image
	Config  string // /boot/config-<release>
	Modules string // /lib/modules/<release>
}

// CacheDir is where the lab keeps downloads and unpacked kernels:
// $XDG_CACHE_HOME/hapscope-lab, else ~/.cache/hapscope-lab.
func CacheDir() (string, error) {
	if d := os.Getenv("HAPSCOPE_LAB_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("lab cache: no $XDG_CACHE_HOME and no home directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "hapscope-lab"), nil
}

// listsMaxAge is how old the private apt lists may be before Fetch refreshes
// them to find the newest kernel.
const listsMaxAge = 24 * time.Hour

// aptState is a private apt configuration (sources, lists, cache) that never
// touches the system's.
type aptState struct {
	dir string
	log io.Writer
}

func (a aptState) opts() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "APT::Get::List-Cleanup=0",
	}
}

func (a aptState) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, append(a.opts(), args...)...)
	c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	return c
}

// sourceLines builds private sources.list lines for the suites the lab needs,
// reusing the Debian mirror URIs already configured on this machine (deb822
// .sources files or one-line .list files). It writes down no host name of its own.
func sourceLines(configured []aptSource) ([]string, error) {
	var main, security aptSource
	for _, s := range configured {
		switch {
		case slices.ContainsFunc(s.Suites, func(x string) bool { return strings.HasSuffix(x, "-security") }):
			if security.URI == "" {
				security = s
			}
		case main.URI == "" && (slices.Contains(s.Suites, "bookworm") || slices.Contains(s.Suites, "trixie") ||
			strings.Contains(s.URI, "debian")):
			main = s
		}
	}
	if main.URI == "" {
		return nil, errors.New("no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d; the lab downloads kernels with apt from the mirror configured there")
	}
	opt := func(s aptSource) string {
		if s.SignedBy == "" {
			return ""
		}
		return "[signed-by=" + s.SignedBy + "] "
	}
	var lines []string
	for _, suite := range []string{"bookworm", "bookworm-updates", "trixie", "trixie-updates"} {
		lines = append(lines, "deb "+opt(main)+main.URI+" "+suite+" main")
	}
	if security.URI != "" {
		for _, suite := range []string{"bookworm-security", "trixie-security"} {
			lines = append(lines, "deb "+opt(security)+security.URI+" "+suite+" main")
		}
	}
	return lines, nil
}

// aptSource is one configured "deb" source.
type aptSource struct {
	URI      string
	Suites   []string
	SignedBy string
}

var (
	blankLine = regexp.MustCompile(`\n\s*\n`)
	signedBy  = regexp.MustCompile(`signed-by=([^\] ]+)`)
)

// parseSources reads deb822 (.sources) and one-line (.list) apt sources.
func parseSources(name string, data []byte) []aptSource {
	var out []aptSource
	if strings.HasSuffix(name, ".sources") {
		for _, stanza := range blankLine.Split(string(data), -1) {
			var s aptSource
			isDeb := false
			for _, line := range strings.Split(stanza, "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				v = strings.TrimSpace(v)
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "types":
					isDeb = slices.Contains(strings.Fields(v), "deb")
				case "uris":
					if f := strings.Fields(v); len(f) > 0 {
						s.URI = f[0]
					}
				case "suites":
					s.Suites = strings.Fields(v)
				case "signed-by":
					s.SignedBy = v
				case "enabled":
					if strings.EqualFold(v, "no") {
						isDeb = false
					}
				}
			}
			if isDeb && s.URI != "" {
				out = append(out, s)
			}
		}
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		var s aptSource
		i := 1
		if strings.HasPrefix(f[1], "[") {
			for ; i < len(f); i++ {
				if m := signedBy.FindStringSubmatch(f[i]); m != nil {
					s.SignedBy = m[1]
				}
				if strings.HasSuffix(f[i], "]") {
					i++
					break
				}
			}
		}
		if i+1 >= len(f) {
			continue
		}
		s.URI, s.Suites = f[i], []string{f[i+1]}
		out = append(out, s)
	}
	return out
}

func configuredSources() []aptSource {
	var out []aptSource
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range parseSources(f, data) {
			if strings.Contains(s.URI, "debian") {
				out = append(out, s)
			}
		}
	}
	return out
}

// prepare writes the private sources.list and refreshes the lists when they
// are older than listsMaxAge (or when refresh is set).
func (a aptState) prepare(ctx context.Context, refresh bool) error {
	lines, err := sourceLines(configuredSources())
	if err != nil {
		return err
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	src := []byte(strings.Join(lines, "\n") + "\n")
	srcPath := filepath.Join(a.dir, "sources.list")
	old, _ := os.ReadFile(srcPath)
	stamp := filepath.Join(a.dir, "updated")
	st, statErr := os.Stat(stamp)
	if !refresh && bytes.Equal(old, src) && statErr == nil && time.Since(st.ModTime()) < listsMaxAge {
		return nil
	}
	if err := os.WriteFile(srcPath, src, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.log, "lab: apt-get update (private state in %s)\n", a.dir)
	c := a.cmd(ctx, "apt-get", "update", "-q")
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("apt-get update with the lab's private sources failed: %w\n%s", err, out.String())
	}
	return os.WriteFile(stamp, nil, 0o644)
}

// resolve returns the newest package of spec and its version (for a Debug
// spec, the newest whose -dbg package has the same version). The answer
// is kept beside the lists and reused until they are refreshed: asking
// apt-cache again would give the same answer and takes seconds.
func (a aptState) resolve(ctx context.Context, spec KernelSpec) (name, version string, err error) {
	memo := filepath.Join(a.dir, "resolved-"+spec.Name)
	if spec.Debug {
		memo += "-with-dbg"
	}
	stamp, err1 := os.Stat(filepath.Join(a.dir, "updated"))
	memoSt, err2 := os.Stat(memo)
	if err1 == nil && err2 == nil && !memoSt.ModTime().Before(stamp.ModTime()) {
		if b, err := os.ReadFile(memo); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 && spec.Package.MatchString(f[0]) {
				return f[0], f[1], nil
			}
		}
	}
	name, version, err = a.newest(ctx, spec.Package, spec.Debug)
	if err == nil {
		os.WriteFile(memo, []byte(name+" "+version+"\n"), 0o644)
	}
	return name, version, err
}

// newest returns the newest package whose name matches re, with its version;
// with dbg, the newest whose -dbg package (dbgPackage) has the same candidate
// version.
func (a aptState) newest(ctx context.Context, re *regexp.Regexp, dbg bool) (name, version string, err error) {
	c := a.cmd(ctx, "apt-cache", "pkgnames", "linux-image-")
	out, err := c.Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache pkgnames: %w", err)
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if re.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", "", fmt.Errorf("apt offers no package matching %s (check the mirror in /etc/apt/sources.list.d)", re)
	}
	name, version = pickNewest(names, func(pkg string) string {
		v, _ := a.candidate(ctx, pkg)
		return v
	}, dbg)
	if name == "" {
		if dbg {
			return "", "", fmt.Errorf("no package matching %s has an installable candidate whose -dbg package has the same version (check the mirror in /etc/apt/sources.list.d)", re)
		}
		return "", "", fmt.Errorf("no package matching %s has an installable candidate", re)
	}
	return name, version, nil
}

// pickNewest returns the newest of names (natural order) that has a
// candidate version and, with dbg, whose -dbg package has a candidate of the
// same version. candidate returns "" for a package apt cannot download.
func pickNewest(names []string, candidate func(pkg string) string, dbg bool) (name, version string) {
	names = slices.Clone(names)
	slices.SortFunc(names, naturalCompare)
	// Newest first; a name can be listed without a downloadable candidate.
	for i := len(names) - 1; i >= 0; i-- {
		v := candidate(names[i])
		if v == "" || (dbg && candidate(dbgPackage(names[i])) != v) {
			continue
		}
		return names[i], v
	}
	return "", ""
}

// dbgPackage is the -dbg package of an -unsigned image package.
func dbgPackage(unsigned string) string {
	return strings.TrimSuffix(unsigned, "-unsigned") + "-dbg"
}

func (a aptState) candidate(ctx context.Context, pkg string) (string, error) {
	out, err := a.cmd(ctx, "apt-cache", "policy", pkg).Output()
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "(none)" {
				return "", nil
			}
			return v, nil
		}
	}
	return "", nil
}

// download fetches pkg=version into dir (skipping it when already there) and
// returns the .deb path.
func (a aptState) download(ctx context.Context, dir, pkg, version string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	want := pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_"
	if m, _ := filepath.Glob(filepath.Join(dir, want+"*.deb")); len(m) == 1 {
		return m[0], nil
	}
	start := time.Now()
	fmt.Fprintf(a.log, "lab: downloading %s=%s\n", pkg, version)
	c := a.cmd(ctx, "apt-get", "download", "-q", pkg+"="+version)
	c.Dir = dir
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w\n%s", pkg, version, err, out.String())
	}
	m, _ := filepath.Glob(filepath.Join(dir, want+"*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left no single .deb in %s", pkg, version, dir)
	}
	if st, err := os.Stat(m[0]); err == nil {
		fmt.Fprintf(a.log, "lab: downloaded %s (%.1f MB) in %s\n", filepath.Base(m[0]), float64(st.Size())/1e6, time.Since(start).Round(100*time.Millisecond))
	}
	return m[0], nil
}

// naturalCompare orders strings with embedded numbers numerically
// ("6.12.9" < "6.12.117").
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			i, j := 0, 0
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// FetchOptions tune Fetch.
type FetchOptions struct {
	Log     io.Writer // progress lines; nil discards them
	Refresh bool      // refresh the apt lists even when they are recent
}

// Fetch returns the newest Debian kernel of spec, downloading and unpacking it
// into the cache on first use.
func Fetch(ctx context.Context, spec KernelSpec, opt FetchOptions) (*Kernel, error) {
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	apt := aptState{dir: filepath.Join(cache, "apt"), log: log}
	if err := apt.prepare(ctx, opt.Refresh); err != nil {
		return nil, fmt.Errorf("fetch kernel %s: %w", spec.Name, err)
	}
	pkg, version, err := apt.resolve(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("fetch kernel %s: %w", spec.Name, err)
	}
	dir := filepath.Join(cache, "kernels", pkg+"_"+version)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		deb, err := apt.download(ctx, filepath.Join(cache, "debs"), pkg, version)
		if err != nil {
			return nil, fmt.Errorf("fetch kernel %s: %w", spec.Name, err)
		}
		if err := unpack(ctx, deb, dir); err != nil {
			return nil, fmt.Errorf("fetch kernel %s: %w", spec.Name, err)
		}
	}
	k := &Kernel{Spec: spec, Package: pkg, Version: version, Dir: dir}
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(imgs) != 1 {
		return nil, fmt.Errorf("fetch kernel %s: %s holds %d vmlinuz images, want 1 (remove the directory to unpack it again)", spec.Name, dir, len(imgs))
	}
	k.Vmlinuz = imgs[0]
	k.Release = strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
	k.Config = filepath.Join(dir, "boot", "config-"+k.Release)
	k.Modules = filepath.Join(dir, "lib", "modules", k.Release)
	if err := k.writeModuleIndex(); err != nil {
		return nil, fmt.Errorf("fetch kernel %s: %w", spec.Name, err)
	}
	return k, nil
}

func unpack(ctx context.Context, deb, dir string) error {
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}

// debugKernel fetches the newest lab kernel called name, which must have a
// -dbg package in the lab, and returns it with the lab's cache directory.
func debugKernel(ctx context.Context, name string, log io.Writer) (*Kernel, string, error) {
	spec, err := Spec(name)
	if err != nil {
		return nil, "", err
	}
	if !spec.Debug {
		return nil, "", fmt.Errorf("lab kernel %s has no -dbg package in the lab", name)
	}
	k, err := Fetch(ctx, spec, FetchOptions{Log: log})
	if err != nil {
		return nil, "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, "", err
	}
	return k, cache, nil
}

// DebugVmlinux returns the path of the vmlinux with DWARF that matches the
// newest lab kernel called name (Debian's -dbg package of the same version),
// fetching it and extracting only the vmlinux on first use.
func DebugVmlinux(ctx context.Context, name string, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	k, cache, err := debugKernel(ctx, name, log)
	if err != nil {
		return "", err
	}
	out := filepath.Join(cache, "dbg", k.Release, "vmlinux")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dbgPkg := dbgPackage(k.Package)
	deb, err := aptState{dir: filepath.Join(cache, "apt"), log: log}.download(ctx, filepath.Join(cache, "debs"), dbgPkg, k.Version)
	if err != nil {
		return "", fmt.Errorf("fetch DWARF for %s: %w", k.Release, err)
	}
	start := time.Now()
	fmt.Fprintf(log, "lab: extracting vmlinux-%s from %s\n", k.Release, filepath.Base(deb))
	tmp := filepath.Join(cache, "dbg", k.Release+".tmp")
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	sh := `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './usr/lib/debug/boot/vmlinux-*'`
	if b, err := exec.CommandContext(ctx, "sh", "-c", sh, "sh", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extract vmlinux from %s: %w\n%s", deb, err, b)
	}
	src := filepath.Join(tmp, "usr", "lib", "debug", "boot", "vmlinux-"+k.Release)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(src, out); err != nil {
		return "", fmt.Errorf("extract vmlinux from %s: %w", deb, err)
	}
	os.RemoveAll(tmp)
	fmt.Fprintf(log, "lab: vmlinux with DWARF at %s (%s)\n", out, time.Since(start).Round(100*time.Millisecond))
	return out, nil
}

// DebugModulePatterns name the modules (shell patterns over module names)
// whose debug files DebugModules extracts, with their dependencies: what a
// container's network and storage drive (Docker's bridge network with
// nftables or iptables-nft NAT, overlay2; dockerd loads xfrm_user at its
// start, and a container's runc init drove it), the lab guest's own devices
// (virtio_blk under the scratch disk: a fuzzer's fsync reaches it) and what
// the lab's tests load.
var DebugModulePatterns = []string{
	"veth", "bridge", "br_netfilter", "llc", "stp", "overlay", "dummy", "tun", "xfrm_*",
	"macvlan", "ipvlan", "vxlan", "virtio_*", "fuse", "virtiofs",
	"nf_*", "nft_*", "xt_*", "nfnetlink*", "x_tables",
	"ip_tables", "ip6_tables", "iptable_*", "ip6table_*", "ipt_*", "ip6t_*",
	"ebtables", "ebtable_*", "ebt_*", "ip_set*", "ip_vs*",
}

// debugModulesStamp marks a complete extraction of one module set; its
// name carries a hash of the set, so a changed list extracts again.
const debugModulesStamp = ".lab-modules-"

// DebugModules returns the debug root of the module debug files (.ko with
// DWARF) of the newest lab kernel called name: a directory holding
// usr/lib/debug/lib/modules/<release>/kernel/…, the layout of Debian's -dbg
// package, which is what symbolize.ModuleOptions.Path takes. On first use it
// extracts the modules DebugModulePatterns name, and their dependencies,
// from the cached -dbg package (one pass over the package, 10–20 s here);
// stamps, which list what was extracted, make later calls instant.
// DebugModulePatterns may be changed (to {"*"} for every module: 1.2–1.5 GB
// per kernel instead of ~200 MB, in about the same time).
func DebugModules(ctx context.Context, name string, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	k, cache, err := debugKernel(ctx, name, log)
	if err != nil {
		return "", err
	}
	root := filepath.Join(cache, "dbg-modules", k.Release)
	data, err := os.ReadFile(filepath.Join(k.modulesDir(), moduleIndexFile))
	if err != nil {
		return "", fmt.Errorf("module debug files of %s: %w", k.Release, err)
	}
	deps, err := labtest.ParseModulesDep(data)
	if err != nil {
		return "", fmt.Errorf("module debug files of %s: %w", k.Release, err)
	}
	files := debugModuleFiles(deps, DebugModulePatterns)
	h := sha256.New()
	for _, f := range files {
		io.WriteString(h, f+"\n")
	}
	stamp := filepath.Join(root, debugModulesStamp+hex.EncodeToString(h.Sum(nil))[:16])
	if extracted(root, files) {
		return root, nil
	}
	deb, err := aptState{dir: filepath.Join(cache, "apt"), log: log}.download(ctx, filepath.Join(cache, "debs"), dbgPackage(k.Package), k.Version)
	if err != nil {
		return "", fmt.Errorf("fetch module debug files of %s: %w", k.Release, err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(log, "lab: extracting the debug files of %d modules of %s from %s\n", len(files), k.Release, filepath.Base(deb))
	list := filepath.Join(root, ".lab-modules-list")
	var lb strings.Builder
	for _, f := range files {
		fmt.Fprintf(&lb, "./usr/lib/debug/lib/modules/%s/%s\n", k.Release, f)
	}
	if err := os.WriteFile(list, []byte(lb.String()), 0o644); err != nil {
		return "", err
	}
	defer os.Remove(list)
	sh := `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" -T "$3"`
	if b, err := exec.CommandContext(ctx, "sh", "-c", sh, "sh", deb, root, list).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extract module debug files from %s: %w\n%s", deb, err, b)
	}
	if err := os.WriteFile(stamp, []byte(strings.Join(files, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "lab: module debug files of %s in %s (%s)\n", k.Release, root, time.Since(start).Round(100*time.Millisecond))
	return root, nil
}

// extracted reports whether a stamp in root (one per extraction, listing
// its files) shows every one of files extracted.
func extracted(root string, files []string) bool {
	stamps, _ := filepath.Glob(filepath.Join(root, debugModulesStamp+"*"))
	have := map[string]bool{}
	for _, st := range stamps {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		for _, f := range strings.Split(string(b), "\n") {
			have[f] = true
		}
	}
	for _, f := range files {
		if !have[f] {
			return false
		}
	}
	return true
}

// debugModuleFiles returns the paths below a -dbg package's modules
// directory (kernel/….ko, uncompressed) of the modules matching patterns
// and of their dependencies, sorted.
func debugModuleFiles(deps map[string]labtest.ModuleDep, patterns []string) []string {
	set := map[string]bool{}
	for n, d := range deps {
		for _, p := range patterns {
			if ok, _ := path.Match(p, n); ok {
				for _, f := range append(slices.Clone(d.Deps), d.File) {
					set[debugFile(f)] = true
				}
				break
			}
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// debugFile is the -dbg package's name of a module file: uncompressed.
func debugFile(rel string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		rel = strings.TrimSuffix(rel, ext)
	}
	return rel
}
