package symbolize

import (
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Options say which kernel to symbolize and where its debug info is.
type Options struct {
	// VMLinux is the path of a vmlinux with DWARF. Empty: look in the distro
	// locations for Release, then ask debuginfod (DEBUGINFOD_URLS) by build-id.
	VMLinux string
	// Kernel is the kernel the addresses came from. Zero: the running kernel,
	// and the vmlinux's build-id must match it. With Kernel.BuildID set, the
	// vmlinux must match that; with only Kernel.Release set, no check is made.
	Kernel Kernel
	// CacheDir holds indexes by build-id. Empty: os.UserCacheDir()/hapscope.
	CacheDir string
	// Rebuild ignores a cached index (the new one replaces it).
	Rebuild bool
	// Progress, if set, reports the build: units done of total.
	Progress func(done, total int)
}

// Open returns the index for the kernel in o: loaded from the cache when an
// index for the build-id exists (milliseconds), otherwise built from the
// vmlinux (seconds) and cached (when the cache is writable).
func Open(ctx context.Context, o Options) (*Index, error) {
	k := o.Kernel
	checkRunning := k == (Kernel{})
	if checkRunning {
		rk, err := RunningKernel()
		if err != nil {
			return nil, err
		}
		k = rk
	}
	cacheDir, err := cacheDirOr(o.CacheDir)
	if err != nil {
		return nil, err
	}
	// A cached index is used only if it holds the build-id asked for: a
	// damaged one, or another kernel's under this name, is rebuilt from the
	// vmlinux, and named in the error if there is none.
	var cacheErr error
	if o.VMLinux == "" && k.BuildID != "" && !o.Rebuild {
		ix, err := loadCached(cacheDir, k.BuildID)
		switch {
		case err == nil && ix.BuildID() == k.BuildID:
			return ix, nil
		case err == nil:
			cacheErr = fmt.Errorf("cached index %s holds build-id %s, not %s (%w)", cachePath(cacheDir, k.BuildID), orNone(ix.BuildID()), k.BuildID, ErrBuildIDMismatch)
		case !errors.Is(err, fs.ErrNotExist):
			cacheErr = fmt.Errorf("cached index unusable: %w", err)
		}
	}
	path := o.VMLinux
	if path == "" {
		p, err := findVMLinux(ctx, k, cacheDir)
		if err != nil {
			if cacheErr != nil {
				return nil, fmt.Errorf("%w; %w", cacheErr, err)
			}
			return nil, err
		}
		path = p
	}
	id, err := fileBuildID(path, k.Release)
	if err != nil {
		return nil, err
	}
	if k.BuildID != "" && id != k.BuildID {
		who := "the running kernel (" + k.Release + ")"
		if !checkRunning {
			who = "the requested kernel"
		}
		return nil, fmt.Errorf("%w: %s has build-id %s but %s has %s: its lines would be wrong; use the vmlinux of that exact build, or say which kernel the addresses came from (--build-id %s)", ErrBuildIDMismatch, path, orNone(id), who, k.BuildID, orNone(id))
	}
	if id != "" && !o.Rebuild {
		if ix, err := loadCached(cacheDir, id); err == nil && ix.BuildID() == id {
			return ix, nil
		}
	}
	ix, err := Build(path, o.Progress)
	if err != nil {
		return nil, err
	}
	if id != "" {
		// A cache that cannot be written (read-only, full) only costs the
		// next run a rebuild: not an error.
		_ = ix.writeFile(cachePath(cacheDir, id))
	}
	return ix, nil
}

func orNone(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}

// IndexPath is the file where Open caches the index of a build-id; an empty
// cacheDir means the default, os.UserCacheDir()/hapscope.
func IndexPath(cacheDir, buildID string) string {
	if cacheDir == "" {
		d, _ := os.UserCacheDir()
		cacheDir = filepath.Join(d, "hapscope")
	}
	return cachePath(cacheDir, buildID)
}

func cachePath(cacheDir, buildID string) string {
	return filepath.Join(cacheDir, "index", buildID+".hsidx")
}

func loadCached(cacheDir, buildID string) (*Index, error) {
	return Load(cachePath(cacheDir, buildID))
}

// Load reads an index file written by WriteTo.
func Load(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load index: %w", err)
	}
	ix, err := ReadIndex(b)
	if err != nil {
		return nil, fmt.Errorf("load index %s: %w", path, err)
	}
	return ix, nil
}

