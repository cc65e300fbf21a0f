//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The tracepoint family: always available, instants only. Each tracepoint has a
 * tp_btf program (typed arguments via kernel BTF) and a raw_tp twin with the same
 * body for kernels whose BTF cannot be attached to (--btf from a file); user space
 * loads one of the two.
 */
#include "skb.h"

/* --stack: drops of followed skbs record their kernel stack. Set by user space before
 * load; off, the verifier prunes the stack code. */
volatile const __u8 want_stack = 0;

/* Drop stacks until user space reads and deletes them; sized from probes.stack_size
 * (1 entry when --stack is off). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* A packet at a device, received or queued for transmit. On the receive path skb->data
 * is the IP header and network_header is not yet reset: hint says where to look. */
static __always_inline int on_dev(struct sk_buff *skb, __u16 probe, enum l3_hint hint, bool direct)
{
	struct event ev;
	struct track *t;
	if (!first_look(&ev, skb, probe, EVENT_INSTANT, hint, direct, &t))
		return 0;
	finish_event(&ev, skb, direct);
	read_skb_dev(&ev, skb, direct);
	follow_and_send(&ev, skb, t, FOLLOW, hint, direct);
	return 0;
}

/* Slots of the trail an skb's transmit looks back through for its queueing. */
#define XMIT_LOOKBACK 4

/*
 * Drops-only mode: the transmit of an skb whose queueing the trail kept, among its
 * newest slots (the qdisc let it through at once, as it does unless it is backed up).
 * The skb is not read (see on_xmit): the transmit's record is the queueing's with the
 * transmit's time, device, length and return. A transmit found nowhere near its
 * queueing is not kept: nothing of its own says which skb it is.
 */
static __always_inline int on_xmit_trail(__u64 skb, int rc, struct net_device *dev, unsigned int len, bool direct)
{
	__u32 zero = 0;
	struct trail *t = bpf_map_lookup_elem(&trail, &zero);
	if (!t)
		return 0;
	__u64 next = t->next;
	for (__u32 i = 0; i < XMIT_LOOKBACK; i++) {
		if (i >= next)
			return 0;
		const struct event *q = (const void *)&t->slots[(next - 1 - i) & (TRAIL_SLOTS - 1)];
		if (q->skb != skb)
			continue;
		if (q->probe != PROBE_NET_DEV_QUEUE)
			return 0;
		struct event *r = (void *)trail_take(t);
		__builtin_memcpy(r, q, sizeof(struct trail_record));
		r->probe = PROBE_NET_DEV_XMIT;
		r->ts_ns = bpf_ktime_get_ns();
		r->len = len;
		r->retval = rc;
		r->ifindex = 0;
		r->netns = 0;
		__builtin_memset(r->ifname, 0, sizeof(r->ifname));
		read_dev(r, dev, direct);
		count(COUNTER_TRAIL);
		return 0;
	}
	return 0;
}

/*
 * After ndo_start_xmit the driver owns the skb and may have freed it already, so
 * its memory is not read: only a followed skb is reported, with the device and
 * length the tracepoint passes.
 */
static __always_inline int on_xmit(struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len, bool direct)
{
	__u64 key = (__u64)skb;
	if (filter.drops_only)
		return on_xmit_trail(key, rc, dev, len, direct);
	if (!tracked_entry(key))
		return 0;
	struct event ev;
	init_event_at(&ev, key, PROBE_NET_DEV_XMIT, EVENT_INSTANT);
	ev.len = len;
	ev.retval = rc;
	read_dev(&ev, dev, direct);
	send(&ev);
	return 0;
}

/* --stack: a drop's kernel stack, in the stacks map for user space to read with it. */
static __always_inline void keep_stack(void *ctx, struct event *ev)
{
	if (!want_stack)
		return;
	long id = bpf_get_stackid(ctx, &stacks, 0);
	if (id < 0)
		count(COUNTER_STACK_FAIL);
	else
		ev->stack_id = id;
}

/*
 * kfree_skb in drops-only mode (consume_skb only leaves a tombstone). Only a drop is
 * looked at: it takes its skb's earlier events from the trail (trail_collect) and sends
 * them with its own in one record. It is sent when the skb matched the filters at some
 * hook: before, or at the drop. Every free leaves a tombstone, where the next skb at its
 * address begins.
 */
