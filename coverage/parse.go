package coverage

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// traceable is one line of tracefs available_filter_functions ("NAME
// [MODULE]") or available_filter_functions_addrs ("ADDR NAME [MODULE]").
type traceable struct {
	addr   uint64 // 0 when the file has no addresses
	name   string
	module string
}

// parseFilterFunctions reads available_filter_functions or, with addrs set,
// available_filter_functions_addrs.
func parseFilterFunctions(r io.Reader, addrs bool) ([]traceable, error) {
	var out []traceable
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var t traceable
		if addrs {
			if len(f) < 2 {
				return nil, fmt.Errorf("available_filter_functions_addrs line %d: want ADDR NAME [MODULE], got %q", n, sc.Text())
			}
			a, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				return nil, fmt.Errorf("available_filter_functions_addrs line %d: address: %w", n, err)
			}
			t.addr = a
			f = f[1:]
		}
		if len(f) > 2 {
			return nil, fmt.Errorf("available_filter_functions line %d: want NAME [MODULE], got %q", n, sc.Text())
		}
		t.name = f[0]
		if len(f) == 2 {
			m := f[1]
			if len(m) < 3 || m[0] != '[' || m[len(m)-1] != ']' {
				return nil, fmt.Errorf("available_filter_functions line %d: module %q not in brackets", n, m)
			}
			t.module = m[1 : len(m)-1]
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// parseProcCgroup returns the cgroup v2 path ("0::/a/b") of a process from
// the text of /proc/<pid>/cgroup. ok is false when the process has no v2
// entry (a pure v1 system).
func parseProcCgroup(text string) (path string, ok bool, err error) {
	for i, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		id, rest, found := strings.Cut(line, ":")
		if !found {
			return "", false, fmt.Errorf("/proc/<pid>/cgroup line %d: no ':' in %q", i+1, line)
		}
		ctrl, p, found := strings.Cut(rest, ":")
		if !found {
			return "", false, fmt.Errorf("/proc/<pid>/cgroup line %d: want ID:CONTROLLERS:PATH, got %q", i+1, line)
		}
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			return "", false, fmt.Errorf("/proc/<pid>/cgroup line %d: hierarchy id %q: %w", i+1, id, err)
		}
		if id == "0" && ctrl == "" {
			if !strings.HasPrefix(p, "/") {
				return "", false, fmt.Errorf("/proc/<pid>/cgroup line %d: v2 path %q is not absolute", i+1, p)
			}
			return p, true, nil
		}
	}
	return "", false, nil
}
