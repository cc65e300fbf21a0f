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
#include "identity.h"
#include "trail.h"
#include "drops.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define AF_INET 2
#define AF_INET6 10
#define NFCT_PTRMASK (~7UL) /* skb->_nfct's low bits are the ctinfo */

char LICENSE[] SEC("license") = "GPL";

/* Written by user space before load; rodata, so the verifier prunes disabled filters. */
volatile const struct filter_cfg filter = {};

/* Written by user space before load, from the kernel's BTF. */
volatile const struct kernel_cfg kcfg = {};

/* Bytes waiting in the ring past which an event wakes the reader (a quarter of the ring;
 * written by user space before load). Below it events wake nobody: the reader polls
 * (collector/ring.go), so an event waits at most one poll interval, and a burst wakes
 * it long before the ring could fill. A wakeup per event (the default) costs the
 * sending CPU more than everything else pktspan does for the event. */
volatile const __u64 ring_wake_bytes = 0;

/* Never read: it keeps the types shared with user space in the object's BTF. */
volatile const struct btf_anchor *const btf_anchor = 0;

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

/* Drops-only mode: each CPU's trail of recent events (struct trail). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trail);
} trail SEC(".maps");

/* Drops-only mode: each CPU's last drop (struct last_drop). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_drop);
} last_drop SEC(".maps");

/* Drops-only mode: a drop's ring record is built here: it is far bigger than the
 * 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct drop_record);
} drop_scratch SEC(".maps");

_Static_assert(__builtin_offsetof(struct event, ct_saddr) == TRAIL_RECORD,
	       "a trail record is the event up to ct_saddr");

/* The nft table and base chain each followed skb is in while nft_do_chain runs (function
 * backends, bpf/functions.c), until it lets the skb on or the skb's free moves them to
 * nft_freed. LRU: an entry nobody reads (a stolen skb's) must not stay. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NFT_DROPS_MAX);
	__type(key, __u64);
	__type(value, struct nft_names);
} nft_drops SEC(".maps");

/* A dropped skb's nft names, keyed by its free event, until user space reads them with
 * that event. Keyed by the skb alone they would be lost to the next skb at the same
 * address passing nft_do_chain before user space got to them. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NFT_DROPS_MAX);
	__type(key, struct nft_freed_key);
	__type(value, struct nft_names);
} nft_freed SEC(".maps");

/* --filter-container: the network namespaces the followed containers live in now, by
 * inode. User space rewrites it as they start, stop and restart (a restarted container
 * has a new namespace); the value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_CONTAINER_NETNS);
	__type(key, __u32);
	__type(value, __u8);
} followed_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/*
 * How many entries tracked and the function family's calls hold, kept with an atomic add
 * beside each insert and delete. While it is zero no lookup in either can succeed, so
 * an skb the filters turn away costs no map lookup at all. Entries the LRU evicts are
 * never subtracted: the count may stay above the truth, which only costs the lookups.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} followed_live SEC(".maps");

static __always_inline void live_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *live = bpf_map_lookup_elem(&followed_live, &zero);
	if (live)
		__sync_fetch_and_add(live, n);
}

/* Whether nothing is followed: no skb tracked, no function call open. */
static __always_inline bool none_followed(void)
{
	__u32 zero = 0;
	__s64 *live = bpf_map_lookup_elem(&followed_live, &zero);
	return live && *live <= 0;
}

/* The tracked entry of an skb, without a lookup while nothing is followed. */
static __always_inline struct track *tracked_entry(__u64 skb)
{
	if (none_followed())
		return NULL;
	return bpf_map_lookup_elem(&tracked, &skb);
}

/* Deletes a tracked entry, reporting whether there was one. */
static __always_inline bool untrack(__u64 skb)
{
	if (bpf_map_delete_elem(&tracked, &skb))
		return false;
	live_add(-1);
	return true;
}

static __always_inline void count_n(__u32 id, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &id);
	if (v)
		*v += n;
}

static __always_inline void count(__u32 id)
{
	count_n(id, 1);
}

/*
 * A field of the skb: a plain load where the program's context is typed by BTF (tp_btf,
 * fentry: the verifier checks the access), bpf_probe_read_kernel, a helper call, where
 * it is not (raw_tp, kprobe). direct is a constant at every call, so each program keeps
 * one of the two.
 */
#define SKB_READ(direct, skb, field) ((direct) ? (skb)->field : BPF_CORE_READ(skb, field))

/* Where a probe finds the IP header. */
enum l3_hint {
	L3_NETWORK_HEADER = 0, /* skb->head + network_header, falling back to skb->data */
	L3_DATA = 1,           /* skb->data: receive path before network_header is reset */
};

/* ICMP and ICMPv6 types whose message quotes the packet it answers (RFC 792, 4443). */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_ERROR_MAX 127 /* types 0-127 are errors */

/* The ports of a quoted TCP or UDP header: its first four bytes. */
static __always_inline void read_quoted_ports(struct event *ev, const unsigned char *l4)
{
	__u8 ph[4];
	if ((ev->quoted_l4 == IPPROTO_TCP || ev->quoted_l4 == IPPROTO_UDP) &&
	    !bpf_probe_read_kernel(ph, sizeof(ph), l4)) {
		ev->quoted_sport = (ph[0] << 8) | ph[1];
		ev->quoted_dport = (ph[2] << 8) | ph[3];
	}
}

