// Package symbolize turns kernel functions into the source lines their code
// comes from, using the DWARF of the kernel's vmlinux.
//
// Open finds the debug info of a kernel (an explicit path, the distro
// locations, or debuginfod), checks its build-id against the kernel the
// addresses came from, and returns an Index, cached by build-id so that
// later runs load it in milliseconds. For every function the Index holds all
// of its address ranges (.cold parts and .isra/.constprop clones merged into
// one function) and two sets of lines: its own and those of code inlined
// into it. FuncAt maps an address to its function, Lookup a name.
//
// Without DWARF, Estimate derives line counts from function sizes
// (BytesPerLine); such functions are marked Estimated and never exact.
package symbolize
