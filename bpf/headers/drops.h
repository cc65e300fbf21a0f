/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Whether a kfree_skb free is a drop: a packet the kernel failed to deliver or send.
 * Kernels also free packets with a drop reason on their normal path (an ACK the TCP
 * state machine took, a FIN left on a closed socket's queue); user space lists those
 * kinds in kcfg.normal_frees, from the reason, where it happened and what the skb had
 * done (collector/frees.go says which and why). Compiled into the probes, and for the
 * host by the classification test (bpf/testdata/frees_harness.c).
 */
#ifndef __PKTSPAN_DROPS_H
#define __PKTSPAN_DROPS_H

#include "pktspan.h"

/* One free matched against the normal frees: bpf_loop's context. */
struct free_match {
	const volatile struct kernel_cfg *cfg;
	__u64 location;
	__u32 reason;
	bool no_unread;
	__u8 class; /* the answer: FREE_DROP until an entry matches */
};

/* Matches the free against entry i of the normal frees; 1 ends the loop. */
static long match_normal_free(__u32 i, void *data)
{
	struct free_match *m = data;
	if (i >= NORMAL_FREES_MAX)
		return 1;
	const volatile struct normal_free *f = &m->cfg->normal_frees[i];
	if (f->reason != m->reason)
		return 0;
	if ((f->lo || f->hi) && (m->location <= f->lo || m->location > f->hi))
		return 0;
	if (f->need == FREE_NEED_NO_UNREAD && !m->no_unread)
		return 0;
	m->class = f->class;
	return 1;
}

/* The class of a free of an skb (its first event of that free when is_kfree is 0:
 * consume_skb), with reason and location from kfree_skb, len the skb's bytes at the free
 * and delivered whether a reader copied from it. A reason no normal free has is a drop at
 * once: that is every drop but the rare one sharing a normal free's reason. Else the
 * table is walked with bpf_loop, whose
 * callback the verifier checks once: an open loop is checked entry by entry, and the
 * twenty-odd entries of a kernel's table made the free programs several times slower to
 * load (seconds under qemu on 6.1). */
static __always_inline __u8 free_class(const volatile struct kernel_cfg *cfg, bool is_kfree, __u32 reason,
				       __u64 location, __u32 len, bool delivered)
{
	if (!is_kfree)
		return FREE_CONSUMED;
	/* The word by a test, not an index: the verifier would not see an index bounded. */
	__u64 word = reason < 64 ? cfg->normal_reasons[0] : cfg->normal_reasons[1];
	if (!cfg->normal_reasons_high && reason < NORMAL_REASON_BITS && !(word & (1ULL << (reason % 64))))
		return FREE_DROP;
	struct free_match m = {
		.cfg = cfg,
		.location = location,
		.reason = reason,
		.no_unread = len == 0 || delivered,
		.class = FREE_DROP,
	};
	bpf_loop(cfg->n_normal_frees, match_normal_free, &m, 0);
	return m.class;
}

#endif
