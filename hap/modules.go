package hap

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"sync"

	"github.com/hapscope/hapscope/symbolize"
)

// moduleSet opens the line indexes of the running kernel's modules as
// snapshots need them, and keeps them for the life of a Scorer. An index is
// placed at the sections a module had when it was opened and checked
// against its build-id: a module that was unloaded and loaded again since
// (other addresses, or another build) is opened again.
type moduleSet struct {
	kern  symbolize.Kernel
	opt   ScoreOptions
	mu    sync.Mutex
	byMod map[string]*moduleEntry

	// sections, buildID and kallsyms read the live kernel; tests replace
	// them.
	sections func(module string) (map[string]uint64, error)
	buildID  func(module string) (string, error)
	kallsyms func() ([]symbolize.Symbol, error)
}

type moduleEntry struct {
	mu       sync.Mutex
	sections map[string]uint64
	buildID  string
	ix       *symbolize.Index
}

func newModuleSet(kern symbolize.Kernel, opt ScoreOptions) *moduleSet {
	return &moduleSet{kern: kern, opt: opt, byMod: map[string]*moduleEntry{},
		sections: symbolize.ModuleSections, buildID: symbolize.ModuleBuildID, kallsyms: readKallsyms}
}

// index returns the line index of module at its current runtime addresses:
// the one it returned before when the module's sections have not moved,
// otherwise a new one (symbolize.OpenModule, from the cache when the
// module's build-id was indexed before).
func (s *moduleSet) index(ctx context.Context, module string) (*symbolize.Index, error) {
	s.mu.Lock()
	e := s.byMod[module]
	if e == nil {
		e = &moduleEntry{}
		s.byMod[module] = e
	}
	s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	secs, err := s.sections(module)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", module, err)
	}
	id, err := s.buildID(module)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", module, err)
	}
	if e.ix != nil && id == e.buildID && maps.Equal(secs, e.sections) {
		return e.ix, nil
	}
	ix, err := s.open(ctx, module, id, secs)
	if err != nil {
		return nil, err
	}
	e.ix, e.buildID, e.sections = ix, id, secs
	return ix, nil
}

func (s *moduleSet) open(ctx context.Context, module, buildID string, secs map[string]uint64) (*symbolize.Index, error) {
	ix, err := symbolize.OpenModule(ctx, symbolize.ModuleOptions{
		Name: module, Path: s.opt.ModuleDebug, Kernel: s.kern, BuildID: buildID, Sections: secs,
		CacheDir: s.opt.Symbolize.CacheDir, Rebuild: s.opt.Symbolize.Rebuild,
	})
	if err == nil {
		return ix, nil
	}
	if !estimateInstead(err, s.opt.AllowEstimate) {
		hint := ""
		if errors.Is(err, symbolize.ErrNoDebugInfo) {
			hint = fmt.Sprintf(" (install its debug info: Debian's linux-image-%s-dbg has /usr/lib/debug/lib/modules/%s/kernel/**/%s.ko; or give an unpacked debug tree in ScoreOptions.ModuleDebug, or allow size-based estimates)", s.kern.Release, s.kern.Release, module)
		}
		return nil, fmt.Errorf("no line information for module %s of kernel %s: %w%s", module, s.kern.Release, err, hint)
	}
	syms, kerr := s.kallsyms()
	if kerr != nil {
		return nil, errors.Join(err, kerr)
	}
	est, eerr := symbolize.EstimateModule(syms, module)
	if eerr != nil {
		return nil, errors.Join(err, eerr)
	}
	return est, nil
}

func readKallsyms() ([]symbolize.Symbol, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return symbolize.ParseKallsyms(f)
}
