package lab

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
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

// moduleIndexFile is the dependency index the lab writes into a kernel's
// modules tree (Debian's package ships none: depmod writes it at install).
// It has kmod's format, so busybox modprobe in the guest (the kernel's
// request_module helper, /sbin/modprobe) and labtest.LoadModule both read it.
const moduleIndexFile = "modules.dep"

// modEntry is one module of a kernel's tree.
type modEntry struct {
	rel     string   // path below the modules directory, e.g. kernel/drivers/net/veth.ko.xz
	depends []string // module names, from .modinfo
	aliases []string // from .modinfo
}

// scanModules reads the .modinfo of every module file below root
// (decompressing with a few workers) and returns them by module name.
func scanModules(root string) (map[string]*modEntry, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the modules of %s: %w", root, err)
	}
	type res struct {
		name string
		e    *modEntry
		err  error
	}
	jobs := make(chan string)
	out := make(chan res)
	var wg sync.WaitGroup
	for range max(2, runtime.NumCPU()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				data, err := readModule(p)
				if err != nil {
					out <- res{err: err}
					continue
				}
				rel, _ := filepath.Rel(root, p)
				e := &modEntry{rel: rel, aliases: modinfo(data, "alias")}
				for _, d := range modinfo(data, "depends") {
					for _, n := range strings.Split(d, ",") {
						if n != "" {
							e.depends = append(e.depends, strings.ReplaceAll(n, "-", "_"))
						}
					}
				}
				out <- res{name: moduleName(p), e: e}
			}
		}()
	}
	go func() {
		for _, p := range paths {
			jobs <- p
		}
		close(jobs)
		wg.Wait()
		close(out)
	}()
	mods := map[string]*modEntry{}
	var firstErr error
	for r := range out {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			continue
		}
		mods[r.name] = r.e
	}
	return mods, firstErr
}

// closure returns name's dependencies (transitively), each after its own
// dependencies: the order to load them in. Unknown names (built in) are left out.
func closure(mods map[string]*modEntry, names []string) []string {
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		e, ok := mods[n]
		if !ok {
			return
		}
		for _, d := range e.depends {
			visit(d)
		}
		order = append(order, n)
	}
	for _, n := range names {
		visit(n)
	}
	return order
}

// decompressModules turns every compressed module file below root
// (Debian's 6.12 ships .ko.xz) into a plain .ko, once, and reports
// whether it changed any. busybox modprobe, the guest's request_module
// helper, hands a module's bytes to init_module as they are, and the
// kernel takes compressed modules only through finit_module with a flag
// kmod sets: an .xz handed to it fails with "Invalid ELF header magic".
func decompressModules(root string) (bool, error) {
	byTool := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
		case strings.HasSuffix(p, ".ko.xz"):
			byTool["xz"] = append(byTool["xz"], p)
		case strings.HasSuffix(p, ".ko.zst"):
			byTool["zstd"] = append(byTool["zstd"], p)
		case strings.HasSuffix(p, ".ko.gz"):
			byTool["gzip"] = append(byTool["gzip"], p)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	changed := false
	for tool, files := range byTool {
		for len(files) > 0 {
			n := min(len(files), 200)
			args := []string{"-d", "-q", "-f"}
			if tool == "zstd" {
				args = append(args, "--rm")
			}
			if out, err := exec.Command(tool, append(args, files[:n]...)...).CombinedOutput(); err != nil {
				return changed, fmt.Errorf("%s -d: %v: %s", tool, err, bytes.TrimSpace(out))
			}
			files, changed = files[n:], true
		}
	}
	return changed, nil
}

// formatModuleIndex renders modules.dep (kmod's format: every dependency,
// transitively, the one to load last first) and modules.alias.
func formatModuleIndex(mods map[string]*modEntry) (dep, alias []byte) {
	names := make([]string, 0, len(mods))
	for n := range mods {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(mods[a].rel, mods[b].rel) })
	var d, a bytes.Buffer
	for _, n := range names {
		e := mods[n]
		deps := closure(mods, e.depends)
		d.WriteString(e.rel + ":")
		for i := len(deps) - 1; i >= 0; i-- {
			d.WriteString(" " + mods[deps[i]].rel)
		}
		d.WriteByte('\n')
		for _, al := range e.aliases {
			fmt.Fprintf(&a, "alias %s %s\n", al, n)
		}
	}
	return d.Bytes(), a.Bytes()
}

// writeModuleIndex writes modules.dep and modules.alias into the kernel's
// modules tree unless they are there.
func (k *Kernel) writeModuleIndex() error {
	root := k.modulesDir()
	changed, err := decompressModules(root)
	if err != nil {
		return fmt.Errorf("decompress the modules of %s: %w", k.Release, err)
	}
	if _, err := os.Stat(filepath.Join(root, moduleIndexFile)); err == nil && !changed {
		return nil
	}
	mods, err := scanModules(root)
	if err != nil {
		return fmt.Errorf("index the modules of %s: %w", k.Release, err)
	}
	dep, alias := formatModuleIndex(mods)
	// modules.alias first: modules.dep is the stamp.
	for _, f := range []struct {
		name string
		data []byte
	}{{"modules.alias", alias}, {moduleIndexFile, dep}} {
		tmp := filepath.Join(root, f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(root, f.name)); err != nil {
			return err
		}
	}
	return nil
}
