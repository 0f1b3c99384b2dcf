//go:build !amd64

package bpf

// hapscope's BPF objects and their loader exist for x86-64 kernels only
// (see the package doc). On any other GOARCH the build stops here, with an
// error that names the reason, instead of on the missing generated
// bindings (undefined: loadHap).
var _ = hapscope_bpf_needs_amd64_see_README
