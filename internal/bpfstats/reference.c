//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The bench's reference programs: the least a tracer can do at a hook that reads the
 * packet, to set beside the empty program's floor there. Each reads the first eight
 * bytes of the IP header where pktspan's probe finds it, with one plain load (the
 * cheapest read there is), and keeps the value without storing it: a store to memory
 * another CPU writes would cost a cache line's trip and measure that instead.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define KEEP(x) asm volatile("" : : "r"(x))

/* The receive path before network_header is reset: the IP header is at data. */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(read_netif_receive_skb, struct sk_buff *skb)
{
	const __u64 *p = bpf_rdonly_cast(skb->data, 0);
	KEEP(p[0]);
	return 0;
}

/* Elsewhere at head + network_header. */
static __always_inline void read_network_header(struct sk_buff *skb)
{
	const __u64 *p = bpf_rdonly_cast(skb->head + skb->network_header, 0);
	KEEP(p[0]);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(read_net_dev_queue, struct sk_buff *skb)
{
	read_network_header(skb);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(read_kfree_skb, struct sk_buff *skb)
{
	read_network_header(skb);
	return 0;
}
