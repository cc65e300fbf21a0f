/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every probe family shares: the maps, reading an skb into a struct event,
 * the filter applied at an skb's first sighting, and emitting to the ring buffer.
 * Each probe family's .c includes this once; user space makes the families share
 * one set of maps when it loads them.
 */
#ifndef __PKTSPAN_SKB_H
#define __PKTSPAN_SKB_H

#include "vmlinux_min.h"
#include "pktspan.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "GPL";

/* Written by user space before load; rodata, so the verifier prunes disabled filters. */
volatile const struct filter_cfg filter = {};

/* Never read: it keeps struct event in the object's BTF, where bpf2go finds it. */
volatile const struct event *const event_btf_anchor = 0;

/* Max entries are set by user space from probes.ring_size / probes.track_size. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

/* skbs that matched the filters at their first sighting, so later hooks keep following
 * them after headers change (NAT, encapsulation, netns). LRU: an skb freed by a path
 * with no tracepoint must not leak its entry forever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct track);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 id)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &id);
	if (v)
		*v += 1;
}

/* Where a probe finds the IP header. */
enum l3_hint {
	L3_NETWORK_HEADER = 0, /* skb->head + network_header, falling back to skb->data */
	L3_DATA = 1,           /* skb->data: receive path before network_header is reset */
};

/* Ports, and for TCP seq, ack and flags, from the transport header at l4 (ev->l4 set). */
static __always_inline void read_l4(struct event *ev, const unsigned char *l4)
{
	if (ev->l4 == IPPROTO_TCP) {
		__u8 th[14];
		if (!bpf_probe_read_kernel(th, sizeof(th), l4)) {
			ev->sport = (th[0] << 8) | th[1];
			ev->dport = (th[2] << 8) | th[3];
			ev->tcp_seq = bpf_ntohl(*(__u32 *)&th[4]);
			ev->tcp_ack = bpf_ntohl(*(__u32 *)&th[8]);
			ev->tcp_flags = th[13];
		}
	} else if (ev->l4 == IPPROTO_UDP) {
		__u8 uh[4];
		if (!bpf_probe_read_kernel(uh, sizeof(uh), l4)) {
			ev->sport = (uh[0] << 8) | uh[1];
			ev->dport = (uh[2] << 8) | uh[3];
		}
	}
}

static __always_inline bool read_ipv4(struct event *ev, const unsigned char *l3)
{
	struct iphdr ip;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), l3) || ip.version != 4 || ip.ihl < 5)
		return false;
	ev->l3 = 4;
	ev->l4 = ip.protocol;
	__builtin_memcpy(ev->saddr, &ip.saddr, 4);
	__builtin_memcpy(ev->daddr, &ip.daddr, 4);
	/* Ports exist only in the first fragment. */
	if (ip.frag_off & bpf_htons(0x1fff))
		return true;
	const unsigned char *l4 = l3 + ip.ihl * 4;
	read_l4(ev, l4);
	return true;
}

static __always_inline bool read_ipv6(struct event *ev, const unsigned char *l3)
{
	struct ipv6hdr ip6;
	if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3) || ip6.version != 6)
		return false;
	ev->l3 = 6;
	ev->l4 = ip6.nexthdr;
	__builtin_memcpy(ev->saddr, ip6.saddr, 16);
	__builtin_memcpy(ev->daddr, ip6.daddr, 16);
	/* Extension headers are not walked: the protocol is then the first one's number. */
	const unsigned char *l4 = l3 + sizeof(ip6);
	read_l4(ev, l4);
	return true;
}

/* Reads the L3/L4 tuple; returns false when the skb carries no readable IP header. */
static __always_inline bool read_tuple(struct event *ev, struct sk_buff *skb, enum l3_hint hint)
{
	__be16 proto = BPF_CORE_READ(skb, protocol);
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6))
		return false;
	unsigned char *data = BPF_CORE_READ(skb, data);
	unsigned char *l3 = data;
	if (hint == L3_NETWORK_HEADER) {
		__u16 nh = BPF_CORE_READ(skb, network_header);
		/* 0 is "never set" for a fresh skb; 0xffff is the unset marker. */
		if (nh != 0 && nh != 0xffff)
			l3 = BPF_CORE_READ(skb, head) + nh;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		if (read_ipv4(ev, l3))
			return true;
		return l3 != data && read_ipv4(ev, data);
	}
	if (read_ipv6(ev, l3))
		return true;
	return l3 != data && read_ipv6(ev, data);
}

/* A TCP socket's own tuple, for hooks whose skb has no headers built yet. */
static __always_inline bool read_sock_tuple(struct event *ev, struct sock *sk)
{
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_INET)
		return false;
	__be32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	__be32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	ev->l3 = 4;
	ev->l4 = IPPROTO_TCP;
	__builtin_memcpy(ev->saddr, &saddr, 4);
	__builtin_memcpy(ev->daddr, &daddr, 4);
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return true;
}