// fileBuildID reads the GNU build-id of an ELF file. release, if known,
// makes the hint of an error concrete.
func fileBuildID(path, release string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		if e := notELF(path, release); e != nil {
			return "", e
		}
		return "", fmt.Errorf("open vmlinux %s: %w", path, err)
	}
	defer f.Close()
	return elfBuildID(f), nil
}

// notELF says why path cannot be a vmlinux (missing, a directory, empty,
// not ELF), or returns nil if it starts like an ELF file.
func notELF(path, release string) error {
	hint := "pass the vmlinux with DWARF (e.g. /usr/lib/debug/boot/vmlinux-" + cmp.Or(release, "<release>") + ")"
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open vmlinux: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: %s", path, hint)
	}
	magic := make([]byte, 4)
	n, err := io.ReadFull(f, magic)
	switch {
	case n == 0 && (err == io.EOF || err == nil):
		return fmt.Errorf("%s is empty: %s", path, hint)
	case err != nil && err != io.ErrUnexpectedEOF:
		return fmt.Errorf("read vmlinux %s: %w", path, err)
	case string(magic[:n]) != elf.ELFMAG:
		return fmt.Errorf("%s is not an ELF file: %s", path, hint)
	}
	return nil
}

// DebugInfoPaths are the places distros keep a vmlinux with DWARF, in the
// order they are searched (%s is the kernel release).
var debugInfoPaths = []string{
	"/usr/lib/debug/boot/vmlinux-%s",        // Debian, Ubuntu
	"/usr/lib/debug/lib/modules/%s/vmlinux", // Fedora, RHEL, SUSE
	"/boot/vmlinux-%s",                      // self-built, Arch
	"/lib/modules/%s/build/vmlinux",         // a kernel build tree
	"/usr/lib/debug/boot/vmlinux-%s.debug",  // some derivatives
	"/usr/lib/debug/lib/modules/%s/vmlinux.debug",
}

// DebugInfoPath returns the first vmlinux with debug info for release in
// the distributions' usual places, and every place it looked.
func DebugInfoPath(release string) (path string, tried []string) {
	if release == "" {
		return "", nil
	}
	for _, p := range debugInfoPaths {
		p = fmt.Sprintf(p, release)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, tried
		}
		tried = append(tried, p)
	}
	return "", tried
}

func findVMLinux(ctx context.Context, k Kernel, cacheDir string) (string, error) {
	p, tried := DebugInfoPath(k.Release)
	if p != "" {
		return p, nil
	}
	urls := strings.Fields(os.Getenv("DEBUGINFOD_URLS"))
	if len(urls) > 0 && k.BuildID != "" {
		p, err := fetchDebuginfod(ctx, urls, k.BuildID, cacheDir, "vmlinux")
		if err == nil {
			return p, nil
		}
		tried = append(tried, err.Error())
	} else if k.BuildID != "" {
		tried = append(tried, "debuginfod (DEBUGINFOD_URLS not set)")
	}
	return "", fmt.Errorf("%w: no vmlinux with DWARF for kernel %q (build-id %s); tried %s. Install the debug package (Debian: linux-image-%s-dbg) or pass --vmlinux PATH",
		ErrNoDebugInfo, k.Release, orNone(k.BuildID), strings.Join(tried, ", "), k.Release)
}

// fetchDebuginfod downloads the debuginfo of buildID from the first server
// that has it into cacheDir/debuginfod/<build-id>/<file> and checks it.
func fetchDebuginfod(ctx context.Context, urls []string, buildID, cacheDir, file string) (string, error) {
	dst := filepath.Join(cacheDir, "debuginfod", buildID, file)
	if id, err := fileBuildID(dst, ""); err == nil && id == buildID {
		return dst, nil
	}
	var errs []error
	for _, base := range urls {
		u := strings.TrimRight(base, "/") + "/buildid/" + buildID + "/debuginfo"
		if err := download(ctx, u, dst); err != nil {
			errs = append(errs, err)
			continue
		}
		id, err := fileBuildID(dst, "")
		if err != nil || id != buildID {
			os.Remove(dst)
			errs = append(errs, fmt.Errorf("%s: served a file with build-id %s, not %s", u, orNone(id), buildID))
			continue
		}
		return dst, nil
	}
	return "", fmt.Errorf("debuginfod: %w", errors.Join(errs...))
}

func download(ctx context.Context, url, dst string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("%s: %s %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", url, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// cacheDirOr returns dir, or the user's cache directory for indexes
// (os.UserCacheDir()/hapscope) when dir is empty.
func cacheDirOr(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set XDG_CACHE_HOME or pass a cache dir)", err)
	}
	return filepath.Join(d, "hapscope"), nil
}
