/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Minimal hand-written kernel types for hap.bpf.c. Only what the programs
 * use; kernel structs carry preserve_access_index so field offsets are
 * relocated against the running kernel's BTF (CO-RE).
 */
#ifndef HAP_VMLINUX_H
#define HAP_VMLINUX_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};

enum {
	BPF_F_MMAPABLE = (1U << 10),
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* x86-64, Linux 6.2 to 6.14: the per-CPU hot data holding preempt_count. */
struct pcpu_hot {
	int preempt_count;
} __attribute__((preserve_access_index));

/* The fields origin() reads. */
struct task_struct {
	unsigned int flags;
} __attribute__((preserve_access_index));

/* x86-64 */
struct pt_regs {
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long sp;
} __attribute__((preserve_access_index));

#endif
