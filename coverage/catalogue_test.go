package coverage

import (
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

func fixtureCatalogue(t *testing.T, aff string, withAddrs bool) *Catalogue {
	t.Helper()
	syms, err := kallsyms.Parse(strings.NewReader(readFixture(t, "kallsyms.txt")), func(t byte, m string) bool { return m == "" && kallsyms.IsText(t) })
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]Reason{"vfs_read": "", "vfs_write": "", "vfs_mkdir": "", "do_mkdirat": "",
		"__do_sys_getpid": "", "__x64_sys_getpid": StructArg, "migrate_disable": "", "rcu_note_context_switch": "",
		"_copy_to_user": "", "init_once": "", "show_stat": "", "__traceiter_initcall_level": ""}
	var tr []traceable
	if aff != "" {
		tr, err = parseFilterFunctions(strings.NewReader(readFixture(t, aff)), withAddrs)
		if err != nil {
			t.Fatal(err)
		}
	}
	return buildCatalogue(syms, funcs, tr, withAddrs, nil)
}

func names(fs []Function) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.Name]++
	}
	return m
}

func TestBuildCatalogue(t *testing.T) {
	// Names only: init_once has 12 addresses but only 2 traceable lines.
	c := fixtureCatalogue(t, "available_filter_functions.txt", false)
	n := names(c.Functions)
	for _, want := range []string{"vfs_read", "vfs_write", "do_mkdirat", "__do_sys_getpid", "_copy_to_user", "show_stat"} {
		if n[want] != 1 {
			t.Errorf("%s: %d entries, want 1", want, n[want])
		}
	}
	for _, gone := range []string{"__x64_sys_getpid" /* alias, listed second */, "migrate_disable", "rcu_note_context_switch", "init_once", "_text", "class_preempt_notrace_destructor.isra.0"} {
		if n[gone] != 0 {
			t.Errorf("%s should be excluded", gone)
		}
	}
	if c.Excluded[Denied] != 2 || c.Excluded[Ambiguous] != 12 || c.Excluded[Alias] != 1 {
		t.Errorf("excluded = %v", c.Excluded)
	}
	total := len(c.Functions)
	for _, v := range c.Excluded {
		total += v
	}
	if total != 30 {
		t.Errorf("functions + excluded = %d, want all 30 kallsyms text symbols", total)
	}

	// With addresses the two traceable init_once copies are kept.
	c = fixtureCatalogue(t, "available_filter_functions_addrs.txt", true)
	if n := names(c.Functions); n["init_once"] != 2 || n["_copy_to_user"] != 0 {
		t.Errorf("addrs: init_once %d (want 2), _copy_to_user %d (want 0: not in the addrs file)", n["init_once"], n["_copy_to_user"])
	}
	if c.Excluded[NotTraceable] != 11 {
		t.Errorf("addrs: excluded %v", c.Excluded)
	}

	// Without ftrace: nothing is filtered by traceability.
	c = fixtureCatalogue(t, "", false)
	if n := names(c.Functions); n["init_once"] != 12 || n["_copy_to_user"] != 1 {
		t.Errorf("no ftrace: %v", n)
	}
	s := c.Subset(func(f Function) bool { return f.Name == "vfs_read" })
	if len(s.Functions) != 1 || s.Excluded[Filtered] != len(c.Functions)-1 {
		t.Errorf("Subset: %v", s)
	}
	if !strings.Contains(s.String(), "1 functions") || !strings.Contains(s.String(), string(Filtered)) {
		t.Errorf("String: %s", s)
	}
}

// TestLoadCatalogue reads the running kernel (host or lab).
func TestLoadCatalogue(t *testing.T) {
	c, err := LoadCatalogue()
	if err != nil {
		t.Skipf("cannot read this kernel's symbols: %v", err)
	}
	t.Log(c)
	n := names(c.Functions)
	if n["vfs_read"] != 1 {
		t.Errorf("vfs_read: %d entries", n["vfs_read"])
	}
	if n["migrate_disable"] != 0 {
		t.Error("deny list not applied")
	}
	if len(c.Functions) < 1000 {
		t.Errorf("only %d functions", len(c.Functions))
	}
}

// The kernel functions behind the helpers the counter calls are never
// probed: every call of them runs inside the program, so each probe hit
// would be a recursion miss, never a count (the lab's ftrace comparison
// found bpf_user_rnd_u32, behind bpf_get_prandom_u32, missed on every call).
func TestDeniedOwnHelpers(t *testing.T) {
	for _, name := range []string{"bpf_user_rnd_u32", "bpf_get_current_ancestor_cgroup_id", "bpf_get_current_cgroup_id",
		"bpf_this_cpu_ptr", "bpf_get_func_ip_kprobe_multi", "bpf_get_attach_cookie_kprobe_multi", "percpu_array_map_lookup_elem"} {
		if !denied(name) {
			t.Errorf("%s is not on the deny list", name)
		}
	}
	if denied("vfs_read") {
		t.Error("vfs_read is denied")
	}
}
