// Package lab boots real Debian kernels under QEMU so that hapscope's
// privileged tests measure a kernel that can be traced.
//
// The development and CI machines run a locked-down kernel (no kprobes, fentry
// loads fail with EPERM), so every test that claims to have measured the
// kernel runs here instead:
//
//	Fetch        newest Debian cloud kernel of a line (6.12 trixie, 6.1 bookworm),
//	             downloaded with apt through a private apt state and cached
//	DebugVmlinux the matching vmlinux with DWARF (Debian's -dbg package)
//	DebugModules the debug files of the container modules (same package)
//	Run          boots it with a busybox initramfs, the host's / shared
//	             read-only over virtiofs at /host, runs a script as root,
//	             streams the console, returns the script's exit status
//	             (through a second serial port, never guessed from text) and
//	             fails on a guest oops/panic or a timeout
//	RunTests     runs Go test binaries (TestLab*) of several packages in one boot
//
// Everything is cached under CacheDir, outside the repository.
package lab