/* The IP header and ports an ICMP error quotes, at q (RFC 792: the header and 8 bytes).
 * Not inlined, and read into the event rather than into a header on the stack: the
 * probes' stack is nearly full. */
static __noinline void read_quoted4(struct event *ev, const unsigned char *q)
{
	__u8 vh[10]; /* version and header length .. protocol */
	if (bpf_probe_read_kernel(vh, sizeof(vh), q) || (vh[0] >> 4) != 4 || (vh[0] & 0xf) < 5)
		return;
	if (bpf_probe_read_kernel(ev->quoted_saddr, 4, q + 12) || bpf_probe_read_kernel(ev->quoted_daddr, 4, q + 16))
		return;
	ev->quoted_l3 = 4;
	ev->quoted_l4 = vh[9];
	/* Ports exist only in the first fragment. */
	if (!(((vh[6] & 0x1f) << 8) | vh[7]))
		read_quoted_ports(ev, q + (vh[0] & 0xf) * 4);
}

static __noinline void read_quoted6(struct event *ev, const unsigned char *q)
{
	__u8 vh[8]; /* version .. hop limit */
	if (bpf_probe_read_kernel(vh, sizeof(vh), q) || (vh[0] >> 4) != 6)
		return;
	if (bpf_probe_read_kernel(ev->quoted_saddr, 16, q + 8) || bpf_probe_read_kernel(ev->quoted_daddr, 16, q + 24))
		return;
	ev->quoted_l3 = 6;
	ev->quoted_l4 = vh[6];
	read_quoted_ports(ev, q + 40);
}

/* The TCP header's first 16 bytes, copied to the stack: ports, seq, ack, flags, window. */
static __always_inline void read_tcp_header(struct event *ev, const __u8 th[16])
{
	ev->sport = (th[0] << 8) | th[1];
	ev->dport = (th[2] << 8) | th[3];
	ev->tcp_seq = bpf_ntohl(*(__u32 *)&th[4]);
	ev->tcp_ack = bpf_ntohl(*(__u32 *)&th[8]);
	ev->tcp_flags = th[13];
	ev->tcp_window = (th[14] << 8) | th[15];
}

/* Casts to a read-only pointer; with btf_id 0 an untyped one, whose loads may fault
 * (they then read zeros) but cost no helper call. Weak: kernels before it load the
 * programs too, the call being unreachable there (kcfg.plain_header_loads is 0). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/*
 * Copies the first words of the headers at src to dst, reporting whether it could:
 * with plain loads where the program is typed by BTF and the kernel allows it, else
 * with one helper call. words is a constant at every call.
 */
static __always_inline bool read_headers(__u64 *dst, const void *src, int words, bool direct)
{
	if (direct && kcfg.plain_header_loads) {
		const __u64 *p = bpf_rdonly_cast(src, 0);
		for (int i = 0; i < words; i++)
			dst[i] = p[i];
		return true;
	}
	return !bpf_probe_read_kernel(dst, words * sizeof(__u64), src);
}

/* The transport header bytes the probes parse: TCP's first 16 (through the window). */
#define L4_READ 16

/* Ports; for TCP seq, ack, flags and the payload length (l3_data: the IP length less
 * the IP header); for ICMP type, code and an error's quoted header; from h, the first
 * L4_READ bytes of the transport header at l4 (ev->l4 set). */
static __always_inline void parse_l4(struct event *ev, const unsigned char *l4, const __u8 *h, int l3_data)
{
	if (ev->l4 == IPPROTO_TCP) {
		read_tcp_header(ev, h);
		int data = l3_data - (h[12] >> 4) * 4;
		ev->tcp_data_len = data > 0 ? data : 0;
	} else if (ev->l4 == IPPROTO_UDP) {
		ev->sport = (h[0] << 8) | h[1];
		ev->dport = (h[2] << 8) | h[3];
	} else if (ev->l4 == IPPROTO_ICMP || ev->l4 == IPPROTO_ICMPV6) {
		const __u8 *ih = h;
		ev->icmp_type = ih[0];
		ev->icmp_code = ih[1];
		/* The quoted header follows the 8-byte ICMP header. */
		if (ev->l4 == IPPROTO_ICMP && ev->l3 == 4 &&
		    (ih[0] == ICMP_DEST_UNREACH || ih[0] == ICMP_TIME_EXCEEDED || ih[0] == ICMP_PARAMETERPROB))
			read_quoted4(ev, l4 + 8);
		else if (ev->l4 == IPPROTO_ICMPV6 && ev->l3 == 6 && ih[0] <= ICMPV6_ERROR_MAX)
			read_quoted6(ev, l4 + 8);
	}
}

/* The same, reading the transport header at l4 first. */
static __always_inline void read_l4(struct event *ev, const unsigned char *l4, int l3_data)
{
	__u8 h[L4_READ];
	if (!bpf_probe_read_kernel(h, sizeof(h), l4))
		parse_l4(ev, l4, h, l3_data);
}

/*
 * The IP header and, behind it, the transport header's first bytes are read at once:
 * each read is a helper call, and on the path of an skb the filters turn away the reads
 * are most of the cost. An IPv4 header with options needs a second read; so does a
 * packet whose headers end too close to unreadable memory for the one read.
 */
