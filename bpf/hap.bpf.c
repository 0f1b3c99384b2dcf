// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore
/*
 * hapscope's in-kernel counter: one program body, four entry points
 * (kprobe.multi, fentry, kprobe, and a tp_btf used by self-tests). Each
 * event carries a function index (the attach cookie); the program checks
 * whether the current task lies in one of up to MAX_SCOPES cgroup v2
 * subtrees and, if so, bumps hits[(scope * NCTX + context) * nfuncs + index].
 * Events no scope counts are sampled (one in SAMPLE_GAP on average) into the
 * slot after the scopes: which functions the probes cost other tasks most for.
 *
 * Contexts (CTX_*): task context; soft IRQ that the task ran itself through
 * do_softirq() (local_bh_enable or netif_rx on its own path, e.g. the
 * receive side of its own loopback or veth send), told by a per-CPU depth
 * that the hap_bh_* programs on do_softirq keep; and any other interrupt
 * context (hard IRQ, NMI, soft IRQ run at hard-IRQ exit or in ksoftirqd),
 * counted only when count_irq is set. With attribute set, each counted
 * event is also counted by origin in the origins hash: the system call the
 * task is in, a user page fault, an io_uring worker, interrupt context or
 * other (see origin()). The context is read from the per-CPU
 * preempt count, through bpf_this_cpu_ptr() on a typed __ksym per-CPU
 * variable: pcpu_hot.preempt_count (x86-64, 6.2 to 6.14) or __preempt_count
 * (before 6.2 and after 6.14). The loader patches the extern into a BTF-id
 * load and sets preempt_mode; the verifier then prunes the branch that does
 * not apply.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SCOPES 16

/* Context rows per scope (bpf.Context in Go). */
#define CTX_TASK 0
#define CTX_OWN_SOFTIRQ 1
#define CTX_INTERRUPT 2
#define NCTX 3

/* include/linux/preempt.h */
#define SOFTIRQ_OFFSET 0x00000100
#define HARDIRQ_MASK 0x000f0000
#define NMI_MASK 0x00f00000

enum stat {
	STAT_DROPPED = 0,   /* events that could not be recorded */
	STAT_IRQ = 1,       /* events skipped: interrupt context */
	STAT_ORIGIN_DROPPED = 2, /* counted events the origins hash had no room for */
	STAT_MAX = 3,
};

/* Origins (bpf.Origin in Go): a system call number below NR_SYSCALL_ORIGINS,
 * or one of these. */
#define NR_SYSCALL_ORIGINS 1024
#define ORIGIN_FAULT (NR_SYSCALL_ORIGINS + 0)     /* a user page fault */
#define ORIGIN_IO_WORKER (NR_SYSCALL_ORIGINS + 1) /* an io_uring worker thread */
#define ORIGIN_INTERRUPT (NR_SYSCALL_ORIGINS + 2) /* CTX_INTERRUPT (count_irq) */
#define ORIGIN_OTHER (NR_SYSCALL_ORIGINS + 3)     /* none of the above */

/* include/linux/sched.h */
#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

struct scope {
	__u64 cgid;  /* cgroup v2 id (inode); 0 = slot unused */
	__u32 level; /* depth of that cgroup below the root (root = 0) */
	__u32 epoch; /* origins: bumped at each reset of the slot */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SCOPES);
	__type(key, __u32);
	__type(value, struct scope);
} scopes SEC(".maps");

/* hits[(scope * NCTX + ctx) * nfuncs + index]; max_entries
 * (nfuncs * (MAX_SCOPES * NCTX + 1)) is set by the loader. The row after the
 * scopes, at MAX_SCOPES * NCTX * nfuncs, holds the samples: events counted in
 * no scope (another task's, or interrupt context not counted), one in
 * SAMPLE_GAP on average, at random gaps, so that no fixed call pattern
 * aliases. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* Per CPU: every program run (probe hit) of any task and context, the run
 * at which the next event not counted in a scope is sampled, and how deep
 * the CPU is in do_softirq() calls (hap_bh_*; 0 when they are not attached). */
struct cpu_state {
	__u64 events;
	__u64 next_sample;
	__u64 bh_depth;
};

#define SAMPLE_GAP 64

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* kprobe.multi: (entry address, index) sorted by address; max_entries = naddrs. */
struct fn_addr {
	__u64 addr;
	__u32 idx;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fn_addr);
} addrs SEC(".maps");