static __always_inline void read_dev(struct event *ev, struct net_device *dev)
{
	if (!dev)
		return;
	ev->ifindex = BPF_CORE_READ(dev, ifindex);
	BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
	ev->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

static __always_inline void read_sock_netns(struct event *ev, struct sock *sk)
{
	if (sk && !ev->netns)
		ev->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline bool match_addr(const struct event *ev)
{
	if (!filter.n_addrs)
		return true;
	if (!ev->l3)
		return false;
	for (__u32 i = 0; i < FILTER_MAX_ADDRS; i++) {
		if (i >= filter.n_addrs)
			break;
		const volatile struct filter_cidr *c = &filter.addrs[i];
		if (c->family != ev->l3)
			continue;
		bool src = true, dst = true;
		for (int w = 0; w < 4; w++) {
			__u32 s, d;
			__builtin_memcpy(&s, &ev->saddr[w * 4], 4);
			__builtin_memcpy(&d, &ev->daddr[w * 4], 4);
			if ((s & c->mask[w]) != c->addr[w])
				src = false;
			if ((d & c->mask[w]) != c->addr[w])
				dst = false;
		}
		if (src || dst)
			return true;
	}
	return false;
}

static __always_inline bool match_port(const struct event *ev)
{
	if (!filter.n_ports)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_PORTS; i++) {
		if (i >= filter.n_ports)
			break;
		if (filter.ports[i] == ev->sport || filter.ports[i] == ev->dport)
			return true;
	}
	return false;
}

static __always_inline bool match_proto(const struct event *ev)
{
	if (!filter.n_protos)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_PROTOS; i++) {
		if (i >= filter.n_protos)
			break;
		if (filter.protos[i] == ev->l4)
			return true;
	}
	return false;
}

static __always_inline bool match_iface(const struct event *ev)
{
	if (!filter.n_ifaces)
		return true;
	__u64 a, b;
	__builtin_memcpy(&a, &ev->ifname[0], 8);
	__builtin_memcpy(&b, &ev->ifname[8], 8);
	for (__u32 i = 0; i < FILTER_MAX_IFACES; i++) {
		if (i >= filter.n_ifaces)
			break;
		__u64 fa, fb;
		__builtin_memcpy(&fa, (const void *)&filter.ifaces[i][0], 8);
		__builtin_memcpy(&fb, (const void *)&filter.ifaces[i][8], 8);
		if (a == fa && b == fb)
			return true;
	}
	return false;
}

static __always_inline bool match_netns(const struct event *ev)
{
	if (!filter.n_netns)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_NETNS; i++) {
		if (i >= filter.n_netns)
			break;
		if (filter.netns[i] == ev->netns)
			return true;
	}
	return false;
}

/* How a hook relates to an skb's life, for follow(). */
enum follow_mode {
	FOLLOW = 0,      /* remember a matching skb */
	FOLLOW_FREE = 1, /* the skb's last hook: forget it */
	FOLLOW_DELIVER = 2, /* delivery to a socket: only copies and the free come after */
	FOLLOW_PEEK = 3, /* report a match, remember nothing */
};

/* The TCP flags no hook on the way rewrites (ECE and CWR may be). */
#define TCP_IDENTITY_FLAGS 0x3f

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

/*
 * Decides whether ev (already filled from the skb) is sent. An skb already
 * remembered is always followed; an unknown one is followed from here on when it
 * is an IP packet matching every filter. Frees forget the skb.
 */
static __always_inline bool follow(struct event *ev, enum follow_mode mode)
{
	__u64 key = ev->skb;
	struct track *t = bpf_map_lookup_elem(&tracked, &key);
	if (t && mode != FOLLOW_PEEK) {
		if (same_skb(t, ev, mode)) {
			if (mode == FOLLOW_FREE && !bpf_map_delete_elem(&tracked, &key))
				count(COUNTER_TRACK_DELETE);
			if (mode == FOLLOW_DELIVER)
				t->delivered = 1;
			return true;
		}
		bpf_map_delete_elem(&tracked, &key);
		count(COUNTER_TRACK_STALE);
	} else if (t) {
		return true;
	}
	if (!ev->l3 || !match_addr(ev) || !match_port(ev) || !match_proto(ev) ||
	    !match_iface(ev) || !match_netns(ev))
		return false;
	if (mode == FOLLOW_FREE || mode == FOLLOW_PEEK)
		return true;
	struct track nt = {
		.tcp_seq = ev->tcp_seq,
		.tcp_ack = ev->tcp_ack,
		.l3 = ev->l3,
		.l4 = ev->l4,
		.tcp_flags = ev->tcp_flags,
		.delivered = mode == FOLLOW_DELIVER,
	};
	if (bpf_map_update_elem(&tracked, &key, &nt, BPF_ANY))
		count(COUNTER_TRACK_FAIL);
	else
		count(COUNTER_TRACK_INSERT);
	return true;
}

static __always_inline void emit(const struct event *ev)
{
	if (bpf_ringbuf_output(&events, (void *)ev, sizeof(*ev), 0))
		count(COUNTER_RINGBUF_FULL);
}

/* Fills what every probe knows about an skb; the caller adds the rest. */
static __always_inline void init_event(struct event *ev, struct sk_buff *skb, __u16 probe, __u8 kind)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_ns();
	ev->skb = (__u64)skb;
	ev->probe = probe;
	ev->kind = kind;
	ev->cpu = bpf_get_smp_processor_id();
	ev->len = BPF_CORE_READ(skb, len);
	ev->mark = BPF_CORE_READ(skb, mark);
}

#endif