static __always_inline bool read_ipv4(struct event *ev, const unsigned char *l3, bool direct)
{
	union {
		struct iphdr ip;
		__u8 b[sizeof(struct iphdr) + L4_READ];
		__u64 w[(sizeof(struct iphdr) + L4_READ + 7) / 8];
	} h;
	bool both = read_headers(h.w, l3, sizeof(h.w) / 8, direct);
	if (!both && bpf_probe_read_kernel(&h.ip, sizeof(h.ip), l3))
		return false;
	if (h.ip.version != 4 || h.ip.ihl < 5)
		return false;
	ev->l3 = 4;
	ev->l4 = h.ip.protocol;
	__builtin_memcpy(ev->saddr, &h.ip.saddr, 4);
	__builtin_memcpy(ev->daddr, &h.ip.daddr, 4);
	/* Ports exist only in the first fragment. */
	if (h.ip.frag_off & bpf_htons(0x1fff))
		return true;
	const unsigned char *l4 = l3 + h.ip.ihl * 4;
	int l3_data = bpf_ntohs(h.ip.tot_len) - h.ip.ihl * 4;
	if (both && h.ip.ihl == 5)
		parse_l4(ev, l4, &h.b[sizeof(struct iphdr)], l3_data);
	else
		read_l4(ev, l4, l3_data);
	return true;
}

static __always_inline bool read_ipv6(struct event *ev, const unsigned char *l3, bool direct)
{
	union {
		struct ipv6hdr ip6;
		__u8 b[sizeof(struct ipv6hdr) + L4_READ];
		__u64 w[(sizeof(struct ipv6hdr) + L4_READ) / 8];
	} h;
	bool both = read_headers(h.w, l3, sizeof(h.w) / 8, direct);
	if (!both && bpf_probe_read_kernel(&h.ip6, sizeof(h.ip6), l3))
		return false;
	if (h.ip6.version != 6)
		return false;
	ev->l3 = 6;
	ev->l4 = h.ip6.nexthdr;
	__builtin_memcpy(ev->saddr, h.ip6.saddr, 16);
	__builtin_memcpy(ev->daddr, h.ip6.daddr, 16);
	/* Extension headers are not walked: the protocol is then the first one's number. */
	const unsigned char *l4 = l3 + sizeof(h.ip6);
	int l3_data = bpf_ntohs(h.ip6.payload_len);
	if (both)
		parse_l4(ev, l4, &h.b[sizeof(struct ipv6hdr)], l3_data);
	else
		read_l4(ev, l4, l3_data);
	return true;
}

/* Where the IP header should be, per hint; data is skb->data. */
static __always_inline unsigned char *l3_header(struct sk_buff *skb, unsigned char *data, enum l3_hint hint,
						bool direct)
{
	if (hint == L3_NETWORK_HEADER) {
		__u16 nh = SKB_READ(direct, skb, network_header);
		/* 0 is "never set" for a fresh skb; 0xffff is the unset marker. */
		if (nh != 0 && nh != 0xffff)
			return SKB_READ(direct, skb, head) + nh;
	}
	return data;
}

/* Reads the L3/L4 tuple; returns false when the skb carries no readable IP header. */
static __always_inline bool read_tuple(struct event *ev, struct sk_buff *skb, enum l3_hint hint, bool direct)
{
	__be16 proto = SKB_READ(direct, skb, protocol);
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6))
		return false;
	unsigned char *data = SKB_READ(direct, skb, data);
	unsigned char *l3 = l3_header(skb, data, hint, direct);
	if (proto == bpf_htons(ETH_P_IP)) {
		if (read_ipv4(ev, l3, direct))
			return true;
		return l3 != data && read_ipv4(ev, data, direct);
	}
	if (read_ipv6(ev, l3, direct))
		return true;
	return l3 != data && read_ipv6(ev, data, direct);
}

/* A TCP socket's own tuple, for hooks whose skb has no headers built. An IPv6 socket
 * talking to an IPv4-mapped address sends IPv4 packets: it is named as they are. */
