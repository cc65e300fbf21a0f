/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The record every pktspan probe writes to the ring buffer, and the filter
 * configuration user space writes into .rodata before loading. Both are
 * naturally aligned with explicit padding (never packed) so that bpf2go's Go
 * declarations have the same layout; user space decodes by field offset.
 */
#ifndef __PKTSPAN_H
#define __PKTSPAN_H

/* Where an event came from. Function probes (fentry/kprobe) use PROBE_FUNC_BASE + index. */
enum probe_id {
	PROBE_NETIF_RECEIVE_SKB = 1,
	PROBE_NET_DEV_QUEUE = 2,
	PROBE_NET_DEV_XMIT = 3,
	PROBE_KFREE_SKB = 4,
	PROBE_CONSUME_SKB = 5,
	PROBE_SKB_COPY_DATAGRAM_IOVEC = 6,
	PROBE_TCP_RETRANSMIT_SKB = 7,
	PROBE_FUNC_BASE = 64,
};

enum event_kind {
	EVENT_INSTANT = 0,
	EVENT_ENTER = 1,
	EVENT_EXIT = 2,
};

/* Per-CPU counters, indexes into the `counters` map. */
enum counter_id {
	COUNTER_RINGBUF_FULL = 0, /* events lost: ring buffer reserve failed */
	COUNTER_TRACK_INSERT = 1, /* skbs remembered as matching */
	COUNTER_TRACK_DELETE = 2, /* remembered skbs forgotten at their free */
	COUNTER_TRACK_FAIL = 3,   /* skbs that matched but could not be remembered */
	COUNTER_TRACK_STALE = 4,  /* remembered skbs freed unseen: their address came back */
	COUNTER_CALLS_FULL = 5,   /* function entries whose exit could not be awaited */
	COUNTER_MAX = 6,
};

/* What the kernel remembers of a followed skb: enough to tell it from the next skb
 * allocated at the same address after a free no tracepoint saw (TCP and UDP free
 * delivered skbs that way). */
struct track {
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u8 l3;
	__u8 l4;
	__u8 tcp_flags;
	__u8 delivered;
};

/* An entered function whose exit is awaited. The exit cannot read the skb (a
 * drop inside the function may have freed it), so the entry leaves what the exit
 * reports. fexit still sees the arguments, so its calls are told apart by skb too:
 * the same function runs nested on one thread when softirq work (a reply, a
 * forward) happens inside a send. kretprobe sees no arguments: skb is 0 there. */
struct call_key {
	__u64 pid_tgid;
	__u64 skb;
	__u16 probe;
	__u8 _pad[6];
};

struct call {
	__u64 skb;
	__u8 nf_hook;
	__u8 nf_pf;
	__u8 _pad[6];
};

struct event {
	__u64 ts_ns;    /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 skb;      /* skb address: the packet's identity */
	__u64 location; /* kfree_skb: caller address */
	__s64 retval;   /* exit events: return value; net_dev_xmit: driver rc */
	__u32 netns;    /* network namespace inode */
	__u32 ifindex;
	__u32 len;
	__u32 mark;
	__u32 tcp_seq;
	__u32 tcp_ack;
	__u32 drop_reason; /* enum skb_drop_reason, kfree_skb only */
	__u32 cpu;
	__u16 probe; /* enum probe_id */
	__u16 sport; /* host byte order */
	__u16 dport;
	__u8 kind;   /* enum event_kind */
	__u8 l3;     /* 4, 6, or 0 when no IP header could be read */
	__u8 l4;     /* IP protocol number */
	__u8 tcp_flags;
	__u8 nf_hook;
	__u8 nf_pf;
	__s32 nf_verdict;
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char ifname[16];
};

#define FILTER_MAX_ADDRS 16
#define FILTER_MAX_PORTS 16
#define FILTER_MAX_PROTOS 4
#define FILTER_MAX_IFACES 8
#define FILTER_MAX_NETNS 8

/* An address prefix: match when (address & mask) == addr, word by word, network order. */
struct filter_cidr {
	__u32 addr[4];
	__u32 mask[4];
	__u8 family; /* 4 or 6 */
	__u8 _pad[3];
};

struct filter_cfg {
	__u32 n_addrs;
	__u32 n_ports;
	__u32 n_protos;
	__u32 n_ifaces;
	__u32 n_netns;
	__u32 _pad0;
	struct filter_cidr addrs[FILTER_MAX_ADDRS];
	__u16 ports[FILTER_MAX_PORTS];
	__u8 protos[FILTER_MAX_PROTOS];
	__u32 netns[FILTER_MAX_NETNS];
	char ifaces[FILTER_MAX_IFACES][16];
};

#endif