/* kprobe.multi: entry address -> index of functions added after load
 * (modules loaded later), looked up only when the sorted array has no entry.
 * max_entries is set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} late_addrs SEC(".maps");

/* origins[(function index, scope, origin)] = events; max_entries is set by
 * the loader, and a key that finds no room is counted in
 * STAT_ORIGIN_DROPPED. Used only when attribute is set. */
struct origin_key {
	__u32 idx;
	__u16 scope;
	__u16 origin;
	__u32 epoch; /* the scope's epoch: a reset starts new keys at once */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct origin_key);
	__type(value, __u64);
} origins SEC(".maps");

/* The user entry frame of each scope task's last user page fault (tid ->
 * frame), written by hap_fault: a later event whose task's entry frame is
 * that one runs in the fault. LRU: exited threads age out. */
struct fault_frame {
	__u64 ip;
	__u64 sp;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fault_frame);
} faults SEC(".maps");

/* Function indices: 0..nfuncs-1 (the initial ones plus those reserved). */
volatile const __u32 nfuncs = 1;
/* Entries of addrs in use (the initial functions with addresses). */
volatile const __u32 naddrs = 0;
/* 0: preempt count unreadable, every event is task context (only with
 * count_irq); 1: pcpu_hot; 2: __preempt_count */
volatile const __u32 preempt_mode = 0;
/* 1: count CTX_INTERRUPT events; 0: skip them (stats[STAT_IRQ]) */
volatile const __u32 count_irq = 0;
/* function index reported by the tp_btf self-test program */
volatile const __u32 tp_index = 0;
/* 1: count events by origin too (the origins hash) */
volatile const __u32 attribute = 0;

extern void pcpu_hot __ksym __weak;
extern void __preempt_count __ksym __weak;

static __always_inline void stat_inc(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &k);
	if (v)
		*v += 1;
}

/* The context of the event; c is this CPU's state (NULL: no guard). */
static __always_inline int context(struct cpu_state *c)
{
	int pc = 0;

	if (preempt_mode == 1) {
		struct pcpu_hot *h = (struct pcpu_hot *)bpf_this_cpu_ptr(&pcpu_hot);
		pc = h->preempt_count;
	} else if (preempt_mode == 2) {
		int *p = (int *)bpf_this_cpu_ptr(&__preempt_count);
		pc = *p;
	}
	if (!(pc & (NMI_MASK | HARDIRQ_MASK | SOFTIRQ_OFFSET)))
		return CTX_TASK;
	if (pc & (NMI_MASK | HARDIRQ_MASK))
		return CTX_INTERRUPT;
	/* Serving soft IRQ: the task's own only inside its do_softirq(). */
	if (c && c->bh_depth > 0)
		return CTX_OWN_SOFTIRQ;
	return CTX_INTERRUPT;
}

/* 1 + the highest scope slot in use (0: none): slots from there on are not
 * looked at, so an event of a task in no scope costs little with few scopes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scope_end SEC(".maps");

static __always_inline __u32 scopes_end(void)
{
	__u32 k = 0;
	__u32 *e = bpf_map_lookup_elem(&scope_end, &k);

	return e ? *e : 0;
}

static __always_inline int in_scope(__u32 i, __u32 end)
{
	if (i >= end)
		return 0;
	__u32 key = i;
	struct scope *s = bpf_map_lookup_elem(&scopes, &key);

	return s && s->cgid && bpf_get_current_ancestor_cgroup_id(s->level) == s->cgid;
}

#if MAX_SCOPES != 16
#error "update the scope lists in admit() and count()"
#endif

/* The context row to count the event in, or -1 when it is not counted: the
 * task lies in no scope, or the event is CTX_INTERRUPT and count_irq is off.
 * Short-circuits at the first scope that matches (a bit mask carried to
 * count() would multiply the verifier's states by 2^16). */
static __always_inline int in_any_scope(__u32 e)
{
	return in_scope(0, e) || in_scope(1, e) || in_scope(2, e) || in_scope(3, e) ||
	       in_scope(4, e) || in_scope(5, e) || in_scope(6, e) || in_scope(7, e) ||
	       in_scope(8, e) || in_scope(9, e) || in_scope(10, e) || in_scope(11, e) ||
	       in_scope(12, e) || in_scope(13, e) || in_scope(14, e) || in_scope(15, e);
}

