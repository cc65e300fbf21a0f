//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The function family: any kernel function taking a struct sk_buff *, as an
 * entry and an exit event, so its stage span lasts as long as the kernel spent
 * in it. fentry/fexit (BTF trampolines) where the kernel has them, kprobe and
 * kretprobe otherwise. A trampoline program is bound to its function when loaded,
 * so user space loads the fentry programs once per function, with their own
 * constants below; the kprobe programs are loaded once and attached to every
 * function, each attachment's cookie naming it (enum probe_cookie). Both share
 * the maps of the tracepoint family. skb_clone has programs of its own: a clone
 * of a followed skb is followed too.
 */
#include "skb.h"

/* Set per function by user space before loading the fentry programs. The verifier
 * sees them as constants, so a function that is not nf_hook_slow never reads a
 * second argument. */
volatile const __u16 probe_id = PROBE_FUNC_BASE;
volatile const __u8 is_nf_hook = 0; /* nf_hook_slow: report hook, family and verdict */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct call_key);
	__type(value, struct call);
} calls SEC(".maps");

/* A call of a followed skb's function, open until its exit; counted in followed_live so
 * that exits look calls up only while one may be open. */
static __always_inline void open_call(const struct call_key *key, const struct call *c)
{
	if (bpf_map_update_elem(&calls, key, c, BPF_ANY))
		count(COUNTER_CALLS_FULL);
	else
		live_add(1);
}

static __always_inline void close_call(const struct call_key *key)
{
	if (!bpf_map_delete_elem(&calls, key))
		live_add(-1);
}

static __always_inline void on_enter(__u16 probe, bool nf_hook, struct sk_buff *skb, struct nf_hook_state *state,
				     bool fentry)
{
	if (!skb)
		return;
	struct event ev;
	struct track *t;
	if (!first_look(&ev, skb, probe, EVENT_ENTER, L3_NETWORK_HEADER, fentry, &t))
		return;
	finish_event(&ev, skb, fentry);
	read_skb_dev(&ev, skb, fentry);
	read_skb_sock_netns(&ev, skb, fentry);
	bool delivered;
	if (!follow(&ev, skb, t, FOLLOW, L3_NETWORK_HEADER, fentry, &delivered))
		return;
	if (!filter.drops_only)
		read_followed(&ev, skb, fentry);
	/* No filter looks at the hook: it is read for followed skbs only. */
	if (nf_hook && state) {
		ev.nf_hook = BPF_CORE_READ(state, hook);
		ev.nf_pf = BPF_CORE_READ(state, pf);
	}
	/* The call is opened after the event is sent, from copies: the key and the call
	 * then share the event's stack slots, and the frame stays small enough for the
	 * filter expression's subprogram on top of it (512 bytes for both together). */
	__u64 addr = ev.skb;
	__u8 hook = ev.nf_hook, pf = ev.nf_pf;
	__u64 opened = ev.ts_ns;
	/* Drops-only mode: the exit's trail record carries the packet's identity (the
	 * trail walk's same_skb test), not its tuple. */
	struct track id = {};
	if (filter.drops_only)
		id = (struct track){ .tcp_seq = ev.tcp_seq, .tcp_ack = ev.tcp_ack, .l4 = ev.l4, .tcp_flags = ev.tcp_flags };
	send(&ev);
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .skb = fentry ? addr : 0, .probe = probe };
	struct call c = { .skb = addr, .track = id, .nf_hook = hook, .nf_pf = pf, .opened = opened };
	open_call(&key, &c);
}

/* Drops-only mode: whether call c was open when its skb's drop happened on this CPU: its
 * exit comes after the drop's record, and goes straight out (a function the skb is freed
 * in, such as nf_hook_slow with its DROP verdict). */
static __always_inline bool dropped_inside(const struct call *c)
{
	__u32 zero = 0;
	struct last_drop *last = bpf_map_lookup_elem(&last_drop, &zero);
	return last && last->skb == c->skb && c->opened <= last->ts_ns;
}

