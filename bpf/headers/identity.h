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

/* Whether ev can be the skb t was remembered for, rather than a new skb at its address.
 * NAT rewrites addresses and ports, never the protocol or TCP's seq, ack and flags. */
static __always_inline bool same_skb(const struct track *t, const struct event *ev, enum follow_mode mode)
{
	if (t->delivered && mode != FOLLOW_FREE && mode != FOLLOW_DELIVER)
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
