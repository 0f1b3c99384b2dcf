// Package labtest is what tests use to tell whether they run inside the
// hapscope lab: a Debian kernel booted under QEMU by internal/lab.
//
// Lab tests are named TestLab* (benchmarks BenchmarkLab*). On the host they
// skip with a message naming the command that runs them; `make test` runs
// them in the lab on every lab kernel, where Require never skips.
package labtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Environment variables set by the lab's /init for the payload.
const (
	EnvLab     = "HAPSCOPE_LAB"         // "1" inside the lab guest
	EnvKernel  = "HAPSCOPE_LAB_KERNEL"  // lab kernel name: "6.12" or "6.1"
	EnvRelease = "HAPSCOPE_LAB_RELEASE" // the Debian release uname -r must report
	EnvOut     = "HAPSCOPE_LAB_OUT"     // writable directory shared with the host
	// EnvVmlinux is the guest path of the vmlinux with DWARF that matches the
	// booted kernel (the lab fetches one for every lab kernel, 6.12 and 6.1).
	EnvVmlinux = "HAPSCOPE_LAB_VMLINUX"
	// EnvIndexCache is the guest path of a symbolize index cache holding
	// the booted kernel's line index, built on the host by the runner and
	// copied for this boot (a rebuild of the host's cache cannot reach it).
	EnvIndexCache = "HAPSCOPE_LAB_INDEX_CACHE"
	// EnvModuleDebug is the guest path of the debug root of the booted
	// kernel's module debug files: it holds
	// usr/lib/debug/lib/modules/<release>/kernel/….ko with DWARF (the
	// modules lab.DebugModulePatterns names and their dependencies), as
	// symbolize.ModuleOptions.Path takes it.
	EnvModuleDebug = "HAPSCOPE_LAB_MODULE_DEBUG"
	// EnvLabCache is the guest path of the host's lab cache (kernels, and
	// the userland `make lab-prep` builds there: runsc, express).
	EnvLabCache = "HAPSCOPE_LAB_CACHE_DIR"
	// EnvScratch is the guest path of the scratch disk (virtio-blk, ext4),
	// seen at the same path from inside the host root (chrooted programs).
	EnvScratch = "HAPSCOPE_LAB_SCRATCH"
	// EnvAddr is a non-loopback address of the guest (lab.Addr).
	EnvAddr = "HAPSCOPE_LAB_ADDR"
)

// HostRoot is where the host's root file system is mounted, read-only, in the
// guest (virtiofs).
const HostRoot = "/host"

// InLab reports whether the process runs inside a lab guest.
func InLab() bool { return os.Getenv(EnvLab) == "1" }

// Require skips t unless it runs in the lab. Lab tests are run by
// `make lab-test` (and `make test`), never skipped there.
func Require(t testing.TB) {
	t.Helper()
	if !InLab() {
		t.Skip("lab-only test: run it with `make lab-test KERNEL=6.12 PKG=./...` (boots a Debian kernel under QEMU)")
	}
}

// Kernel is the lab kernel name ("6.12", "6.1"), or "" outside the lab.
func Kernel() string { return os.Getenv(EnvKernel) }

// Release is the Debian kernel release the lab booted, or "" outside the lab.
func Release() string { return os.Getenv(EnvRelease) }

// Host returns the guest path of a host file (the host's / is at HostRoot).
func Host(path string) string { return filepath.Join(HostRoot, path) }

// OutDir is a directory whose files come back to the host after the run
// (internal/lab copies it to the -out directory), or "" when there is none.
func OutDir() string { return os.Getenv(EnvOut) }

// Vmlinux is the guest path of the booted kernel's vmlinux with DWARF, or ""
// when the lab has none for it.
func Vmlinux() string { return os.Getenv(EnvVmlinux) }

// IndexCache is the guest path of the (read-only) symbolize cache holding the
// booted kernel's line index, or "" when there is none.
func IndexCache() string { return os.Getenv(EnvIndexCache) }

// LabCache is the guest path of the host's lab cache (read-only), or "".
func LabCache() string { return os.Getenv(EnvLabCache) }

// ModuleDebug is the guest path of the booted kernel's module debug root
// (see EnvModuleDebug), or "" when the lab has none for it.
func ModuleDebug() string { return os.Getenv(EnvModuleDebug) }
