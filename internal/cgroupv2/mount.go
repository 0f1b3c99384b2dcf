// Package cgroupv2 finds the cgroup v2 hierarchy and tears cgroups down:
// the one place hapscope decides where cgroup v2 is mounted and how a
// scope is emptied and removed.
//
// The rule: the cgroup v2 hierarchy is the first line of
// /proc/self/mountinfo whose file system type is cgroup2 and whose root
// (the fourth field: which directory of the hierarchy the mount shows) is
// "/", with the kernel's octal escapes (\040 for a space …) decoded.
// /proc/self/mounts cannot be used for this: it has no root field, so a
// bind mount of one cgroup (a container's view of its own cgroup) would
// be taken for the hierarchy's root, and every path computed from it would
// be wrong.
package cgroupv2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is the part of a /proc/<pid>/mountinfo line this package needs.
type Mount struct {
	Root   string // the directory of the file system the mount shows ("/": all of it)
	Point  string // where it is mounted
	FSType string // file system type, e.g. "cgroup2"
}

// ParseMountinfo parses the text of /proc/<pid>/mountinfo (proc(5)): per
// line, single-space-separated, mount id, parent id, major:minor, root,
// mount point, options, zero or more optional fields, a "-" separator,
// then file system type, source and super options. The kernel escapes
// space, tab, newline and backslash in paths as \ooo, so a path holds no
// space and any other byte stands for itself; root and mount point are
// returned decoded. A line without those fields (an empty root, mount
// point or type included) is an error naming the line.
func ParseMountinfo(text string) ([]Mount, error) {
	var out []Mount
	for i, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		sep := -1
		for j := 6; j < len(f); j++ {
			if f[j] == "-" {
				sep = j
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) || f[3] == "" || f[4] == "" || f[sep+1] == "" {
			return nil, fmt.Errorf("mountinfo line %d: malformed %q (want: id parent major:minor root point options [optional…] - fstype source superoptions, one space apart)", i+1, line)
		}
		out = append(out, Mount{Root: unescape(f[3]), Point: unescape(f[4]), FSType: f[sep+1]})
	}
	return out, nil
}

// unescape decodes the kernel's \ooo escapes (three octal digits, as
// mangle() writes space, tab, newline and backslash); anything else is
// kept as it is.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ErrNotMounted is returned (wrapped) when no cgroup2 mount shows the
// hierarchy's root.
var ErrNotMounted = errors.New("no cgroup v2 hierarchy mounted")

// FindRoot applies the package's rule to parsed mounts: the mount point
// of the first cgroup2 mount whose root is "/".
func FindRoot(ms []Mount) (string, error) {
	var partial []string
	for _, m := range ms {
		if m.FSType != "cgroup2" {
			continue
		}
		if m.Root == "/" {
			return m.Point, nil
		}
		partial = append(partial, fmt.Sprintf("%s (shows only %s)", m.Point, m.Root))
	}
	if len(partial) > 0 {
		return "", fmt.Errorf("%w: cgroup2 is mounted only as subtrees, at %s; hapscope needs the hierarchy's root: mount -t cgroup2 none /sys/fs/cgroup (in a container: run it with the host's cgroup namespace)", ErrNotMounted, strings.Join(partial, ", "))
	}
	return "", fmt.Errorf("%w (mount -t cgroup2 none /sys/fs/cgroup); hapscope scopes by cgroup v2", ErrNotMounted)
}

// Root returns where this process sees the cgroup v2 hierarchy's root
// mounted (/sys/fs/cgroup on most systems, /sys/fs/cgroup/unified on
// hybrid ones), read from /proc/self/mountinfo.
func Root() (string, error) {
	text, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	ms, err := ParseMountinfo(text)
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	return FindRoot(ms)
}

// readMountinfo reads a mountinfo file whole: a system with thousands of
// mounts has megabytes of it, and a cut-off read could lose the cgroup2
// line, so there is no size limit below 64 MiB.
func readMountinfo(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const limit = 64 << 20
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return "", err
	}
	if len(b) > limit {
		return "", fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return string(b), nil
}
