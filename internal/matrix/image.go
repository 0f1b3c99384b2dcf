package matrix

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// libDirs are where the dynamic loader of a Debian amd64 userland finds
// shared libraries (ld.so.conf's multiarch directories, then the defaults).
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// imageFiles returns every path (inside root) a container image of svc
// needs: Argv[0], svc.Files (directories walked), and, transitively, the
// ELF interpreter and DT_NEEDED libraries of every ELF file among them,
// with the symlinks on the way. Paths are absolute, sorted.
func imageFiles(root string, svc Service) ([]string, error) {
	in := func(p string) string { return filepath.Join(root, p) }
	seen := map[string]bool{}
	var queue []string
	// add records p and, if it is a symlink, its target (also in the image).
	// A directory's entries are added too when walk is set (a directory of
	// Files), not for a directory that is only on the way (/lib64 → …).
	var add func(p string, depth int, walk bool) error
	add = func(p string, depth int, walk bool) error {
		p = path.Clean(p)
		if seen[p] {
			return nil
		}
		if depth > 40 {
			return fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		// The directories on the way may be symlinks too (/lib → usr/lib).
		if dir := path.Dir(p); dir != "/" {
			if err := addDirLinks(root, dir, seen, func(q string) error { return add(q, depth+1, false) }); err != nil {
				return err
			}
		}
		st, err := os.Lstat(in(p))
		if err != nil {
			return err
		}
		seen[p] = true
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(in(p))
			if err != nil {
				return err
			}
			if !path.IsAbs(t) {
				t = path.Join(path.Dir(p), t)
			}
			return add(t, depth+1, walk)
		case st.IsDir() && walk:
			ents, err := os.ReadDir(in(p))
			if err != nil {
				return err
			}
			for _, e := range ents {
				if err := add(path.Join(p, e.Name()), depth, true); err != nil {
					return err
				}
			}
		case st.Mode().IsRegular():
			queue = append(queue, p)
		}
		return nil
	}
	if len(svc.Argv) == 0 || !path.IsAbs(svc.Argv[0]) {
		return nil, fmt.Errorf("an image needs the service's program as an absolute path, not %q", svc.Argv)
	}
	for _, p := range append([]string{svc.Argv[0]}, svc.Files...) {
		if err := add(p, 0, true); err != nil {
			return nil, fmt.Errorf("image file %s: %w", p, err)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		deps, err := elfDeps(in(p))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		for _, d := range deps {
			q := d
			if !path.IsAbs(d) {
				if q = findLib(root, d); q == "" {
					return nil, fmt.Errorf("%s needs %s, which is in none of %s", p, d, strings.Join(libDirs, ", "))
				}
			}
			if err := add(q, 0, false); err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", p, q, err)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// addDirLinks adds every symlink among the directories of dir.
func addDirLinks(root, dir string, seen map[string]bool, add func(string) error) error {
	p := "/"
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		p = path.Join(p, part)
		if seen[p] {
			continue
		}
		st, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			if err := add(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolveIn resolves the symlinks of p (absolute, inside root) as the
// kernel would with root as /.
func resolveIn(root, p string) (string, error) {
	hops := 0
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := "/"
	for len(parts) > 0 {
		part := parts[0]
		parts = parts[1:]
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		t, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(t) {
			cur = "/"
		}
		parts = append(strings.Split(strings.Trim(t, "/"), "/"), parts...)
	}
	return cur, nil
}

// elfDeps returns the interpreter and DT_NEEDED names of an ELF file, or
// nothing for a file that is not ELF (a script, a .py file).
func elfDeps(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil // not ELF
		}
		return nil, err
	}
	defer f.Close()
	var deps []string
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return nil, err
			}
			deps = append(deps, strings.TrimRight(string(b), "\x00"))
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil && f.Type == elf.ET_DYN {
		return nil, err
	}
	return append(deps, needed...), nil
}

// findLib finds a library name in libDirs under root.
func findLib(root, name string) string {
	for _, d := range libDirs {
		p := path.Join(d, name)
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return p
		}
	}
	return ""
}

// writeImage writes a tar of files (paths inside root, from imageFiles)
// to w, with the directories they need, a writable /tmp and minimal
// /etc/passwd and /etc/group: a root file system for `docker import`.
func writeImage(w io.Writer, root string, files []string) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{"/": true}
	var mkdir func(d string, mode int64) error
	mkdir = func(d string, mode int64) error {
		if dirs[d] {
			return nil
		}
		if err := mkdir(path.Dir(d), 0o755); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode})
	}
	for _, d := range []string{"/tmp", "/etc", "/proc", "/sys", "/dev", "/run"} {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := mkdir(d, mode); err != nil {
			return err
		}
	}
	for name, body := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return err
		}
	}
	for _, p := range files {
		if p == "/etc/passwd" || p == "/etc/group" {
			continue
		}
		full := filepath.Join(root, p)
		st, err := os.Lstat(full)
		if err != nil {
			return err
		}
		// Entries go under their directory's real path: a directory
		// reached through a symlink (/lib → usr/lib) is the symlink's
		// own entry, never also a directory.
		dir, err := resolveIn(root, path.Dir(p))
		if err != nil {
			return err
		}
		real := path.Join(dir, path.Base(p))
		if st.IsDir() {
			if err := mkdir(real, int64(st.Mode().Perm())); err != nil {
				return err
			}
			continue
		}
		if err := mkdir(dir, 0o755); err != nil {
			return err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(real, "/"), Mode: int64(st.Mode().Perm()), ModTime: st.ModTime()}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(full)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, t
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(full)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	return tw.Close()
}

