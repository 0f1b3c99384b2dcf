// Package ftrace is the one harness that compares hapscope with the
// kernel's ftrace function tracers on the same execution.
//
// A Session sets ftrace up through tracefs: the `function` tracer with
// sym-addr, sym-offset and irq-info (every record carries the traced
// address, the module, and the flags column whose hardirq/softirq
// character gives its context), or `function_graph` the 2018 way. ftrace
// has no cgroup filter for these tracers, so a scope is traced as a set of
// threads (set_ftrace_pid) that function-fork extends to their children;
// Collect can drop the records of other tasks, which set_ftrace_pid lets
// through at context switches. Mark writes trace_marker lines at the other
// tracer's Reset and Snapshot, and Collect keeps exactly the records
// between two markers, ordered across CPUs by the global trace clock.
//
// Compare matches functions by start address (the traced address resolved
// through kallsyms), so clones, module functions and same-name statics are
// told apart, and reports both directions over everything ftrace recorded
// in task context: what the other tracer missed, each with a Reason, with
// deny-listed functions shown apart but kept in the denominator, and what
// it added, with what ftrace recorded of it instead.
package ftrace
