// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore
/*
 * Module loads: the module:module_load tracepoint, which the kernel hits in
 * load_module() once the module is formed, its symbols, ftrace records,
 * BTF and sysfs entries exist, just before its init function runs. Each
 * load sends the module's name and the time to user space through a ring
 * buffer, so that a tracer can attach to the new code at once instead of
 * polling for it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MODULE_NAME_LEN 56 /* 64 - sizeof(unsigned long) */

struct module {
	char name[MODULE_NAME_LEN];
} __attribute__((preserve_access_index));

struct modload_event {
	__u64 ktime; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	char name[MODULE_NAME_LEN];
};

struct {
	__uint(type, 27 /* BPF_MAP_TYPE_RINGBUF */);
	__uint(max_entries, 4096);
} modloads SEC(".maps");

SEC("tp_btf/module_load")
int hap_module_load(__u64 *ctx)
{
	struct module *mod = (struct module *)ctx[0];
	struct modload_event e = {};

	e.ktime = bpf_ktime_get_ns();
	bpf_probe_read_kernel_str(e.name, sizeof(e.name), mod->name);
	bpf_ringbuf_output(&modloads, &e, sizeof(e), 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