// serviceRoot returns a directory on Env.Data (a path inside Env.Root)
// holding the files svc's image holds (imageFiles), with /proc and /dev
// mounted, made once per Plan.Run and image; and svc with Argv[0] as an
// absolute path. It returns "" when Env.Data is not set.
func (e *Env) serviceRoot(svc Service) (string, Service, error) {
	if e.Data == "" {
		return "", svc, nil
	}
	prog, err := e.lookPath(svc.Argv[0])
	if err != nil {
		return "", svc, err
	}
	svc.Argv = append([]string{prog}, svc.Argv[1:]...)
	name := svcImageName(svc)
	if r, ok := e.roots[name]; ok {
		return r, svc, nil
	}
	root := filepath.Join(e.Data, "roots", name)
	here := e.inRoot(root)
	os.RemoveAll(here)
	if err := os.MkdirAll(here, 0o755); err != nil {
		return "", svc, err
	}
	files, err := imageFiles(e.inRoot("/"), svc)
	if err != nil {
		return "", svc, fmt.Errorf("files of %s: %w", name, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeImage(pw, e.inRoot("/"), files)) }()
	err = untar(pr, here)
	pr.CloseWithError(err)
	if err != nil {
		return "", svc, fmt.Errorf("unpack the files of %s into %s: %w", name, root, err)
	}
	if err := unix.Mount("proc", filepath.Join(here, "proc"), "proc", 0, ""); err != nil {
		return "", svc, fmt.Errorf("mount proc in %s: %w", root, err)
	}
	e.cleanups = append(e.cleanups, func() { unix.Unmount(filepath.Join(here, "proc"), unix.MNT_DETACH) })
	if err := unix.Mount("/dev", filepath.Join(here, "dev"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", svc, fmt.Errorf("bind /dev in %s: %w", root, err)
	}
	e.cleanups = append(e.cleanups, func() { unix.Unmount(filepath.Join(here, "dev"), unix.MNT_DETACH) })
	if e.roots == nil {
		e.roots = map[string]string{}
	}
	e.roots[name] = root
	e.logf("matrix: %s's files (%d) unpacked into %s", name, len(files), root)
	return root, svc, nil
}

// untar unpacks the directories, regular files and symlinks of a tar
// stream (writeImage's) into dir, refusing names that leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			mode := os.FileMode(h.Mode & 0o777)
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