static __always_inline int admit(__u32 e, struct cpu_state *c)
{
	if (!in_any_scope(e))
		return -1;
	int x = context(c);
	if (x == CTX_INTERRUPT && !count_irq) {
		stat_inc(STAT_IRQ);
		return -1;
	}
	return x;
}

/* Where the current task came from, for an event in context x. Its user
 * entry frame (task_pt_regs) says: the entry code stores the system call
 * number in orig_ax on a system call and -1 on an exception or interrupt,
 * so orig_ax >= 0 is a system call, from its seccomp check before the
 * sys_enter tracepoint to the signal delivery and rescheduling on its way
 * back to user mode, and soft IRQ the task runs itself inside it. -1 is a
 * user page fault when the frame is the one hap_fault saw the fault with,
 * else "other" (work on the way back to user mode after an interrupt).
 * io_uring workers and kernel threads have no user frame. */
static __always_inline __u32 origin(int x)
{
	if (x == CTX_INTERRUPT)
		return ORIGIN_INTERRUPT;
	struct task_struct *t = bpf_get_current_task_btf();
	unsigned int flags = t->flags;
	if (flags & PF_IO_WORKER)
		return ORIGIN_IO_WORKER;
	if (flags & PF_KTHREAD)
		return ORIGIN_OTHER;
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!r)
		return ORIGIN_OTHER;
	long nr = (long)r->orig_ax;
	if (nr >= 0)
		return nr < NR_SYSCALL_ORIGINS ? (__u32)nr : ORIGIN_OTHER;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fault_frame *f = bpf_map_lookup_elem(&faults, &tid);
	if (f && f->ip == r->ip && f->sp == r->sp)
		return ORIGIN_FAULT;
	return ORIGIN_OTHER;
}

static __always_inline void count_origin(__u32 i, __u32 idx, __u32 o)
{
	__u32 key = i;
	struct scope *s = bpf_map_lookup_elem(&scopes, &key);

	if (!s)
		return;
	struct origin_key k = { .idx = idx, .scope = (__u16)i, .origin = (__u16)o, .epoch = s->epoch };
	__u64 *v = bpf_map_lookup_elem(&origins, &k);

	if (!v) {
		__u64 zero = 0;
		/* EEXIST when another CPU added it meanwhile: look again. */
		bpf_map_update_elem(&origins, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&origins, &k);
	}
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		stat_inc(STAT_ORIGIN_DROPPED);
}

static __always_inline void count_scope(__u32 i, __u32 idx, __u32 n, __u32 e, __u32 x, __u32 o)
{
	if (!in_scope(i, e))
		return;
	__u32 k = (i * NCTX + x) * n + idx;
	__u64 *c = bpf_map_lookup_elem(&hits, &k);
	if (c)
		__sync_fetch_and_add(c, 1);
	else
		stat_inc(STAT_DROPPED);
	if (attribute)
		count_origin(i, idx, o);
}

/* Unrolled by hand: MAX_SCOPES array lookups (inlined by the verifier) and
 * one helper call per scope in use. */
static __always_inline void count(__u64 idx, __u32 e, int x)
{
	__u32 n = nfuncs;

	if (idx >= n) {
		stat_inc(STAT_DROPPED);
		return;
	}
	__u32 o = attribute ? origin(x) : 0;
#define SCOPE(i) count_scope(i, (__u32)idx, n, e, (__u32)x, o)
	SCOPE(0); SCOPE(1); SCOPE(2); SCOPE(3);
	SCOPE(4); SCOPE(5); SCOPE(6); SCOPE(7);
	SCOPE(8); SCOPE(9); SCOPE(10); SCOPE(11);
	SCOPE(12); SCOPE(13); SCOPE(14); SCOPE(15);
#undef SCOPE
}

static __always_inline struct cpu_state *cpu_state(void)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&cpu, &k);
}

/* Counts the run; says whether it is to be sampled should no scope count it. */
static __always_inline int event(struct cpu_state *c)
{
	if (!c)
		return 0;
	c->events++;
	if (c->events < c->next_sample)
		return 0;
	c->next_sample = c->events + 1 + bpf_get_prandom_u32() % (2 * SAMPLE_GAP - 1);
	return 1;
}

