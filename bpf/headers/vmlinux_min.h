/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types pktspan's probes read, declared with preserve_access_index so
 * libbpf/cilium-ebpf relocate every field against the running kernel's BTF (CO-RE).
 * Only the fields used are declared: offsets here are irrelevant, names and types
 * are what the relocations match. Keeping this small instead of a generated
 * vmlinux.h makes `make generate` independent of the build host's kernel.
 */
#ifndef __PKTSPAN_VMLINUX_MIN_H
#define __PKTSPAN_VMLINUX_MIN_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* bpf_ringbuf_output's flags (uapi/linux/bpf.h). */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

/* bpf_ringbuf_query's flags. */
enum {
	BPF_RB_AVAIL_DATA = 0,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct sock *sk;
	struct net_device *dev;
	unsigned long _nfct; /* CONFIG_NF_CONNTRACK: struct nf_conn * | ctinfo in the low 3 bits */
	unsigned int len;
	__u32 mark;
	__u8 vlan_present : 1; /* up to 6.1; later kernels test vlan_proto (vlan_all) instead */
	__be16 vlan_proto;
	__u16 vlan_tci;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned int tail; /* sk_buff_data_t: an offset from head on 64-bit kernels */
	unsigned int end;
	unsigned char *head;
	unsigned char *data;
	char cb[48];
} __attribute__((preserve_access_index));

/* In skb->cb of a TCP socket's write-queue skb. tcp_flags is a __u8 on older kernels and
 * a __u16 on 6.18 (AccECN's AE bit above the header's flags byte): read by its size. */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	__u16 tcp_flags;
} __attribute__((preserve_access_index));

/* At skb->head + skb->end. */
struct skb_shared_info {
	unsigned short gso_segs;
} __attribute__((preserve_access_index));

/* nf_hook_slow's second argument: which hook and family the verdict is for. */
struct nf_hook_state {
	__u8 hook;
	__u8 pf;
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)
/* The kprobe context. Not relocated: its layout is the x86-64 ABI, and the
 * verifier checks accesses against it. Declared as the kernel does, so
 * bpf_tracing.h's PT_REGS_* macros use the kernel's register names. */
#define __VMLINUX_H__
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#endif

struct iphdr {
	__u8 ihl : 4, version : 4;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr {
	__u8 priority : 4, version : 4;
	__u8 flow_lbl[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* The context of cgroup-skb programs (uapi/linux/bpf.h): a stable ABI, so declared
 * with its real offsets and no relocation; only its leading fields, those read. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
};

#endif