static __always_inline void on_exit(__u16 probe, bool nf_hook, __s64 ret, __u64 skb)
{
	/* Every exit of every traced function comes here: no lookup while no call is open. */
	if (none_followed())
		return;
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .skb = skb, .probe = probe };
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c)
		return;
	struct event ev;
	init_event_at(&ev, c->skb, probe, EVENT_EXIT);
	ev.retval = ret;
	if (nf_hook) {
		/* nf_hook_slow returns 1 to let the packet on, -EPERM after a drop, 0 when a
		 * hook took the skb (queue, stolen). */
		ev.nf_hook = c->nf_hook;
		ev.nf_pf = c->nf_pf;
		int r = (int)ret; /* nf_hook_slow returns int: the upper half is not its */
		ev.nf_verdict = r == 1 ? NF_ACCEPT : r < 0 ? NF_DROP : NF_STOLEN;
	}
	if (filter.drops_only) {
		ev.l4 = c->track.l4;
		ev.tcp_seq = c->track.tcp_seq;
		ev.tcp_ack = c->track.tcp_ack;
		ev.tcp_flags = c->track.tcp_flags;
	}
	bool after_drop = filter.drops_only && dropped_inside(c);
	close_call(&key);
	if (after_drop)
		emit(&ev);
	else
		send(&ev);
}


/*
 * nft_do_chain(struct nft_pktinfo *pkt, void *priv) starts: priv is the base chain the
 * hook runs (a rule in a chain it jumped to shows as this base chain). A followed skb's
 * table and chain are noted before any rule runs: since 6.4 a drop frees the skb inside
 * nft_do_chain, so its free comes before the return (the free moves them to nft_freed,
 * skb.h). Returns the skb, or 0 when it is not followed or nf_tables' layout is unknown.
 */
static __always_inline __u64 on_nft_enter(void *pkt, void *chain)
{
	if (!kcfg.nft_chain_name || !pkt || !chain)
		return 0;
	/* Drops-only mode follows no skb: any may be dropped, and its drop be sent. */
	if (!filter.drops_only && none_followed())
		return 0;
	__u64 skb = 0;
	bpf_probe_read_kernel(&skb, sizeof(skb), pkt + kcfg.nft_pkt_skb);
	if (!filter.drops_only && !tracked_entry(skb))
		return 0;
	struct nft_names n = {};
	const char *name = NULL;
	void *table = NULL;
	bpf_probe_read_kernel(&name, sizeof(name), chain + kcfg.nft_chain_name);
	bpf_probe_read_kernel_str(n.chain, sizeof(n.chain), name);
	bpf_probe_read_kernel(&table, sizeof(table), chain + kcfg.nft_chain_table);
	if (table) {
		bpf_probe_read_kernel(&name, sizeof(name), table + kcfg.nft_table_name);
		bpf_probe_read_kernel_str(n.table, sizeof(n.table), name);
	}
	bpf_map_update_elem(&nft_drops, &skb, &n, BPF_ANY);
	return skb;
}

/* nft_do_chain returns: an skb it let on forgets its chain; one it dropped (NF_DROP, or
 * NF_STOLEN after freeing it itself) keeps it for its free to move. */
static __always_inline void on_nft_exit(__u64 skb, __u64 verdict)
{
	__u32 v = verdict & NF_VERDICT_MASK;
	if (skb && v != NF_DROP && v != NF_STOLEN)
		bpf_map_delete_elem(&nft_drops, &skb);
}

SEC("fentry")
int fentry_nft_do_chain(__u64 *ctx)
{
	on_nft_enter((void *)ctx[0], (void *)ctx[1]);
	return 0;
}

SEC("fexit")
int fexit_nft_do_chain(__u64 *ctx)
{
	__u64 ret = 0, skb = 0;
	bpf_get_func_ret(ctx, &ret);
	if (kcfg.nft_chain_name && ctx[0])
		bpf_probe_read_kernel(&skb, sizeof(skb), (void *)ctx[0] + kcfg.nft_pkt_skb);
	on_nft_exit(skb, ret);
	return 0;
}

/* kretprobe sees no arguments: the entry leaves it the followed skb. */
SEC("kprobe")
int kprobe_nft_do_chain(struct pt_regs *ctx)
{
	__u64 skb = on_nft_enter((void *)PT_REGS_PARM1(ctx), (void *)PT_REGS_PARM2(ctx));
	if (!skb)
		return 0;
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .probe = PROBE_NFT_DO_CHAIN };
	struct call c = { .skb = skb };
	open_call(&key, &c);
	return 0;
}

SEC("kretprobe")
int kretprobe_nft_do_chain(struct pt_regs *ctx)
{
	if (none_followed())
		return 0;
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .probe = PROBE_NFT_DO_CHAIN };
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c)
		return 0;
	on_nft_exit(c->skb, PT_REGS_RC(ctx));
	close_call(&key);
	return 0;
}