static __always_inline int on_kfree_trail(void *ctx, struct sk_buff *skb, void *location, __u32 reason, bool direct)
{
	__u64 key = (__u64)skb;
	const __u16 probe = PROBE_KFREE_SKB;
	const bool is_kfree = true;
	__u32 len = SKB_READ(direct, skb, len);
	/* Delivery only ever makes a free normal: a free that is normal without it is. */
	__u8 class = free_class(&kcfg, is_kfree, reason, (__u64)location, len, false);
	if (class != FREE_DROP) {
		if (class == FREE_NORMAL)
			count(COUNTER_FREES_NORMAL);
		trail_tombstone(key, probe);
		return 0;
	}
	__u32 zero = 0;
	struct drop_record *d = bpf_map_lookup_elem(&drop_scratch, &zero);
	if (!d)
		return 0;
	struct event *ev = &d->event;
	begin_event(ev, key, probe, EVENT_INSTANT);
	read_tuple(ev, skb, L3_NETWORK_HEADER, direct);
	finish_event(ev, skb, direct);
	ev->location = (__u64)location;
	ev->drop_reason = reason;
	ev->stack_id = -1;
	read_skb_dev(ev, skb, direct);
	read_skb_sock_netns(ev, skb, direct);
	struct trail_found f = trail_collect(d);
	trail_tombstone(key, probe);
	if (f.delivered && free_class(&kcfg, is_kfree, reason, (__u64)location, len, true) != FREE_DROP) {
		count(COUNTER_FREES_NORMAL);
		return 0;
	}
	if (!f.matched && !(matches(ev, skb) && pcap_matches(skb, L3_NETWORK_HEADER, direct)))
		return 0;
	read_followed(ev, skb, direct);
	ev->free_class = FREE_DROP;
	keep_stack(ctx, ev);
	keep_nft_names(ev);
	__u32 n = f.n;
	ev->trail = n;
	count_n(COUNTER_TRAIL_SENT, n);
	if (f.cut)
		count(COUNTER_TRAIL_CUT);
	struct last_drop *last = bpf_map_lookup_elem(&last_drop, &zero);
	if (last) {
		last->skb = key;
		last->ts_ns = ev->ts_ns;
	}
	/* 64 bits, and pinned after the clamp: the verifier must see the size it is given
	 * bounded, not a copy clang compared. */
	__u64 size = sizeof(struct event) + (__u64)n * sizeof(struct trail_record);
	if (size > sizeof(*d))
		size = sizeof(*d);
	barrier_var(size);
	emit_record(d, size, n + 1);
	return 0;
}

/* on_kfree_trail as a function of its own, one per way of reading the skb: its frame
 * would not fit on top of on_free's event. */
static __noinline int kfree_trail_direct(void *ctx, struct sk_buff *skb, void *location, __u32 reason)
{
	return on_kfree_trail(ctx, skb, location, reason, true);
}

static __noinline int kfree_trail_read(void *ctx, struct sk_buff *skb, void *location, __u32 reason)
{
	return on_kfree_trail(ctx, skb, location, reason, false);
}

/* A free; under --stack, the drop of a followed skb also records where in the kernel
 * it happened (only then: the stacks map holds what user space has yet to read). */
static __always_inline int on_free(void *ctx, struct sk_buff *skb, __u16 probe, void *location, __u32 reason,
				   bool direct)
{
	if (filter.drops_only) {
		if (probe == PROBE_CONSUME_SKB) {
			trail_tombstone((__u64)skb, probe);
			return 0;
		}
		return direct ? kfree_trail_direct(ctx, skb, location, reason) : kfree_trail_read(ctx, skb, location, reason);
	}
	struct event ev;
	struct track *t;
	if (probe == PROBE_CONSUME_SKB ? !end_look(&ev, skb, probe, direct, &t)
				       : !first_look(&ev, skb, probe, EVENT_INSTANT, L3_NETWORK_HEADER, direct, &t))
		return 0;
	finish_event(&ev, skb, direct);
	ev.location = (__u64)location;
	ev.drop_reason = reason;
	ev.stack_id = -1;
	read_skb_dev(&ev, skb, direct);
	read_skb_sock_netns(&ev, skb, direct);
	bool delivered;
	if (!follow(&ev, skb, t, FOLLOW_FREE, L3_NETWORK_HEADER, direct, &delivered))
		return 0;
	read_followed(&ev, skb, direct);
	ev.free_class = free_class(&kcfg, probe == PROBE_KFREE_SKB, reason, ev.location, ev.len, delivered);
	if (ev.free_class == FREE_NORMAL)
		count(COUNTER_FREES_NORMAL);
	if (ev.free_class == FREE_DROP)
		keep_stack(ctx, &ev);
	send_free(&ev);
	return 0;
}

/*
 * Drops-only mode: delivery to a socket, kept without a look at the skb. What the trail
 * needs of it is that it happened (a delivered skb's free may be a normal end) and when:
 * the skb's other events say which packet it is, and a drop of an skb no event of which
 * matched the filters is not sent for a copy (trail_walk). A reader copying from one skb
 * again and again leaves one event, not one per read.
 */
