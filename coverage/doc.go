// Package coverage measures which kernel functions the tasks of a cgroup v2
// subtree execute, exactly, with eBPF — no text parsing.
//
// It follows cilium/ebpf's split between plain data and live objects:
//
//	LoadCatalogue → *Catalogue   plain data: the attachable functions, vmlinux's
//	                             and loaded modules' (kallsyms text symbols ∩
//	                             available_filter_functions, minus the deny list
//	                             and aliases; clones and functions without BTF
//	                             included) and counts of what was left out, by Reason.
//	                             Inspect it, Subset it, then:
//	Open          → *Tracer      live: BPF programs and links on every catalogue
//	                             function, with the best backend this kernel allows
//	                             (kprobe.multi, then fentry, then kprobe) or the one
//	                             forced in Options; ProbeBackends says why each
//	                             backend is or is not usable here.
//	AddScope      → *Scope       a cgroup v2 directory and all its descendants,
//	                             including those created later; up to MaxScopes at once.
//	Snapshot      → *Snapshot    plain data again: the functions a scope entered
//	                             in its window, with the events lost meanwhile.
//	Close                        detaches everything (fentry links concurrently).
//
// Pruning (the default mode) stops probing a function once every active scope
// has seen it, so the steady state costs less; Options.Counts keeps every
// probe attached for exact hit counts. With kprobe.multi, removing functions
// means replacing a link by one over the rest, so Open groups the functions
// workloads commonly run (prior.txt) in small links of their own, and a link
// is replaced only once its seen functions have been hit often enough to pay
// for it. What stays probed is what the scopes have not run, and other tasks
// and interrupts may run it all the time: for a network server, the receive
// path in soft-IRQ context. That floor is kept on purpose: a function the
// scopes have not run in task context may still be run there later (socket
// backlog processing and writes to a tun device run parts of the receive
// path in task context), so removing its probe would lose calls; and the
// kernel's own part of a hit (fprobe, trampoline) is most of its cost.
// Counting interrupt context too (Options.Interrupts) lets pruning remove
// those probes as well, at the price of a different measurement: soft-IRQ
// work that merely lands in a scope's task is counted. What each mode costs
// a workload, measured in the lab, is in BENCHMARKS.md at the repository's
// root, with the command and commit that measured it.
//
// A Snapshot covers its scope's window: since AddScope or the last Reset.
// Its functions are the scope's; its counters (misses, drops, interrupt
// events skipped, and Events, every probe hit) are over all tasks during
// that window, as the kernel does not count them per cgroup. Each Snapshot
// says which mode produced it.
//
// Whose work is it (the attribution rule; Hit.Context says which applied):
//   - Task: a scope's task in process context (system calls, faults).
//   - Softirq: soft-IRQ work a scope's task runs itself, synchronously, on
//     its own path: do_softirq() called from local_bh_enable() or
//     netif_rx() after its own send (over loopback or a veth pair, this is
//     where the receive side, bridge forwarding, PREROUTING DNAT and
//     receive-side conntrack run). A guard on do_softirq (Snapshot.Softirq
//     says how it is attached) marks it; the preempt count says the CPU is
//     serving a soft IRQ.
//   - Not counted (unless Options.Interrupts, then Interrupt): hard IRQ,
//     NMI, soft IRQ served at a hard interrupt's exit (it merely lands on
//     whichever task was running) and ksoftirqd.
//
// The rule's known imprecision: do_softirq serves every soft IRQ pending
// on that CPU, so work another task raised just before (a packet of its
// queued to the same CPU's backlog, a timer expiring) is counted for the
// scope when it happens to run there; a task's own packet that is handed
// to ksoftirqd under load is not. The programs read the CPU's preempt count
// (see package bpf for how), so the timer interrupt that lands on a
// workload's CPU does not count.
//
// Through which system call (Options.Attribution, Hit.Origins): each call is
// also counted under the Origin of the task's kernel entry — the system call
// it is in, read from its user entry frame, where the entry code stores the
// call's number (or -1 for an exception or interrupt); a user page fault,
// told apart by the frame the page_fault_user tracepoint saw; an io_uring
// worker; interrupt context; or other (work on the way back to user mode
// after an interrupt). A system call's origin covers its seccomp check and
// the signal delivery on its way out, and soft IRQ the task runs inside it.
// Attribution keeps every probe attached, as Counts does.
//
// Measure and Converge are steady-state helpers: wait out start-up, reset,
// then measure a window, or sample how many new functions each interval adds.
//
// Errors can be told apart with errors.Is: Open's wrap ErrNoBackend (no
// backend works on this kernel), ErrPermission (the caller lacks the
// capabilities; check it first, the kernel may well allow tracing) or
// ErrLockdown (the kernel's lockdown refuses it); every method of a closed
// Tracer returns ErrClosed.
package coverage
