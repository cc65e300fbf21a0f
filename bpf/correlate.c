//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The correlation family (--correlate http): cgroup-skb programs on the cgroup v2 root
 * see the TCP segments of every socket in every network namespace, at the socket's edge
 * (egress after the IP layer built the headers, ingress at the socket's filter).
 * bpf_skb_load_bytes reads payload wherever it lies: on the send path TCP data sits in
 * page fragments, beyond the reach of a pointer into the linear area. A segment whose
 * payload starts like an HTTP/1.x request line goes to user space with its first bytes,
 * which parses the traceparent there and forgets them. These programs never drop: they
 * always return 1 (let the packet pass).
 */
#include "skb.h"

/* How many bytes of a request are read: correlate.bytes, set by user space before load
 * (at most REQUEST_BYTES_MAX). */
volatile const __u32 request_bytes = 1024;

/* An event (probe PROBE_HTTP_*) and the request's first bytes; the ring record is cut
 * to the bytes read. Built in a per-CPU map: it is far bigger than the stack. */
struct request_record {
	struct event ev;
	__u8 data[REQUEST_BYTES_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct request_record);
} request_scratch SEC(".maps");

/* A TLS record's first bytes: type handshake (22), version 3.x; the handshake's type
 * follows the 5-byte record header. */
#define TLS_HANDSHAKE 22
#define TLS_MAJOR 3
#define TLS_CLIENT_HELLO 1

/* The shortest request line there is ("GET / HTTP/1.0\r\n") is 16 bytes. */
#define REQUEST_LINE_MIN 16
static __always_inline bool upper(__u8 c)
{
	return c >= 'A' && c <= 'Z';
}

/* Whether b starts with an upper-case method token of 3 to 7 letters and a space
 * ("GET ", "OPTIONS "): what every HTTP/1.x request line starts with, and cheap to tell
 * from anything else. */
static __always_inline bool looks_like_method(const __u8 b[8])
{
	if (!upper(b[0]) || !upper(b[1]) || !upper(b[2]))
		return false;
	int i = 3;
	while (i < 7 && upper(b[i]))
		i++;
	return b[i] == ' ';
}

static __always_inline int on_segment(struct __sk_buff *skb, __u16 probe)
{
	/* Every segment of every socket comes here: the rejects come first and cost a
	 * few loads. */
	__u32 l3_len, l4_proto;
	__u8 l3[40];
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, l3, 20))
			return 1;
		struct iphdr *ip = (void *)l3;
		if (ip->protocol != IPPROTO_TCP || ip->ihl < 5 || ip->frag_off & bpf_htons(0x3fff))
			return 1;
		l3_len = ip->ihl * 4;
		l4_proto = ip->protocol;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 0, l3, 40))
			return 1;
		/* Extension headers are not walked: a request behind one goes unseen. */
		if (((struct ipv6hdr *)l3)->nexthdr != IPPROTO_TCP)
			return 1;
		l3_len = 40;
		l4_proto = IPPROTO_TCP;
	} else {
		return 1;
	}
	__u8 th[20];
	if (bpf_skb_load_bytes(skb, l3_len, th, sizeof(th)))
		return 1;
	__u32 off = l3_len + (th[12] >> 4) * 4;
	if (skb->len < off + REQUEST_LINE_MIN)
		return 1;
	__u8 method[8];
	if (bpf_skb_load_bytes(skb, off, method, sizeof(method)))
		return 1;
	if (!looks_like_method(method)) {
		/* A TLS handshake record holding a ClientHello: a connection whose requests are
		 * encrypted, counted so that what cannot be correlated is not silent. */
		if (method[0] == TLS_HANDSHAKE && method[1] == TLS_MAJOR && method[5] == TLS_CLIENT_HELLO)
			count(COUNTER_TLS_HELLO);
		return 1;
	}

	__u32 zero = 0;
	struct request_record *r = bpf_map_lookup_elem(&request_scratch, &zero);
	if (!r)
		return 1;
	init_event_at(&r->ev, 0, probe, EVENT_INSTANT);
	struct event *ev = &r->ev;
	ev->len = skb->len;
	ev->mark = skb->mark;
	ev->ifindex = skb->ifindex;
	ev->l4 = l4_proto;
	if (l3_len == 40) {
		struct ipv6hdr *ip6 = (void *)l3;
		ev->l3 = 6;
		__builtin_memcpy(ev->saddr, &ip6->saddr, 16);
		__builtin_memcpy(ev->daddr, &ip6->daddr, 16);
	} else {
		struct iphdr *ip = (void *)l3;
		ev->l3 = 4;
		__builtin_memcpy(ev->saddr, &ip->saddr, 4);
		__builtin_memcpy(ev->daddr, &ip->daddr, 4);
	}
	read_tcp_header(ev, th);
	__u32 data = skb->len - off;
	ev->tcp_data_len = data > 0xffff ? 0xffff : data;

	__u32 n = data < request_bytes ? data : request_bytes;
	if (n < REQUEST_LINE_MIN || n > REQUEST_BYTES_MAX)
		return 1;
	/* The same n, in a form whose bounds [1, REQUEST_BYTES_MAX] the verifier can see
	 * (REQUEST_BYTES_MAX is a power of two). */
	n = ((n - 1) & (REQUEST_BYTES_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, r->data, n))
		return 1;
	/* No wakeup of its own: the reader wakes for the packets' events and at its tick,
	 * and the ring keeps the record in order before them. A wakeup per request costs
	 * the reader a context switch for each. */
	if (bpf_ringbuf_output(&events, r, sizeof(r->ev) + n, BPF_RB_NO_WAKEUP))
		count(COUNTER_RINGBUF_FULL);
	return 1;
}

SEC("cgroup_skb/egress")
int request_egress(struct __sk_buff *skb)
{
	return on_segment(skb, PROBE_HTTP_EGRESS);
}

SEC("cgroup_skb/ingress")
int request_ingress(struct __sk_buff *skb)
{
	return on_segment(skb, PROBE_HTTP_INGRESS);
}
