package labtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// ModulesDir is where the guest sees the booted lab kernel's modules tree
// (bind-mounted by the lab's /init from the host's unpacked kernel package),
// with a modules.dep and modules.alias the lab wrote: busybox modprobe, the
// kernel's request_module helper, finds modules there too.
func ModulesDir() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// LoadModule loads the named kernel modules of the booted lab kernel, each
// after its dependencies (from modules.dep), skipping those already loaded
// or built in. Compressed modules (.ko.xz on 6.12) are decompressed by the
// kernel (finit_module with MODULE_INIT_COMPRESSED_FILE). It fails t when a
// module cannot be loaded.
func LoadModule(t testing.TB, names ...string) {
	t.Helper()
	if err := LoadModules(names...); err != nil {
		t.Fatal(err)
	}
}

// LoadModules is LoadModule for callers without a testing.TB.
func LoadModules(names ...string) error {
	dir := ModulesDir()
	data, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("load modules %s: %w (the lab binds the kernel's modules tree, with its modules.dep, at /lib/modules/<release>; outside the lab there is none)", strings.Join(names, " "), err)
	}
	deps, err := ParseModulesDep(data)
	if err != nil {
		return err
	}
	builtin, _ := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		d, ok := deps[n]
		if !ok {
			if builtinHas(builtin, n) {
				continue
			}
			return fmt.Errorf("load module %s: kernel %s has no such module (not in %s/modules.dep, not built in)", n, filepath.Base(dir), dir)
		}
		for _, f := range append(slices.Clone(d.Deps), d.File) {
			if err := insmod(filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("load module %s: %w", n, err)
			}
		}
	}
	return nil
}

func builtinHas(list []byte, name string) bool {
	for _, l := range strings.Split(string(list), "\n") {
		if moduleName(l) == name {
			return true
		}
	}
	return false
}

// insmod loads one module file unless a module of its name is loaded.
func insmod(path string) error {
	name := moduleName(path)
	if _, err := os.Stat(filepath.Join("/sys/module", name, "initstate")); err == nil {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		if flags != 0 && errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("finit_module %s: %w (the kernel cannot decompress modules: CONFIG_MODULE_DECOMPRESS is off)", path, err)
		}
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// moduleName turns a module file name into the kernel's module name.
func moduleName(file string) string {
	base := filepath.Base(strings.TrimSpace(file))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ParseModulesDep reads kmod's modules.dep: for each module name, its file
// (relative to the modules directory) and the files of its dependencies in
// the order to load them (the reverse of the file's).
func ParseModulesDep(data []byte) (map[string]ModuleDep, error) {
	out := map[string]ModuleDep{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" || strings.ContainsAny(file, " \t") {
			return nil, fmt.Errorf("modules.dep line %d: want \"FILE: DEPS\", have %q", i+1, line)
		}
		deps := strings.Fields(rest)
		slices.Reverse(deps)
		out[moduleName(file)] = ModuleDep{File: file, Deps: deps}
	}
	return out, nil
}

// ModuleDep is one module of modules.dep.
type ModuleDep struct {
	File string   // relative to the modules directory
	Deps []string // files of its dependencies, in load order
}
