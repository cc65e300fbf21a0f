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

/* The class of a free of an skb (its first event of that free when is_kfree is 0:
 * consume_skb), with reason and location from kfree_skb, len the skb's bytes at the free
 * and delivered whether a reader copied from it. */
static __always_inline __u8 free_class(const volatile struct kernel_cfg *cfg, bool is_kfree, __u32 reason,
				       __u64 location, __u32 len, bool delivered)
{
	if (!is_kfree)
		return FREE_CONSUMED;
	bool no_unread = len == 0 || delivered;
	for (__u32 i = 0; i < NORMAL_FREES_MAX; i++) {
		if (i >= cfg->n_normal_frees)
			break;
		const volatile struct normal_free *f = &cfg->normal_frees[i];
		if (f->reason != reason)
			continue;
		if ((f->lo || f->hi) && (location <= f->lo || location > f->hi))
			continue;
		if (f->need == FREE_NEED_NO_UNREAD && !no_unread)
			continue;
		return f->class;
	}
	return FREE_DROP;
}

#endif
