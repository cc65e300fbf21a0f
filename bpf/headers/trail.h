/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Drops-only mode's look back: which events of a CPU's trail belong to the life of the
 * skb a drop frees. It needs only pktspan.h and bpf_loop, so that
 * bpf/testdata/trail_harness.c can run it on the host (collector/trail_test.go).
 */
#ifndef __PKTSPAN_TRAIL_H
#define __PKTSPAN_TRAIL_H

#include "pktspan.h"

#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* Whether trail record r, of ev's skb address, can be of ev's skb: NAT rewrites
 * addresses and ports, never the protocol or TCP's seq, ack and flags (same_skb). A
 * record without a protocol (its headers were unreadable) says nothing. */
static __always_inline bool trail_same_packet(const struct event *r, const struct event *ev)
{
	if (!r->l4 || !ev->l3)
		return true;
	if ((r->l3 && r->l3 != ev->l3) || r->l4 != ev->l4)
		return false;
	return r->l4 != IPPROTO_TCP || (r->tcp_seq == ev->tcp_seq && r->tcp_ack == ev->tcp_ack &&
					 !((r->tcp_flags ^ ev->tcp_flags) & TCP_IDENTITY_FLAGS));
}

/* A hook no skb passes twice on one device, as the trail walk last met it. */
struct trail_pass {
	struct dev_id dev;
	__u32 taken; /* records taken up to and with it */
};

/* What trail_walk found besides the records. */
struct trail_found {
	__u32 n;
	bool delivered; /* a reader copied from the skb */
	bool cut;       /* the trail's oldest slot was the skb's: older events may be gone */
	bool matched;   /* an event taken matched the filters (one with a tuple: copies have none) */
};

/* The trail walk: bpf_loop's context. */
struct trail_walker {
	const struct trail *t;
	struct drop_record *d;
	__u64 next;
	struct trail_pass queued;
	struct trail_pass received;
	bool past_delivery;
	struct trail_found f;
};

/* Looks at the i-th newest slot of the trail for the drop's skb; 1 ends the walk. */
static long trail_step(__u32 i, void *data)
{
	struct trail_walker *w = data;
	if (i >= w->next || i >= TRAIL_SLOTS)
		return 1;
	const struct event *r = (const void *)&w->t->slots[(w->next - 1 - i) & (TRAIL_SLOTS - 1)];
	const struct event *ev = &w->d->event;
	if (r->skb != ev->skb)
		return 0;
	if (r->probe == PROBE_KFREE_SKB || r->probe == PROBE_CONSUME_SKB || !trail_same_packet(r, ev))
		return 1;
	if (r->probe == PROBE_SKB_COPY_DATAGRAM_IOVEC) {
		if (w->past_delivery)
			return 1;
		w->f.delivered = true;
	} else {
		w->past_delivery = true;
	}
	__u32 n = w->f.n;
	struct trail_pass *p = r->probe == PROBE_NET_DEV_QUEUE	   ? &w->queued
			       : r->probe == PROBE_NETIF_RECEIVE_SKB ? &w->received
								     : NULL;
	if (p) {
		if (p->taken && p->dev.ifindex == r->ifindex && p->dev.netns == r->netns) {
			w->f.n = p->taken;
			return 1;
		}
		p->dev.ifindex = r->ifindex;
		p->dev.netns = r->netns;
		p->taken = n + 1;
	}
	__builtin_memcpy(&w->d->trail[n & (TRAIL_SLOTS - 1)], r, sizeof(struct trail_record));
	w->f.n = n + 1;
	w->f.matched |= r->l3 != 0;
	w->f.cut = i == TRAIL_SLOTS - 1;
	return 0;
}

/*
 * Copies into d->trail, newest first, the events of d->event's skb that trail t still
 * holds. It walks back from the newest slot and stops where the skb's life began, as
 * follow() would have told it going forward: at the tombstone of a free at the same
 * address, at an event of another packet (same_skb's identity), at a second pass of one
 * device's queue or receive hook (the life began with the newer pass), or at a copy to a
 * reader older than an event that is no copy (nothing but copies and the free come
 * after delivery). bpf_loop, whose callback the verifier checks once: it walked an open
 * loop's every path.
 */
static __always_inline struct trail_found trail_walk(const struct trail *t, struct drop_record *d)
{
	struct trail_walker w = {.t = t, .d = d, .next = t->next};
	bpf_loop(TRAIL_SLOTS, trail_step, &w, 0);
	return w.f;
}

#endif