/*
 * One entry (and fexit) program per position of the skb argument, each reading a fixed
 * argument: an index chosen at run time would make clang compute the context
 * address, which the verifier rejects. User space picks the program by the
 * position it found in BTF. nf_hook_slow's state is always its second argument.
 */
#define FENTRY_AT(i)                                                        \
	SEC("fentry")                                                       \
	int fentry_skb_##i(__u64 *ctx)                                      \
	{                                                                   \
		on_enter(probe_id, is_nf_hook, (void *)ctx[i], is_nf_hook ? (void *)ctx[1] : NULL, true); \
		return 0;                                                   \
	}                                                                   \
	SEC("fexit")                                                        \
	int fexit_skb_##i(__u64 *ctx)                                       \
	{                                                                   \
		__u64 ret = 0;                                              \
		bpf_get_func_ret(ctx, &ret);                                \
		on_exit(probe_id, is_nf_hook, (__s64)ret, ctx[i]);          \
		return 0;                                                   \
	}

#define KPROBE_AT(i, parm)                                                         \
	SEC("kprobe")                                                              \
	int kprobe_skb_##i(struct pt_regs *ctx)                                    \
	{                                                                          \
		__u64 cookie = bpf_get_attach_cookie(ctx);                         \
		bool nf_hook = cookie & COOKIE_NF_HOOK;                            \
		on_enter(cookie & COOKIE_PROBE_MASK, nf_hook, (void *)parm(ctx),   \
			 nf_hook ? (void *)PT_REGS_PARM2(ctx) : NULL, false);      \
		return 0;                                                          \
	}

FENTRY_AT(0)
FENTRY_AT(1)
FENTRY_AT(2)
FENTRY_AT(3)
FENTRY_AT(4)
KPROBE_AT(0, PT_REGS_PARM1)
KPROBE_AT(1, PT_REGS_PARM2)
KPROBE_AT(2, PT_REGS_PARM3)
KPROBE_AT(3, PT_REGS_PARM4)
KPROBE_AT(4, PT_REGS_PARM5)

SEC("kretprobe")
int kretprobe_skb(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	on_exit(cookie & COOKIE_PROBE_MASK, cookie & COOKIE_NF_HOOK, (__s64)PT_REGS_RC(ctx), 0);
	return 0;
}

/*
 * skb_clone's return. The clone of a followed skb is followed too, remembered with the
 * original's identity t; its first event names the original, which skb_clone leaves
 * valid and unchanged.
 */
static __always_inline void on_clone(__u64 orig, const struct track *t, struct sk_buff *clone)
{
	if (!clone)
		return;
	struct track nt = *t; /* t is a map value: copied before the map changes */
	/* The clone has passed no device yet. */
	nt.queued = (struct dev_id){};
	nt.received = (struct dev_id){};
	struct event ev;
	init_event(&ev, clone, PROBE_SKB_CLONE, EVENT_INSTANT);
	ev.parent = orig;
	read_tuple(&ev, clone, L3_NETWORK_HEADER, false);
	read_followed(&ev, clone, false);
	read_skb_dev(&ev, clone, false);
	read_skb_sock_netns(&ev, clone, false);
	remember(ev.skb, &nt);
	send(&ev);
}

SEC("fexit")
int fexit_skb_clone(__u64 *ctx)
{
	__u64 orig = ctx[0], ret = 0;
	bpf_get_func_ret(ctx, &ret);
	struct track *t = tracked_entry(orig);
	if (t)
		on_clone(orig, t, (void *)ret);
	return 0;
}

/* kretprobe sees no arguments: the entry leaves it the original and the original's
 * identity, when followed, so the return need not look the original up again. */
SEC("kprobe")
int kprobe_skb_clone(struct pt_regs *ctx)
{
	__u64 skb = PT_REGS_PARM1(ctx);
	struct track *t = tracked_entry(skb);
	if (!t)
		return 0;
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .probe = PROBE_SKB_CLONE };
	struct call c = { .skb = skb, .track = *t };
	open_call(&key, &c);
	return 0;
}

SEC("kretprobe")
int kretprobe_skb_clone(struct pt_regs *ctx)
{
	if (none_followed())
		return 0;
	struct call_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .probe = PROBE_SKB_CLONE };
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c)
		return 0;
	on_clone(c->skb, &c->track, (void *)PT_REGS_RC(ctx));
	close_call(&key);
	return 0;
}
