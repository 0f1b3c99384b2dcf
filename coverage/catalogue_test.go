package coverage

import (
	"strings"
	"testing"

	"github.com/hapscope/hapscope/internal/kallsyms"
)

func fixtureCatalogue(t *testing.T, aff string, withAddrs bool) *Catalogue {
	t.Helper()
	syms, err := kallsyms.Parse(strings.NewReader(readFixture(t, "kallsyms.txt")), func(t byte, m string) bool { return kallsyms.IsText(t) })
	if err != nil {
		t.Fatal(err)
	}
	bi := &btfInfo{funcs: map[fkey]Reason{}, objects: map[string]int{}}
	add := func(module string, r Reason, names ...string) {
		for _, n := range names {
			bi.funcs[fkey{module, n}] = r
			bi.objects[n]++
		}
	}
	add("", "", "vfs_read", "vfs_write", "vfs_mkdir", "do_mkdirat", "__do_sys_getpid", "migrate_disable",
		"rcu_note_context_switch", "_copy_to_user", "init_once", "show_stat", "__traceiter_initcall_level")
	add("", StructArg, "__x64_sys_getpid")
	add("veth", "", "veth_xmit")
	add("overlay", "", "show_stat") // the same name as a vmlinux function
	var tr []traceable
	if aff != "" {
		tr, err = parseFilterFunctions(strings.NewReader(readFixture(t, aff)), withAddrs)
		if err != nil {
			t.Fatal(err)
		}
	}
	return buildCatalogue(syms, bi, tr, withAddrs, nil)
}

func names(fs []Function) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.String()]++
	}
	return m
}

func find(c *Catalogue, name, module string) *Function {
	for i, f := range c.Functions {
		if f.Name == name && f.Module == module {
			return &c.Functions[i]
		}
	}
	return nil
}

func TestBuildCatalogue(t *testing.T) {
	// Names only: init_once has 12 addresses but only 2 traceable lines.
	c := fixtureCatalogue(t, "available_filter_functions.txt", false)
	n := names(c.Functions)
	for _, want := range []string{"vfs_read", "vfs_write", "do_mkdirat", "__do_sys_getpid", "_copy_to_user", "show_stat",
		"class_preempt_notrace_destructor.isra.0", "veth_xmit [veth]", "show_stat [overlay]", "ovl_read_iter.isra.0 [overlay]"} {
		if n[want] != 1 {
			t.Errorf("%s: %d entries, want 1", want, n[want])
		}
	}
	for _, gone := range []string{"__x64_sys_getpid" /* alias, listed second */, "migrate_disable", "rcu_note_context_switch", "init_once", "_text",
		"__pfx_class_preempt_notrace_destructor.isra.0", "wait_for_initramfs.cold", "ovl_llseek [overlay]", "ftrace_trampoline [__builtin__ftrace]"} {
		if n[gone] != 0 {
			t.Errorf("%s should be excluded", gone)
		}
	}
	if c.Excluded[Denied] != 2 || c.Excluded[Ambiguous] != 12 || c.Excluded[Alias] != 1 || c.Excluded[NotTraceable] != 9 {
		t.Errorf("excluded = %v", c.Excluded)
	}
	if len(c.Excluded) != 4 {
		t.Errorf("excluded for reasons that only keep functions from fentry: %v", c.Excluded)
	}
	total := len(c.Functions)
	for _, v := range c.Excluded {
		total += v
	}
	if total != 35 {
		t.Errorf("functions + excluded = %d, want all 35 kallsyms text symbols", total)
	}
	// What fentry can take: by name, so only names unique in kallsyms and
	// BTF, with a BTF FUNC in their own object.
	cat := c
	for _, c := range []struct {
		name, module string
		want         Reason
	}{
		{"vfs_read", "", ""},
		{"veth_xmit", "veth", ""},
		{"show_stat", "", NotUnique},
		{"show_stat", "overlay", NotUnique},
		{"class_preempt_notrace_destructor.isra.0", "", NotInBTF},
		{"ovl_read_iter.isra.0", "overlay", NotInBTF},
		{"__do_sys_getpid", "", ""},
	} {
		f := find(cat, c.name, c.module)
		if f == nil {
			t.Errorf("%s [%s] missing", c.name, c.module)
		} else if f.noFentry != c.want {
			t.Errorf("%s: fentry reason %q, want %q", f, f.noFentry, c.want)
		}
	}
	if a, b := find(c, "show_stat", ""), find(c, "show_stat", "overlay"); a == nil || b == nil || a.Addr == b.Addr {
		t.Errorf("same name in vmlinux and a module must be two functions: %v %v", a, b)
	}
	if got := c.Modules(); got["veth"] != 1 || got["overlay"] != 2 || got[""] != 8 {
		t.Errorf("Modules() = %v", got)
	}
	if !strings.Contains(c.String(), "11 functions (8 vmlinux, 3 in 2 modules)") {
		t.Errorf("String: %s", c)
	}

	// With addresses the two traceable init_once copies are kept, and a
	// module function the addrs file does not list is not.
	c = fixtureCatalogue(t, "available_filter_functions_addrs.txt", true)
	if n := names(c.Functions); n["init_once"] != 2 || n["_copy_to_user"] != 0 || n["veth_xmit [veth]"] != 1 || n["ovl_read_iter.isra.0 [overlay]"] != 0 {
		t.Errorf("addrs: %v", n)
	}
	if c.Excluded[NotTraceable] != 22 {
		t.Errorf("addrs: excluded %v", c.Excluded)
	}

	// Without ftrace: nothing is filtered by traceability.
	c = fixtureCatalogue(t, "", false)
	if n := names(c.Functions); n["init_once"] != 12 || n["_copy_to_user"] != 1 || n["ovl_llseek [overlay]"] != 1 {
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
