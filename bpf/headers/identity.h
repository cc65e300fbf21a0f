/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Telling a followed skb from a new skb allocated at its address after a free no
 * tracepoint saw. The spanner makes the same decision in Go (spanner/packet.go,
 * isNewSKB); both are checked against the cases of bpf/testdata/skb_identity.txt, this
 * one compiled for the host by bpf/identity_test.go. It needs only pktspan.h, so that
 * test can build it.
 */
#ifndef __PKTSPAN_IDENTITY_H
#define __PKTSPAN_IDENTITY_H

#include "pktspan.h"

#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* How a hook relates to an skb's life, for follow(). */
enum follow_mode {
	FOLLOW = 0,      /* remember a matching skb */
	FOLLOW_FREE = 1, /* the skb's last hook: forget it */
	FOLLOW_DELIVER = 2, /* delivery to a socket: only copies and the free come after */
};

/* Where t keeps the device its skb last passed ev's hook on: net_dev_queue and
 * netif_receive_skb only, NULL at every other hook. */
static __always_inline struct dev_id *passed_dev(struct track *t, const struct event *ev)
{
	if (ev->probe == PROBE_NET_DEV_QUEUE)
		return &t->queued;
	if (ev->probe == PROBE_NETIF_RECEIVE_SKB)
		return &t->received;
	return NULL;
}

/* Records the device ev passed its hook on, at the hooks same_skb compares devices of. */
static __always_inline void note_dev(struct track *t, const struct event *ev)
{
	struct dev_id *d = passed_dev(t, ev);
	if (d) {
		d->ifindex = ev->ifindex;
		d->netns = ev->netns;
	}
}

/* Whether ev can be the skb t was remembered for, rather than a new skb at its address.
 * NAT rewrites addresses and ports, never the protocol or TCP's seq, ack and flags. An
 * skb is neither queued nor received twice on one device: forwarding, bridges, tunnels,
 * VLANs and veth pairs change device, loopback changes hook (queue, then receive). */
static __always_inline bool same_skb(struct track *t, const struct event *ev, enum follow_mode mode)
{
	if (t->delivered && mode != FOLLOW_FREE && mode != FOLLOW_DELIVER)
		return false;
	const struct dev_id *d = passed_dev(t, ev);
	if (d && d->ifindex && d->ifindex == ev->ifindex && d->netns == ev->netns)
		return false;
	if (!ev->l3 || !t->l3)
		return true;
	if (ev->l3 != t->l3 || ev->l4 != t->l4)
		return false;
	return t->l4 != IPPROTO_TCP ||
	       (ev->tcp_seq == t->tcp_seq && ev->tcp_ack == t->tcp_ack &&
		!((ev->tcp_flags ^ t->tcp_flags) & TCP_IDENTITY_FLAGS));
}

#endif
