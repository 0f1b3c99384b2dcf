// Package bpf holds hapscope's in-kernel counter: BPF programs that count,
// per cgroup v2 subtree ("scope") and per kernel function, how often the
// function was entered by a task of that subtree.
//
// Only this package knows the BPF object layout. Attaching the programs to
// functions is the caller's business (package coverage); each fentry or
// kprobe attachment must carry the function's index as its BPF cookie. The
// kprobe.multi program needs no cookie: it finds the index from the entry
// address (Config.Addrs) by a binary search in BPF with inlined array
// lookups, so it calls no traceable kernel function (the kernel's cookie
// lookup calls bsearch() and a comparison callback).
//
// Every program first checks whether the current task lies in a scope, so
// events of other tasks cost one cgroup-id comparison per scope in use.
//
// Layout: one array of uint64 (memory-mapped, read without syscalls) with
// one row of N = Functions+Reserve counters (Indices) per scope and Context:
// hits[(scope*Contexts+context)*N+index], then one more row after the
// MaxScopes*Contexts rows for the samples (see Sampled); one array of up to
// MaxScopes (cgroup id, level) pairs checked with
// bpf_get_current_ancestor_cgroup_id; for kprobe.multi, the initial
// functions' addresses sorted (binary search) and a hash of the addresses
// added later (AddAddrs), looked up only when the search misses; and per-CPU
// counters: every program run (Stats.Events), events dropped or skipped,
// and the do_softirq depth. With Config.Attribution, a hash of (function
// index, scope slot, Origin, the slot's epoch) counts, and an LRU hash of
// each scope thread's last user page fault frame (AttachFaults); a reset
// bumps the slot's epoch in its scope entry, so new keys start at once.
//
// Contexts: the program reads the CPU's preempt count, like the kernel's
// in_nmi()/in_hardirq()/in_serving_softirq(), through bpf_this_cpu_ptr() on
// the per-CPU variable pcpu_hot (x86-64 6.2 to 6.14) or __preempt_count
// (other kernels); the loader turns the extern into a typed BTF-id load, so
// no bpf_probe_read_kernel is needed. No interrupt bit: ContextTask. Serving
// a soft IRQ inside a do_softirq() call on this CPU (the guard that
// AttachSoftirq puts on do_softirq and its clones keeps a per-CPU depth):
// ContextOwnSoftirq, work the current task runs synchronously on its own
// path (local_bh_enable or netif_rx after its own send: the receive side of
// loopback and veth traffic, bridge and netfilter hooks on it). Anything
// else: ContextInterrupt (hard IRQ, NMI, soft IRQ at hard-IRQ exit or in
// ksoftirqd), skipped unless Config.Interrupts is set (Stats.Interrupt
// counts the skipped events). Two limits of the rule: every soft IRQ
// pending when the task's do_softirq() runs is counted as its own (a timer
// soft IRQ raised while it had BH disabled, say); and a hard IRQ that lands
// between local_bh_enable dropping the BH count and calling do_softirq()
// (or before the guard's kprobe on do_softirq has run) runs the task's own
// pending work at the IRQ's exit, as ContextInterrupt (0 to 2 datagrams in
// 300 in TestLabSoftirq under QEMU's emulation).
//
// This package's Go API exists for package coverage, which attaches and
// reads these programs; it carries no compatibility promise and may change
// with any release. Importers use coverage. It stays at the top level
// because the project's design (ARCHITECTURE.md) puts the one package that
// knows the BPF object layout there, beside its C source and objects.
//
// The objects are built for x86-64 (GOARCH=amd64) kernels only: bpf2go
// compiles them with -target amd64, the interrupt filter reads the preempt
// count from x86-64's per-CPU variables (pcpu_hot, __preempt_count), which
// arm64 lacks (it keeps the count in thread_info), and the lab that tests
// them boots x86-64 kernels. Building for any other GOARCH fails in
// unsupported.go with "undefined: hapscope_bpf_needs_amd64_see_README".
package bpf