static __always_inline void sample(__u64 idx)
{
	__u32 n = nfuncs;

	if (idx >= n)
		return;
	__u32 k = MAX_SCOPES * NCTX * n + (__u32)idx;
	__u64 *c = bpf_map_lookup_elem(&hits, &k);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* Index of the function entered at ip, nfuncs if not found. 17 halvings
 * cover 2^17 functions (the loader refuses more); functions added later are
 * in the late_addrs hash, looked up only on a miss. */
static __always_inline __u64 index_of(__u64 ip)
{
	__u32 lo = 0, hi = naddrs;

	for (int i = 0; i < 17; i++) {
		if (lo >= hi)
			break;
		__u32 mid = (lo + hi) / 2;
		struct fn_addr *e = bpf_map_lookup_elem(&addrs, &mid);
		if (!e)
			break;
		if (e->addr == ip)
			return e->idx;
		if (e->addr < ip)
			lo = mid + 1;
		else
			hi = mid;
	}
	__u32 *late = bpf_map_lookup_elem(&late_addrs, &ip);
	return late ? *late : nfuncs;
}

SEC("kprobe.multi")
int hap_kprobe_multi(void *ctx)
{
	struct cpu_state *c = cpu_state();
	int smp = event(c);
	__u32 e = scopes_end();
	int x = admit(e, c);

	if (x >= 0)
		count(index_of(bpf_get_func_ip(ctx)), e, x);
	else if (smp)
		sample(index_of(bpf_get_func_ip(ctx)));
	return 0;
}

/* The body of the entry points whose function index comes cheap (a cookie,
 * a constant); kprobe.multi searches for it only when it is needed. */
static __always_inline int on_event(__u64 idx)
{
	struct cpu_state *c = cpu_state();
	int smp = event(c);
	__u32 e = scopes_end();
	int x = admit(e, c);

	if (x >= 0)
		count(idx, e, x);
	else if (smp)
		sample(idx);
	return 0;
}

SEC("kprobe")
int hap_kprobe(void *ctx)
{
	return on_event(bpf_get_attach_cookie(ctx));
}

/* The attach target is replaced per function by the loader. */
SEC("fentry/vfs_read")
int hap_fentry(void *ctx)
{
	return on_event(bpf_get_attach_cookie(ctx));
}

SEC("tp_btf/sys_enter")
int hap_sys_enter(void *ctx)
{
	return on_event(tp_index);
}

/* Attribution: records the entry frame of a scope task's user page fault
 * (see origin()). Attached only when attribute is set. */
SEC("tp_btf/page_fault_user")
int hap_fault(__u64 *ctx)
{
	/* TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
	struct pt_regs *r = (struct pt_regs *)ctx[1];

	if (!in_any_scope(scopes_end()))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fault_frame f = { .ip = r->ip, .sp = r->sp };
	bpf_map_update_elem(&faults, &tid, &f, BPF_ANY);
	return 0;
}

/* The soft-IRQ guard: the depth of do_softirq() calls on this CPU. The
 * loader attaches it to do_softirq and its compiler clones
 * (do_softirq.part.0, which local_bh_enable calls on Debian's kernels),
 * exit first, and detaches entry first, so that a call caught half-way only
 * ever leaves the depth too low (clamped at 0), never stuck above it.
 * do_softirq() runs with preemption disabled (local_bh_enable keeps one
 * count), so entry and exit happen on the same CPU. irq_exit and ksoftirqd
 * run soft IRQs without it. */
static __always_inline void bh_enter(void)
{
	struct cpu_state *c = cpu_state();

	if (c)
		c->bh_depth++;
}

static __always_inline void bh_exit(void)
{
	struct cpu_state *c = cpu_state();

	if (c && c->bh_depth > 0)
		c->bh_depth--;
}

SEC("fentry/do_softirq")
int hap_bh_enter(void *ctx)
{
	bh_enter();
	return 0;
}

SEC("fexit/do_softirq")
int hap_bh_exit(void *ctx)
{
	bh_exit();
	return 0;
}

SEC("kprobe/do_softirq")
int hap_bh_kenter(void *ctx)
{
	bh_enter();
	return 0;
}

SEC("kretprobe/do_softirq")
int hap_bh_kexit(void *ctx)
{
	bh_exit();
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