static __always_inline int on_copy_trail(__u64 skb, int len)
{
	__u32 zero = 0;
	struct trail *t = bpf_map_lookup_elem(&trail, &zero);
	if (!t)
		return 0;
	__u64 next = t->next;
	const struct event *newest = (const void *)&t->slots[(next - 1) & (TRAIL_SLOTS - 1)];
	if (next && newest->skb == skb && newest->probe == PROBE_SKB_COPY_DATAGRAM_IOVEC)
		return 0;
	struct event *r = (void *)trail_take(t);
	__builtin_memset(r, 0, sizeof(struct trail_record));
	r->skb = skb;
	r->probe = PROBE_SKB_COPY_DATAGRAM_IOVEC;
	r->retval = len;
	stamp_event(r);
	count(COUNTER_TRAIL);
	return 0;
}

/*
 * Delivery to a socket. skb->dev is not read: UDP reuses that field as scratch
 * space once the skb is queued on a socket. The netns comes from the socket.
 */
static __always_inline int on_copy_datagram(struct sk_buff *skb, int len, bool direct)
{
	if (filter.drops_only)
		return on_copy_trail((__u64)skb, len);
	struct event ev;
	struct track *t;
	if (!end_look(&ev, skb, PROBE_SKB_COPY_DATAGRAM_IOVEC, direct, &t))
		return 0;
	finish_event(&ev, skb, direct);
	ev.retval = len;
	read_skb_sock_netns(&ev, skb, direct);
	follow_and_send(&ev, skb, t, FOLLOW_DELIVER, L3_NETWORK_HEADER, direct);
	return 0;
}

/* 6.18 and later pass tcp_retransmit_skb's outcome as a third argument and fire for
 * failed attempts too; older kernels have two arguments and fire only when the copy went
 * out. Set by user space from the tracepoint's prototype: off, the verifier prunes the
 * read of an argument the kernel does not have. */
volatile const __u8 retransmit_has_err = 0;

/*
 * A segment sent again. The skb is the write-queue skb, which never leaves the host (the
 * copy on the wire is a clone, seen by the other hooks before this one), so it is not
 * followed: the event names the segment by the socket's tuple and the control block's
 * seq and flags, for the spanner to put on the packet span of the copy. Drops-only mode
 * holds the copy's events until its free, after this: there is nothing to put it on.
 */
static __always_inline int on_retransmit(unsigned long long *ctx, struct sock *sk, struct sk_buff *skb)
{
	if (filter.drops_only)
		return 0;
	/* volatile: the read must stay behind the test, not be hoisted above it. */
	if (retransmit_has_err && (int)*(volatile unsigned long long *)&ctx[2])
		return 0;
	struct event ev;
	init_event(&ev, skb, PROBE_TCP_RETRANSMIT_SKB, EVENT_INSTANT);
	if (!read_sock_tuple(&ev, sk))
		return 0;
	read_tcp_cb(&ev, skb);
	read_sock_netns(&ev, sk, false);
	if (matches(&ev, skb))
		emit(&ev);
	return 0;
}

/* Never attached: user space loads it alone to learn whether the kernel lets
 * bpf_rdonly_cast make an untyped pointer (kcfg.plain_header_loads). */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(probe_untyped_cast, struct sk_buff *skb)
{
	const __u8 *p = bpf_rdonly_cast(skb->data, 0);
	return p[0];
}

/* body_args may name direct: true in the tp_btf program, whose arguments the verifier
 * knows by type, false in its raw_tp twin. */
#define TRACEPOINT(tp, body_args, ...)                                                            \
	SEC("tp_btf/" #tp) int BPF_PROG(tp_btf_##tp, __VA_ARGS__) { const bool direct __attribute__((unused)) = true; return body_args; } \
	SEC("raw_tp/" #tp) int BPF_PROG(raw_tp_##tp, __VA_ARGS__) { const bool direct __attribute__((unused)) = false; return body_args; }

TRACEPOINT(netif_receive_skb, on_dev(skb, PROBE_NETIF_RECEIVE_SKB, L3_DATA, direct), struct sk_buff *skb)
TRACEPOINT(net_dev_queue, on_dev(skb, PROBE_NET_DEV_QUEUE, L3_NETWORK_HEADER, direct), struct sk_buff *skb)
TRACEPOINT(net_dev_xmit, on_xmit(skb, rc, dev, len, direct), struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
TRACEPOINT(kfree_skb, on_free(ctx, skb, PROBE_KFREE_SKB, location, reason, direct), struct sk_buff *skb, void *location, int reason)
TRACEPOINT(consume_skb, on_free(ctx, skb, PROBE_CONSUME_SKB, 0, 0, direct), struct sk_buff *skb)
TRACEPOINT(skb_copy_datagram_iovec, on_copy_datagram(skb, len, direct), struct sk_buff *skb, int len)
TRACEPOINT(tcp_retransmit_skb, on_retransmit(ctx, sk, skb), struct sock *sk, struct sk_buff *skb)