static __always_inline bool read_sock_tuple(struct event *ev, struct sock *sk)
{
	if (!sk)
		return false;
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	bool v4 = family == AF_INET;
	if (family == AF_INET6) {
		__u32 d[4];
		BPF_CORE_READ_INTO(&d, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		v4 = !d[0] && !d[1] && d[2] == bpf_htonl(0xffff);
	} else if (!v4) {
		return false;
	}
	if (v4) {
		__be32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(ev->saddr, &saddr, 4);
		__builtin_memcpy(ev->daddr, &daddr, 4);
		ev->l3 = 4;
	} else {
		BPF_CORE_READ_INTO(&ev->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&ev->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		ev->l3 = 6;
	}
	ev->l4 = IPPROTO_TCP;
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return true;
}

/* TCP flag bits that occupy sequence space. */
#define TCPHDR_FIN 0x01
#define TCPHDR_SYN 0x02

/* A write-queue skb's segment, from its control block: the sequence number, the flags
 * the header gets (its flags byte) and the payload, the span less SYN and FIN. */
static __always_inline void read_tcp_cb(struct event *ev, struct sk_buff *skb)
{
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)skb->cb;
	__u32 seq = BPF_CORE_READ(cb, seq);
	__u32 span = BPF_CORE_READ(cb, end_seq) - seq;
	__u8 flags = BPF_CORE_READ_BITFIELD_PROBED(cb, tcp_flags) & 0xff;
	span -= !!(flags & TCPHDR_SYN) + !!(flags & TCPHDR_FIN);
	ev->tcp_seq = seq;
	ev->tcp_flags = flags;
	ev->tcp_data_len = span;
}

/* ct_l3 by address family: 4 at AF_INET (2), 6 at AF_INET6 (10), a nibble each. */
#define CT_L3_BY_FAMILY ((6ULL << (AF_INET6 * 4)) | (4ULL << (AF_INET * 4)))

/*
 * The ORIGINAL direction's tuple of the skb's conntrack entry. struct nf_conn lives in
 * the nf_conntrack module's BTF on some kernels, beyond CO-RE's reach, so user space
 * passes its offsets; kcfg.ct_tuple is 0 when they are unknown. Written without
 * branches: an skb without conntrack reads from address 0, which fails and leaves
 * zeros, so every path leaves the same state and the verifier checks the rest of the
 * program once, not once per outcome.
 */
static __always_inline void read_ct(struct event *ev, struct sk_buff *skb, bool direct)
{
	if (!kcfg.ct_tuple || !bpf_core_field_exists(skb->_nfct))
		return;
	unsigned long ct = SKB_READ(direct, skb, _nfct) & NFCT_PTRMASK;
	/* One read of the whole tuple (plain loads where read_headers can); user space
	 * checked that every field lies within it at its natural alignment (the verifier
	 * requires aligned stack access). */
	__u64 t[CT_TUPLE_READ / 8];
	read_headers(t, (void *)(ct + kcfg.ct_tuple), CT_TUPLE_READ / 8, direct);
	void *b = t;
	/* Any other family (a template's zeroed tuple, a failed read) gives 0: no tuple. */
	__u16 family = *(__u16 *)(b + kcfg.ct_l3num);
	ev->ct_l3 = (CT_L3_BY_FAMILY >> ((family & 0xf) * 4)) & 0xf;
	for (int w = 0; w < 4; w++) {
		((__u32 *)ev->ct_saddr)[w] = *(__u32 *)(b + kcfg.ct_src_addr + w * 4);
		((__u32 *)ev->ct_daddr)[w] = *(__u32 *)(b + kcfg.ct_dst_addr + w * 4);
	}
	ev->ct_sport = bpf_ntohs(*(__u16 *)(b + kcfg.ct_src_port));
	ev->ct_dport = bpf_ntohs(*(__u16 *)(b + kcfg.ct_dst_port));
	ev->ct_l4 = *(__u8 *)(b + kcfg.ct_protonum);
}

/* How many wire packets a GSO skb stands for: skb_shinfo(skb)->gso_segs. */
static __always_inline void read_gso(struct event *ev, struct sk_buff *skb, bool direct)
{
	unsigned char *head = SKB_READ(direct, skb, head);
	unsigned int end = SKB_READ(direct, skb, end);
	struct skb_shared_info *shinfo = (void *)(head + end);
	if (direct && kcfg.plain_header_loads) {
		/* Typed by the cast, so the load is a plain one, as read_headers' are. */
		const struct skb_shared_info *s = bpf_rdonly_cast(shinfo, bpf_core_type_id_kernel(struct skb_shared_info));
		ev->gso_segs = s->gso_segs;
		return;
	}
	ev->gso_segs = BPF_CORE_READ(shinfo, gso_segs);
}

/* What only a followed skb's event needs: read after follow() said yes, so that the
 * skbs the filters turn away cost as little as they can. */
static __always_inline void read_followed(struct event *ev, struct sk_buff *skb, bool direct)
{
	read_ct(ev, skb, direct);
	read_gso(ev, skb, direct);
}

/* Zeroes the bytes of a 16-byte name (two little-endian words) from its first NUL on,
 * as a string read leaves them: a renamed device keeps its old name's bytes behind the
 * NUL, and the interface filter compares all 16. The lowest byte the zero-byte test
 * flags is always the first NUL. */
static __always_inline void name_to_nul(__u64 *w)
{
	const __u64 ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	__u64 z = (w[0] - ones) & ~w[0] & highs;
	if (z) {
		w[0] &= ((z & -z) >> 7) - 1;
		w[1] = 0;
		return;
	}
	z = (w[1] - ones) & ~w[1] & highs;
	if (z)
		w[1] &= ((z & -z) >> 7) - 1;
}

/* The device's index, name and namespace; dev is typed by BTF where direct. The name is
 * read up to its NUL, as the interface filter compares it whole: with plain loads where
 * direct (a string read is a helper call copying byte by byte). */
static __always_inline void read_dev(struct event *ev, struct net_device *dev, bool direct)
{
	if (!dev)
		return;
	if (direct) {
		ev->ifindex = dev->ifindex;
		ev->netns = dev->nd_net.net->ns.inum;
		__u64 w[2] = {*(const __u64 *)&dev->name[0], *(const __u64 *)&dev->name[8]};
		name_to_nul(w);
		__builtin_memcpy(ev->ifname, w, sizeof(w));
		return;
	}
	ev->ifindex = BPF_CORE_READ(dev, ifindex);
	ev->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	BPF_CORE_READ_STR_INTO(&ev->ifname, dev, name);
}

/* The skb's device, as read_dev reads it. */
static __always_inline void read_skb_dev(struct event *ev, struct sk_buff *skb, bool direct)
{
	read_dev(ev, SKB_READ(direct, skb, dev), direct);
}

static __always_inline void read_sock_netns(struct event *ev, struct sock *sk, bool direct)
{
	if (!sk || ev->netns)
		return;
	ev->netns = direct ? sk->__sk_common.skc_net.net->ns.inum : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The namespace of the skb's socket, where the device left none. */
static __always_inline void read_skb_sock_netns(struct event *ev, struct sk_buff *skb, bool direct)
{
	read_sock_netns(ev, SKB_READ(direct, skb, sk), direct);
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
		/* Differences OR-ed together, not a branch per word: each branch would give
		 * the verifier two more states to walk through the rest of the program. */
		__u32 src = 0, dst = 0;
		for (int w = 0; w < 4; w++) {
			__u32 s, d;
			__builtin_memcpy(&s, &ev->saddr[w * 4], 4);
			__builtin_memcpy(&d, &ev->daddr[w * 4], 4);
			src |= (s & c->mask[w]) ^ c->addr[w];
			dst |= (d & c->mask[w]) ^ c->addr[w];
		}
		if (!src || !dst)
			return true;
	}
	return false;
}

/* The filters on ports and protocols also match an ICMP error by the header it quotes, so
 * that a port unreachable is followed with the flow it answers. Addresses are not: the
 * probes' stack has no room for a second address comparison, and the host answering
 * with an error usually is the quoted destination. */
static __always_inline bool match_port(const struct event *ev)
{
	if (!filter.n_ports)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_PORTS; i++) {
		if (i >= filter.n_ports)
			break;
		__u16 p = filter.ports[i];
		if (p == ev->sport || p == ev->dport || (ev->quoted_l3 && (p == ev->quoted_sport || p == ev->quoted_dport)))
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
		if (filter.protos[i] == ev->l4 || (ev->quoted_l3 && filter.protos[i] == ev->quoted_l4))
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

/* The namespaces given by inode (filter.netns) and those of the followed containers
 * (followed_netns, when filter.containers) are one list: either matches. The map is read
 * with one plain lookup, keyed by the event's own field. */
static __always_inline bool match_netns(const struct event *ev)
{
	if (!filter.n_netns && !filter.containers)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_NETNS; i++) {
		if (i >= filter.n_netns)
			break;
		if (filter.netns[i] == ev->netns)
			return true;
	}
	return filter.containers && bpf_map_lookup_elem(&followed_netns, (void *)&ev->netns);
}

/* The VLAN ID of the skb's accelerated 802.1Q tag, or -1 when it carries none. Until
 * 6.1 a bit says whether there is a tag; later kernels clear vlan_all instead. */
static __always_inline int vlan_id(struct sk_buff *skb)
{
	bool tagged;
	if (bpf_core_field_exists(skb->vlan_present))
		tagged = BPF_CORE_READ_BITFIELD_PROBED(skb, vlan_present);
	else
		tagged = BPF_CORE_READ(skb, vlan_proto) != 0;
	if (!tagged)
		return -1;
	return BPF_CORE_READ(skb, vlan_tci) & VLAN_VID_MASK;
}

static __always_inline bool match_vlan(struct sk_buff *skb)
{
	if (!filter.n_vlans)
		return true;
	int id = vlan_id(skb);
	if (id < 0)
		return false;
	for (__u32 i = 0; i < FILTER_MAX_VLANS; i++) {
		if (i >= filter.n_vlans)
			break;
		if (filter.vlans[i] == id)
			return true;
	}
	return false;
}

static __always_inline bool match_mark(const struct event *ev)
{
	if (!filter.n_marks)
		return true;
	for (__u32 i = 0; i < FILTER_MAX_MARKS; i++) {
		if (i >= filter.n_marks)
			break;
		if ((ev->mark & filter.marks[i].mask) == filter.marks[i].value)
			return true;
	}
	return false;
}

/* filter.expression's view of an skb: its first PCAP_SNAP bytes, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pcap_packet);
} pcap_scratch SEC(".maps");

/*
 * Placeholders for filter.expression, compiled by libpcap for Ethernet (l2) and for raw
 * IP (l3): user space puts the eBPF translation of each program in place of its body
 * before load (collector/pcapfilter). The program reads pkt->data[0, caplen) and
 * pkt->mem; wirelen is its packet length (cBPF's len); non-zero is a match. The bodies
 * use every argument so that clang keeps them all, and depend on them so that it folds
 * no result into the caller.
 */
static __noinline __u32 pcap_l2(struct pcap_packet *pkt, __u32 caplen, __u32 wirelen)
{
	return pkt->mem[0] ^ caplen ^ wirelen;
}

static __noinline __u32 pcap_l3(struct pcap_packet *pkt, __u32 caplen, __u32 wirelen)
{
	return pkt->mem[1] ^ caplen ^ wirelen;
}

#define ETH_HLEN 14
#define VLAN_HLEN 4
#define ETH_ALEN2 12 /* the two MAC addresses: where an 802.1Q tag goes */

/* Whether the link-layer header before l3 (at head + mac) is Ethernet's, with up to two
 * 802.1Q tags still in place: only its length tells at every hook. */
static __always_inline bool is_ethernet(long hlen)
{
	return hlen == ETH_HLEN || hlen == ETH_HLEN + VLAN_HLEN || hlen == ETH_HLEN + 2 * VLAN_HLEN;
}

/*
 * Whether the skb passes filter.expression (true when there is none: the verifier then
 * prunes the rest). The program sees the skb's linear data from its Ethernet header
 * when it has one in front of the IP header, else from the IP header; an 802.1Q tag
 * the skb carries aside (skb->vlan_tci) is put back after the MAC addresses, as libpcap
 * shows it to tcpdump. Bytes past PCAP_SNAP or past the linear data are not there: a
 * load from them fails the match, as in tcpdump's own filters.
 */
static __always_inline bool pcap_matches(struct sk_buff *skb, enum l3_hint hint, bool direct)
{
	if (!filter.pcap)
		return true;
	__u32 zero = 0;
	struct pcap_packet *pkt = bpf_map_lookup_elem(&pcap_scratch, &zero);
	if (!pkt)
		return false;
	unsigned char *head = SKB_READ(direct, skb, head);
	unsigned char *data = SKB_READ(direct, skb, data);
	unsigned char *start = l3_header(skb, data, hint, direct);
	unsigned char *end = head + SKB_READ(direct, skb, tail);
	__u16 mac = SKB_READ(direct, skb, mac_header);
	bool l2 = mac != 0xffff && is_ethernet(start - (head + mac));
	if (l2)
		start = head + mac;
	/* skb->len counts from data, which may lie before or after start. */
	__u32 wirelen = SKB_READ(direct, skb, len) + (data - start);
	if (end <= start)
		return false;
	/* 64 bits throughout, and pinned after the clamp: the verifier must see the size
	 * it is given bounded, not a copy clang compared. */
	__u64 n = end - start;
	if (n > PCAP_SNAP)
		n = PCAP_SNAP;
	barrier_var(n);
	__u32 caplen;
	if (l2 && vlan_id(skb) >= 0 && n > ETH_ALEN2) {
		if (bpf_probe_read_kernel(pkt->data, ETH_ALEN2, start))
			return false;
		__be16 tag[2] = {SKB_READ(direct, skb, vlan_proto), bpf_htons(SKB_READ(direct, skb, vlan_tci))};
		__builtin_memcpy(&pkt->data[ETH_ALEN2], tag, sizeof(tag));
		__u64 rest = n - ETH_ALEN2;
		if (rest > PCAP_SNAP - ETH_ALEN2 - VLAN_HLEN)
			rest = PCAP_SNAP - ETH_ALEN2 - VLAN_HLEN;
		barrier_var(rest);
		if (bpf_probe_read_kernel(&pkt->data[ETH_ALEN2 + VLAN_HLEN], rest, start + ETH_ALEN2))
			return false;
		caplen = rest + ETH_ALEN2 + VLAN_HLEN;
		wirelen += VLAN_HLEN;
	} else {
		if (bpf_probe_read_kernel(pkt->data, n, start))
			return false;
		caplen = n;
	}
	return (l2 ? pcap_l2(pkt, caplen, wirelen) : pcap_l3(pkt, caplen, wirelen)) != 0;
}

/* Whether ev's tuple passes the filters that look at nothing else. */
static __always_inline bool tuple_matches(const struct event *ev)
{
	return ev->l3 && match_addr(ev) && match_port(ev) && match_proto(ev);
}

/* Whether ev passes the filters that need the device, the namespace or the skb. */
static __always_inline bool rest_matches(const struct event *ev, struct sk_buff *skb)
{
	return match_iface(ev) && match_netns(ev) && match_mark(ev) && match_vlan(skb);
}

/* Whether ev, an IP packet, passes every filter. */
static __always_inline bool matches(const struct event *ev, struct sk_buff *skb)
{
	return tuple_matches(ev) && rest_matches(ev, skb);
}

/* Remembers an skb as followed, counting the outcome. */
static __always_inline void remember(__u64 key, const struct track *t)
{
	if (bpf_map_update_elem(&tracked, &key, t, BPF_ANY)) {
		count(COUNTER_TRACK_FAIL);
		return;
	}
	count(COUNTER_TRACK_INSERT);
	live_add(1);
}

/*
 * Decides whether ev (already filled from skb) is sent; t is the skb's tracked entry
 * (first_look), or NULL. An skb already remembered is always followed; an unknown one
 * is followed from here on when it is an IP packet matching every filter. Frees forget
 * the skb. *delivered says whether a reader copied from the skb, which a free's class
 * depends on. Drops-only mode remembers nothing: the trail keeps the events of every
 * skb matching the filters at that hook, and a drop finds its own there (on_kfree_trail).
 */
static __always_inline bool follow(struct event *ev, struct sk_buff *skb, struct track *t, enum follow_mode mode,
				   enum l3_hint hint, bool direct, bool *delivered)
{
	*delivered = false;
	/* Nothing is tracked: first_look found t NULL and checked the tuple already. */
	if (filter.drops_only)
		return rest_matches(ev, skb);
	__u64 key = ev->skb;
	if (t) {
		if (same_skb(t, ev, mode)) {
			*delivered = t->delivered;
			if (mode == FOLLOW_FREE && untrack(key))
				count(COUNTER_TRACK_DELETE);
			/* Stored once: a reader copies from one skb again and again, and the
			 * entry's line is another CPU's. */
			if (mode == FOLLOW_DELIVER && !t->delivered)
				t->delivered = 1;
			note_dev(t, ev);
			return true;
		}
		count(COUNTER_TRACK_STALE);
	}
	/* first_look evaluated the expression for an skb it found untracked, not for one
	 * whose entry was another skb's. */
	bool follows = matches(ev, skb) && (!t || pcap_matches(skb, hint, direct));
	if (!follows || mode == FOLLOW_FREE) {
		if (t)
			untrack(key);
		return follows;
	}
	struct track nt = {
		.tcp_seq = ev->tcp_seq,
		.tcp_ack = ev->tcp_ack,
		.l3 = ev->l3,
		.l4 = ev->l4,
		.tcp_flags = ev->tcp_flags,
		.delivered = mode == FOLLOW_DELIVER,
	};
	note_dev(&nt, ev);
	/* The entry of the skb this address held before is this one's now: written in
	 * place, it costs a store where a delete and an insert cost the LRU's locks twice. */
	if (t) {
		*t = nt;
		count(COUNTER_TRACK_INSERT);
	} else {
		remember(key, &nt);
	}
	return true;
}

/* Writes size bytes at data as one ring record, of n events. */
static __always_inline void emit_record(const void *data, __u64 size, __u32 n)
{
	/* Only the record that takes the ring past the mark wakes the reader: above it the
	 * reader is awake already (it sleeps only on an empty ring) or polls within its
	 * interval, and waking it for every record while it catches up cost each record a
	 * wakeup, the very cost the mark avoids. */
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bool wake = !ring_wake_bytes || (avail < ring_wake_bytes && avail + size >= ring_wake_bytes);
	if (bpf_ringbuf_output(&events, (void *)data, size, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP))
		count_n(COUNTER_RINGBUF_FULL, n);
}

static __always_inline void emit(const struct event *ev)
{
	emit_record(ev, sizeof(*ev), 1);
}

/* Drops-only mode: the slot of trail t the next event goes to. The slot is taken with
 * an atomic add: a program may be interrupted on its CPU by another's. */
static __always_inline struct trail_record *trail_take(struct trail *t)
{
	__u64 i = __sync_fetch_and_add(&t->next, 1);
	return &t->slots[i & (TRAIL_SLOTS - 1)];
}

/* trail_take on this CPU's trail. */
static __always_inline struct trail_record *trail_slot(void)
{
	__u32 zero = 0;
	struct trail *t = bpf_map_lookup_elem(&trail, &zero);
	return t ? trail_take(t) : NULL;
}

/* Drops-only mode: keeps ev in the trail, where its skb's drop may find it. */
static __always_inline void trail_write(const struct event *ev)
{
	struct trail_record *r = trail_slot();
	if (!r)
		return;
	__builtin_memcpy(r, ev, sizeof(*r));
	count(COUNTER_TRAIL);
}

/* Drops-only mode: marks the end of an skb's life in the trail, so that a drop of the
 * next skb at its address looks no further back. */
static __always_inline void trail_tombstone(__u64 skb, __u16 probe)
{
	struct event *r = (void *)trail_slot();
	if (!r)
		return;
	r->skb = skb;
	r->probe = probe;
}

/* Drops-only mode: trail_walk (trail.h) over this CPU's trail. */
static __always_inline struct trail_found trail_collect(struct drop_record *d)
{
	__u32 zero = 0;
	struct trail *t = bpf_map_lookup_elem(&trail, &zero);
	if (!t)
		return (struct trail_found){};
	return trail_walk(t, d);
}

/* Sends the event of a followed skb: at once, or into the trail in drops-only mode.
 * The drops-only path is pruned by the verifier when the mode is off. */
static __always_inline void send(const struct event *ev)
{
	if (filter.drops_only)
		trail_write(ev);
	else
		emit(ev);
}

/* At a drop's free, the nft names nft_do_chain left for the skb go where only this free
 * event finds them. */
static __always_inline void keep_nft_names(const struct event *ev)
{
	if (ev->free_class != FREE_DROP || !kcfg.nft_chain_name)
		return;
	struct nft_names *n = bpf_map_lookup_elem(&nft_drops, &ev->skb);
	if (!n)
		return;
	struct nft_freed_key k = {.skb = ev->skb, .ts_ns = ev->ts_ns};
	bpf_map_update_elem(&nft_freed, &k, n, BPF_ANY);
	bpf_map_delete_elem(&nft_drops, &ev->skb);
}

/* Sends the free event of a followed skb, with its nft names when it is a drop. */
static __always_inline void send_free(const struct event *ev)
{
	keep_nft_names(ev);
	emit(ev);
}

/* An empty event of an skb at a probe: nothing read yet. */
static __always_inline void begin_event(struct event *ev, __u64 skb, __u16 probe, __u8 kind)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->skb = skb;
	ev->probe = probe;
	ev->kind = kind;
}

