package matrix

import (
	"bufio"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRedisInfo(t *testing.T) {
	body := "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:12345\r\ntotal_error_replies:2\r\n"
	got, err := parseRedisInfo(bufio.NewReader(strings.NewReader(fmt.Sprintf("$%d\r\n%s\r\n", len(body), body))))
	if err != nil {
		t.Fatal(err)
	}
	if got != (redisCounters{commands: 12345, errors: 2}) {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{"-ERR unknown\r\n", "$-5\r\n", "$10\r\nabc", "$5\r\nab:cd\r\n"} {
		if _, err := parseRedisInfo(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseRedisInfo(f *testing.F) {
	f.Add("$30\r\ntotal_commands_processed:7\r\n\r\n")
	f.Add("$2\r\nx")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseRedisInfo(bufio.NewReader(strings.NewReader(s)))
		if err == nil && !strings.Contains(s, "total_commands_processed") {
			t.Fatalf("counters %+v without total_commands_processed", c)
		}
	})
}

func TestEditSpec(t *testing.T) {
	spec := map[string]any{
		"process": map[string]any{"args": []any{"sh"}, "terminal": true},
		"root":    map[string]any{"path": "rootfs"},
		"linux": map[string]any{"namespaces": []any{
			map[string]any{"type": "pid"}, map[string]any{"type": "network"}, map[string]any{"type": "mount"},
		}},
		"mounts": []any{map[string]any{"destination": "/proc"}},
	}
	seccomp := map[string]any{"defaultAction": "SCMP_ACT_ERRNO"}
	if err := editSpec(spec, []string{"redis-server", "--port", "1"}, "/tmp/b/rootfs", "/x/ctr", seccomp); err != nil {
		t.Fatal(err)
	}
	linux := spec["linux"].(map[string]any)
	if d := cmp.Diff([]any{map[string]any{"type": "pid"}, map[string]any{"type": "mount"}}, linux["namespaces"]); d != "" {
		t.Errorf("namespaces (-want +got):\n%s", d)
	}
	if linux["cgroupsPath"] != "/x/ctr" || linux["seccomp"] == nil {
		t.Errorf("linux = %v", linux)
	}
	if p := spec["process"].(map[string]any); p["terminal"] != false || len(p["args"].([]string)) != 3 {
		t.Errorf("process = %v", p)
	}
	if r := spec["root"].(map[string]any); r["path"] != "/tmp/b/rootfs" || r["readonly"] != true {
		t.Errorf("root = %v", r)
	}
	if n := len(spec["mounts"].([]any)); n != 3 {
		t.Errorf("%d mounts, want /proc + /tmp + /run", n)
	}
	if err := editSpec(map[string]any{}, nil, "", "", nil); err == nil {
		t.Error("a spec without process/linux must be refused")
	}
}
