package lab

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// moduleFile is a kernel module found in a kernel's modules tree.
type moduleFile struct {
	path string
	deps []string
}

// moduleName turns a module file name into the kernel's module name.
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// builtin reports whether the kernel has module name built in.
func (k *Kernel) builtin(name string) bool {
	data, err := os.ReadFile(k.modulesDir() + "/modules.builtin")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if moduleName(l) == name {
			return true
		}
	}
	return false
}

func (k *Kernel) modulesDir() string {
	if _, err := os.Stat(k.Modules); err == nil {
		return k.Modules
	}
	// Debian trixie ships modules under /usr/lib/modules (merged /usr).
	return filepath.Join(k.Dir, "usr", "lib", "modules", k.Release)
}

// resolveModules returns the module files to load, dependencies first, for
// the named modules. Built-in modules are skipped; a module neither built in
// nor present is an error.
func (k *Kernel) resolveModules(names []string) ([]string, error) {
	index := map[string]string{}
	root := k.modulesDir()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			index[moduleName(d.Name())] = p
		}
		return nil
	})
	var order []string
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return nil
		}
		seen[name] = true
		p, ok := index[name]
		if !ok {
			if k.builtin(name) {
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s (needed by %s) and does not build it in", k.Release, name, strings.Join(chain, " <- "))
		}
		data, err := readModule(p)
		if err != nil {
			return err
		}
		for _, dep := range modinfo(data, "depends") {
			for _, d := range strings.Split(dep, ",") {
				if d != "" {
					if err := visit(d, append(chain, name)); err != nil {
						return err
					}
				}
			}
		}
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, []string{"lab"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// readModule returns a module's ELF bytes, decompressing .ko.xz and .ko.zst.
func readModule(p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".gz"):
		tool = "gzip"
	default:
		return os.ReadFile(p)
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s with %s: %w", p, tool, err)
	}
	return out, nil
}

// modinfo returns the values of key in a module's .modinfo section.
func modinfo(ko []byte, key string) []string {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil
	}
	var vals []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(key+"=")); ok {
			vals = append(vals, string(v))
		}
	}
	return vals
}
