package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hybrid is a systemd hybrid layout: v1 controllers under a tmpfs and the
// v2 hierarchy at /sys/fs/cgroup/unified.
const hybrid = `22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:11 master:2 - cgroup2 cgroup2 rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := ParseMountinfo(hybrid + `99 1 0:40 /a\134b /tmp/with\040space\011tab\040 rw - ext4 /dev/x rw` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{"/", "/proc", "proc"},
		{"/", "/sys/fs/cgroup", "tmpfs"},
		{"/", "/sys/fs/cgroup/cpu", "cgroup"},
		{"/", "/sys/fs/cgroup/systemd", "cgroup"},
		{"/", "/sys/fs/cgroup/unified", "cgroup2"},
		// Escapes anywhere, the last one at the very end of the field.
		{`/a\b`, "/tmp/with space\ttab ", "ext4"},
	}
	if d := cmp.Diff(want, ms); d != "" {
		t.Errorf("mounts (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"41 31 0:38 / /sys/fs/cgroup rw cgroup2 cgroup2 rw\n", // no separator
		"41 31 0:38 / /sys/fs/cgroup rw -\n",                  // nothing after it
		"41 31 - cgroup2 cgroup2 rw\n",                        // separator too early
		"41 31 0:38 /  /sys rw - cgroup2 cgroup2 rw\n",        // empty mount point
		"41 31 0:38 / /sys rw -  cgroup2 rw\n",                // empty type
		"garbage\n",
	} {
		if _, err := ParseMountinfo(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseMountinfo(%q) = %v, want an error naming line 1", bad, err)
		}
	}
	// Escapes that are not three octal digits of a byte stay as they are.
	for in, want := range map[string]string{`/a\04`: `/a\04`, `/a\777b`: `/a\777b`, `/a\`: `/a\`, `\134`: `\`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFindRoot(t *testing.T) {
	for _, c := range []struct {
		name, mountinfo, want string
		partial               bool // want the error that names subtree mounts
	}{
		{name: "hybrid", mountinfo: hybrid, want: "/sys/fs/cgroup/unified"},
		{name: "unified", mountinfo: "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", want: "/sys/fs/cgroup"},
		{
			// A container's bind of its own cgroup comes first: it is not
			// the hierarchy's root.
			name: "subtree first",
			mountinfo: "50 40 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n" +
				"51 40 0:26 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			want: "/host/sys/fs/cgroup",
		},
		{name: "escaped point", mountinfo: `60 1 0:26 / /mnt/cg\040v2 rw - cgroup2 none rw` + "\n", want: "/mnt/cg v2"},
		{name: "only a subtree", mountinfo: "50 40 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", partial: true},
		{name: "v1 only", mountinfo: "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"},
		{name: "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ms, err := ParseMountinfo(c.mountinfo)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FindRoot(ms)
			if c.want != "" {
				if err != nil || got != c.want {
					t.Fatalf("FindRoot = %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if !errors.Is(err, ErrNotMounted) {
				t.Fatalf("FindRoot = %q, %v; want ErrNotMounted", got, err)
			}
			if c.partial != strings.Contains(err.Error(), "/docker/abc") {
				t.Errorf("error %q: naming the subtree mount = %v, want %v", err, !c.partial, c.partial)
			}
		})
	}
}

// TestRoot checks Root against this machine's own mountinfo, found by
// another way: the cgroup2 mount point it returns is on a cgroup2 file
// system and holds the hierarchy's root files.
func TestRoot(t *testing.T) {
	root, err := Root()
	if err != nil {
		if errors.Is(err, ErrNotMounted) {
			t.Skipf("this machine has no cgroup v2 hierarchy: %v", err)
		}
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/cgroup.procs"); err != nil {
		t.Errorf("Root() = %s, which has no cgroup.procs: %v", root, err)
	}
	// The hierarchy's root has no cgroup.events (every other cgroup has).
	if _, err := os.Stat(root + "/cgroup.events"); err == nil {
		t.Errorf("Root() = %s has cgroup.events: it is a cgroup below the root", root)
	}
}

// escape is the kernel's mangle() for mountinfo's path fields.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseMountinfo feeds arbitrary text: the parser must not fail
// silently, and every mount it returns has the fields a line must have.
func FuzzParseMountinfo(f *testing.F) {
	f.Add(hybrid)
	f.Add(`99 1 0:40 / /tmp/with\040space rw - cgroup2 none rw` + "\n")
	f.Add("1 2 3 4 5 6 - \n")
	f.Add(`1 2 3 \ \13 6 - x`)
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMountinfo(s)
		if err != nil {
			return
		}
		lines := 0
		for _, l := range strings.Split(s, "\n") {
			if l != "" {
				lines++
			}
		}
		if len(ms) != lines {
			t.Fatalf("%d mounts from %d lines", len(ms), lines)
		}
		for _, m := range ms {
			if m.FSType == "" || strings.Contains(m.FSType, " ") || m.Root == "" || m.Point == "" {
				t.Fatalf("bad mount %+v", m)
			}
		}
		if p, err := FindRoot(ms); err == nil && !strings.Contains(s, "cgroup2") {
			t.Fatalf("root %q found without a cgroup2 line", p)
		}
	})
}

// FuzzMountinfoRoundTrip writes a line the way the kernel does, from any
// root and mount point, and checks that parsing gives them back.
func FuzzMountinfoRoundTrip(f *testing.F) {
	f.Add("/", "/sys/fs/cgroup", "cgroup2")
	f.Add(`/a\040b`, "/tmp/ x\t\n\\", "ext4")
	f.Fuzz(func(t *testing.T, root, point, fstype string) {
		if root == "" || point == "" || fstype == "" || fstype == "-" || strings.ContainsAny(fstype, " \n") {
			t.Skip()
		}
		line := fmt.Sprintf("36 35 98:0 %s %s rw,noatime master:1 - %s /dev/root rw,errors=continue\n", escape(root), escape(point), fstype)
		ms, err := ParseMountinfo(line)
		if err != nil {
			t.Fatalf("ParseMountinfo(%q): %v", line, err)
		}
		if want := []Mount{{root, point, fstype}}; !cmp.Equal(want, ms) {
			t.Fatalf("ParseMountinfo(%q) = %+v, want %+v", line, ms, want)
		}
	})
}