/* When and where the event happens. */
static __always_inline void stamp_event(struct event *ev)
{
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cpu = bpf_get_smp_processor_id();
}

/* Fills what every event carries without reading the skb: for hooks where its
 * memory may be gone (after the driver took it, after a function returned). */
static __always_inline void init_event_at(struct event *ev, __u64 skb, __u16 probe, __u8 kind)
{
	begin_event(ev, skb, probe, kind);
	stamp_event(ev);
}

/* The skb's length and mark, and when: what a probe adds once it looks further. */
static __always_inline void finish_event(struct event *ev, struct sk_buff *skb, bool direct)
{
	stamp_event(ev);
	ev->len = SKB_READ(direct, skb, len);
	ev->mark = SKB_READ(direct, skb, mark);
}

/* Fills what every probe knows about an skb; the caller adds the rest. */
static __always_inline void init_event(struct event *ev, struct sk_buff *skb, __u16 probe, __u8 kind)
{
	begin_event(ev, (__u64)skb, probe, kind);
	finish_event(ev, skb, false);
}

/*
 * The first look's shortcut for the common skb, IPv4 TCP or UDP without options or
 * fragments, where the address, port or protocol filters are set: its tuple goes from
 * three plain loads of the header straight into ev, unzeroed but for what the filters
 * read, and tuple_matches decides. The full look (begin_event, read_tuple) zeroes the
 * event and parses every header field first, which doubled what an skb the filters turn
 * away cost at net_dev_queue. True when the filters turn the skb away; false when they
 * take it or the shortcut cannot tell, and the full look decides.
 */
