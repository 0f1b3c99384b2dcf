// Package symbolize turns kernel functions into the source lines their code
// comes from, using the DWARF of the kernel's vmlinux.
//
// Open finds the debug info of a kernel (an explicit path, the distro
// locations, or debuginfod), checks its build-id against the kernel the
// addresses came from, and returns an Index, cached by build-id so that
// later runs load it in milliseconds. Its functions are the kernel's
// symbols: each holds all of its address ranges (a .cold part belongs to the
// function whose DWARF ranges include it) and the source lines its code
// comes from, split into its own and those of code inlined into it.
// Compiler clones (foo.isra.0, foo.constprop.0, foo.part.0) are functions of
// their own, so a line counts for a clone only if the clone's code holds it.
// A function's lines are exactly those llvm-symbolizer --inlining prints for
// its addresses (see Function.Lines). FuncAt maps an address to its
// function, Lookup a C or symbol name.
//
// A cached index is used only if it holds the build-id asked for; otherwise
// it is rebuilt from the vmlinux. Errors wrap ErrNoDebugInfo when no DWARF
// was found (no file, or a file without .debug_info: the case where Estimate
// is the fallback) and ErrBuildIDMismatch when the debug info or the cached
// index belongs to another build of the kernel.
//
// Without DWARF, Estimate derives line counts from function sizes
// (BytesPerLine); such functions are marked Estimated and never exact.
package symbolize
