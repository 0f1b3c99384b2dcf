// Package symbolize turns kernel functions into the source lines their code
// comes from, using the DWARF of the kernel's vmlinux and of its modules.
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
// Kernel modules: OpenModule indexes one module from its .ko with DWARF
// (Debian's -dbg package: /usr/lib/debug/lib/modules/<release>/kernel/…),
// found by file name or by scanning build-id notes (the package has no
// .build-id links for modules), then debuginfod, and checked against the
// loaded module's build-id (/sys/module/<m>/notes/.note.gnu.build-id). A
// .ko is a relocatable file whose sections all start at 0, so its DWARF is
// relocated here with every allocated section at an address of its own
// (R_X86_64_64, _32, _32S, _PC32, _PLT32, _PC64; any other relocation type
// in a debug section is an error naming it): .text, .text.unlikely,
// .init.text and .exit.text do not overlap. The index is cached by the
// module's build-id in that synthetic layout (Index.Sections); OpenModule
// returns it placed at the loaded module's section addresses
// (/sys/module/<m>/sections, or ModuleOptions.Sections), so that FuncAt
// takes the runtime address of a probe or /proc/kallsyms and Function
// addresses are runtime addresses (Index.Place does the same for any
// layout). Index.Module names the module ("" for vmlinux); a name can be in
// vmlinux and in modules: each index answers for its own code only.
// EstimateModule is the fallback for a module without DWARF.
//
// Without DWARF, Estimate derives line counts from function sizes
// (BytesPerLine); such functions are marked Estimated and never exact.
package symbolize