static __always_inline bool quickly_turned_away(struct event *ev, struct sk_buff *skb, enum l3_hint hint, bool direct)
{
	if (!direct || !kcfg.plain_header_loads || (!filter.n_addrs && !filter.n_ports && !filter.n_protos))
		return false;
	if (SKB_READ(direct, skb, protocol) != bpf_htons(ETH_P_IP))
		return false;
	union {
		struct {
			struct iphdr ip;
			__be16 sport, dport;
		} h;
		__u64 w[3];
	} u;
	const __u64 *p = bpf_rdonly_cast(l3_header(skb, SKB_READ(direct, skb, data), hint, direct), 0);
	u.w[0] = p[0];
	u.w[1] = p[1];
	u.w[2] = p[2];
	if (u.h.ip.version != 4 || u.h.ip.ihl != 5 || (u.h.ip.frag_off & bpf_htons(0x1fff)) ||
	    (u.h.ip.protocol != IPPROTO_TCP && u.h.ip.protocol != IPPROTO_UDP))
		return false;
	ev->l3 = 4;
	ev->l4 = u.h.ip.protocol;
	ev->quoted_l3 = 0; /* no ICMP error: the filters read no quoted header */
	__builtin_memset(ev->saddr, 0, sizeof(ev->saddr));
	__builtin_memset(ev->daddr, 0, sizeof(ev->daddr));
	__builtin_memcpy(ev->saddr, &u.h.ip.saddr, 4);
	__builtin_memcpy(ev->daddr, &u.h.ip.daddr, 4);
	ev->sport = bpf_ntohs(u.h.sport);
	ev->dport = bpf_ntohs(u.h.dport);
	return !tuple_matches(ev);
}

