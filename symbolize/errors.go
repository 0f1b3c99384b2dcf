package symbolize

import "errors"

// Sentinel errors that callers can test with errors.Is. The errors returned
// by this package wrap them and say what was tried and what to do.
var (
	// ErrNoDebugInfo: no DWARF was found for the kernel (or module): not at
	// the path given, not in the distribution's locations, not from
	// debuginfod. Estimate is the only fallback, and its lines are marked.
	ErrNoDebugInfo = errors.New("no debug info")
	// ErrBuildIDMismatch: the debug info or a cached index belongs to
	// another build of the kernel than the addresses came from; its lines
	// would be wrong.
	ErrBuildIDMismatch = errors.New("build-id mismatch")
)