/*
 * The first look at an skb: whether it is followed already (no lookup while nothing is),
 * its event begun and its tuple. An skb that is not, whose tuple the filters turn away,
 * costs no more than these reads: the probe returns. *t is its tracked entry, or NULL.
 */
static __always_inline bool first_look(struct event *ev, struct sk_buff *skb, __u16 probe, __u8 kind,
				       enum l3_hint hint, bool direct, struct track **t)
{
	*t = tracked_entry((__u64)skb);
	if (!*t && quickly_turned_away(ev, skb, hint, direct))
		return false;
	begin_event(ev, (__u64)skb, probe, kind);
	read_tuple(ev, skb, hint, direct);
	return *t || (tuple_matches(ev) && pcap_matches(skb, hint, direct));
}

/*
 * The look of a hook at the end of an skb's journey (a copy to a reader, a normal free):
 * it goes on where an earlier hook left an entry at the skb's address and begins nothing
 * where none did, for a span of an skb's end alone would say nothing. An skb that is not
 * followed costs one lookup (none while nothing is followed), no read and no event: by
 * then its headers were written on another CPU (the one that received it, or the
 * reader's), and reading them cost these hooks two to three times an empty program;
 * zeroing the event first cost them a tenth more.
 */
static __always_inline bool end_look(struct event *ev, struct sk_buff *skb, __u16 probe, bool direct,
				     struct track **t)
{
	*t = tracked_entry((__u64)skb);
	if (!*t)
		return false;
	begin_event(ev, (__u64)skb, probe, EVENT_INSTANT);
	read_tuple(ev, skb, L3_NETWORK_HEADER, direct);
	return true;
}

/*
 * The end of a probe whose event is complete but for what only a followed skb needs:
 * follow() decides, and a followed skb's event gets the rest and is sent. mode is a
 * constant at each call. The frees end their own way (on_free): a drop may add its stack.
 */
static __always_inline void follow_and_send(struct event *ev, struct sk_buff *skb, struct track *t,
					    enum follow_mode mode, enum l3_hint hint, bool direct)
{
	bool delivered;
	if (!follow(ev, skb, t, mode, hint, direct, &delivered))
		return;
	/* The trail keeps no more than an event's head (trail_record). */
	if (!filter.drops_only)
		read_followed(ev, skb, direct);
	send(ev);
}

#endif
