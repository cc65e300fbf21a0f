/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The record every pktspan probe writes to the ring buffer, the trail drops-only mode
 * keeps of recent events, and the filter configuration and kernel facts user space writes into
 * .rodata before loading. All are naturally aligned with explicit padding (never
 * packed) so that bpf2go's Go declarations have the same layout; user space
 * decodes by field offset.
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
	PROBE_TCP_RETRANSMIT_SKB = 7, /* a segment sent again: no skb of its own, see on_retransmit */
	PROBE_SKB_CLONE = 8, /* skb_clone's return (fexit or kretprobe): the new skb's first event */
	PROBE_NFT_DO_CHAIN = 9, /* nft_do_chain: the table and chain a followed skb is in, in nft_drops */
	/* --correlate http: a TCP segment starting an HTTP/1.x request, sent by a socket of
	 * this host or received by one; the record goes on with the request's first bytes. */
	PROBE_HTTP_EGRESS = 10,
	PROBE_HTTP_INGRESS = 11,
	PROBE_FUNC_BASE = 64,
};

/* A kprobe program serves every function it is attached to: its attach cookie says
 * which, as the probe id in the low 16 bits and flags above. */
enum probe_cookie {
	COOKIE_PROBE_MASK = 0xffff,
	COOKIE_NF_HOOK = 1 << 16, /* nf_hook_slow: report hook, family and verdict */
};

/* What an event marks in a probe's span: a tracepoint hit, or a function's entry or exit. */
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
	/* Drops-only mode: the events kept in the trail (skb.h), and what drops took of them. */
	COUNTER_TRAIL = 6,      /* events written to the trail */
	COUNTER_TRAIL_SENT = 7, /* trail events sent with their skb's drop */
	COUNTER_TRAIL_CUT = 8,  /* drops whose skb had an event in the trail's oldest slot: older ones may be gone */
	COUNTER_FREES_NORMAL = 9,  /* kfree_skb frees with a drop reason that are a normal end (drops.h) */
	COUNTER_STACK_FAIL = 10,    /* --stack: drops whose stack could not be stored (table full, collision) */
	COUNTER_TLS_HELLO = 11,     /* --correlate http: TLS ClientHellos seen, connections whose requests cannot be read */
	COUNTER_MAX = 12,
};

/* A network device: ifindexes repeat across network namespaces. ifindex 0 is none. */
struct dev_id {
	__u32 ifindex;
	__u32 netns; /* inode */
};

/* What the kernel remembers of a followed skb: enough to tell it from the next skb
 * allocated at the same address after a free no tracepoint saw (TCP and UDP free
 * delivered skbs that way). */
struct track {
	__u32 tcp_seq;
	__u32 tcp_ack;
	/* Where it last passed net_dev_queue and netif_receive_skb: no skb passes either
	 * twice on one device, so a second pass there is a new skb at its address. */
	struct dev_id queued;
	struct dev_id received;
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
	struct track track; /* skb_clone's kprobe: the original's, for its kretprobe */
	__u8 nf_hook;
	__u8 nf_pf;
	__u8 _pad[2];
	__u64 opened; /* drops-only: when the entry's event was taken */
};

/* Drops-only mode: the last drop on a CPU. The exits of the functions it happened in come
 * after it, and go straight out (on_exit). */
struct last_drop {
	__u64 skb;
	__u64 ts_ns;
};

/* The netfilter verdict an nf_hook_slow exit reports (the kernel's NF_* values). */
enum nf_verdict {
	NF_DROP = 0,
	NF_ACCEPT = 1,
	NF_STOLEN = 2,
};

/* The TCP flags no hook on the way rewrites (ECE and CWR may be): with seq and ack
 * they tell one segment from the next skb at the same address. */
enum skb_identity {
	TCP_IDENTITY_FLAGS = 0x3f,
};

struct event {
	__u64 ts_ns;    /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
	__u64 skb;      /* skb address: the packet's identity */
	__u64 parent;   /* skb_clone: the address of the skb cloned */
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
	/* The ORIGINAL direction of the skb's conntrack entry: the tuple before NAT. */
	__u8 ct_saddr[16];
	__u8 ct_daddr[16];
	__u16 ct_sport; /* host byte order */
	__u16 ct_dport;
	__u16 gso_segs; /* skb_shinfo(skb)->gso_segs: 0 when the skb is not GSO */
	__u8 ct_l3;     /* 4, 6, or 0 when the skb has no conntrack entry */
	__u8 ct_l4;
	__u8 free_class; /* enum free_class: frees only */
	__u8 icmp_type;  /* ICMP and ICMPv6 */
	__u8 icmp_code;
	__u8 quoted_l3; /* 4, 6, or 0 when the packet is no ICMP error */
	__s32 stack_id; /* kfree_skb of a drop under --stack: its id in the stacks map; -1 for none */
	__u16 tcp_data_len; /* TCP payload bytes: the IP length less the IP and TCP headers */
	__u8 quoted_l4;
	__u8 _pad_quoted;
	/* An ICMP error's quoted header: the packet it answers, as that packet was sent. */
	__u8 quoted_saddr[16];
	__u8 quoted_daddr[16];
	__u16 quoted_sport; /* host byte order */
	__u16 quoted_dport;
	__u16 tcp_window; /* the TCP header's window field, unscaled: 0 is a zero window */
	/* Drops-only mode: the trail records following this drop's event in its ring
	 * record (struct drop_record), newest first. */
	__u8 trail;
	__u8 _pad_end[5];
};

/* Sizes of the fixed arrays below, which user space checks its input against. */
enum limits {
	/* Drops-only mode: events each CPU keeps in its trail (a power of two), and the
	 * bytes of an event a trail record keeps: everything before ct_saddr, which is what
	 * a probe reads before it decides (skb.h checks the offset). */
	TRAIL_SLOTS = 64,
	TRAIL_RECORD = 136,
	FILTER_MAX_ADDRS = 16,
	FILTER_MAX_PORTS = 16,
	FILTER_MAX_PROTOS = 4,
	FILTER_MAX_IFACES = 8,
	FILTER_MAX_NETNS = 8,
	FILTER_MAX_VLANS = 8,
	FILTER_MAX_MARKS = 8,
	/* --filter-container: the followed containers' network namespaces, one per name. */
	FILTER_MAX_CONTAINER_NETNS = 64,
	/* Bytes of struct nf_conntrack_tuple read: the fields kernel_cfg locates lie within. */
	CT_TUPLE_READ = 40,
	NORMAL_FREES_MAX = 32,
	NORMAL_REASON_BITS = 128,
	VLAN_VID_MASK = 0x0fff, /* the 802.1Q tag's VLAN ID bits: the largest VLAN ID */
	NF_VERDICT_MASK = 0xff, /* the verdict's bits of a netfilter hook's return (NF_DROP_ERR adds an errno above) */
	NFT_NAME_READ = 32,     /* bytes kept of an nft table's or chain's name, its NUL included */
	NFT_DROPS_MAX = 4096,   /* skbs whose nft drop awaits user space in nft_drops */
	STACK_DEPTH = 64,       /* frames kept of a drop's kernel stack */
	REQUEST_BYTES_MAX = 4096, /* bytes of an HTTP request read, at most (correlate.bytes) */
	/* Bytes of an skb's linear data a filter expression examines, from its link-layer
	 * header (or IP header, where it has none) on; an 802.1Q tag the skb carries aside
	 * is put back in place first and counts among them. */
	PCAP_SNAP = 256,
	PCAP_MEM_WORDS = 16, /* a cBPF program's scratch memory, M[0] to M[15] */
};

/* Drops-only mode: an event as the trail keeps it, its first TRAIL_RECORD bytes. */
struct trail_record {
	__u64 head[TRAIL_RECORD / 8];
};

/*
 * Drops-only mode: each CPU's last TRAIL_SLOTS events of skbs the filters match, and a
 * tombstone (skb and probe alone) for every free. A drop looks back through its CPU's
 * trail for the events of its own skb's life; nothing is kept per skb, so an skb that
 * ends normally costs one trail write per hook and nothing more.
 */
struct trail {
	__u64 next; /* writes so far: the next slot is next % TRAIL_SLOTS */
	struct trail_record slots[TRAIL_SLOTS];
};

/* Drops-only mode: what a drop sends, in one ring record: its event, then event.trail
 * records of its skb's earlier events, newest first. */
struct drop_record {
	struct event event;
	struct trail_record trail[TRAIL_SLOTS];
};

/*
 * What a filter expression's program sees (skb.h, pcap_matches): its scratch memory and
 * the packet's first bytes. The translated program (collector/pcapfilter) loads from
 * here at the offsets this layout gives: data after mem.
 */
struct pcap_packet {
	__u32 mem[PCAP_MEM_WORDS];
	__u8 data[PCAP_SNAP];
};

/* An address prefix: match when (address & mask) == addr, word by word, network order. */
struct filter_cidr {
	__u32 addr[4];
	__u32 mask[4];
	__u8 family; /* 4 or 6 */
	__u8 _pad[3];
};

/* A mark filter: match when (skb->mark & mask) == value. */
struct filter_mark {
	__u32 value;
	__u32 mask;
};

struct filter_cfg {
	__u32 n_addrs;
	__u32 n_ports;
	__u32 n_protos;
	__u32 n_ifaces;
	__u32 n_netns;
	__u32 n_vlans;
	__u32 n_marks;
	__u8 drops_only; /* hold every event until the skb's free; send only drops' */
	/* --filter-container: the netns in followed_netns (skb.h) match too, beside netns[] */
	__u8 containers;
	/* filter.expression: pcap_l2 and pcap_l3 (skb.h) hold its translation */
	__u8 pcap;
	__u8 _pad0[1];
	struct filter_cidr addrs[FILTER_MAX_ADDRS];
	__u16 ports[FILTER_MAX_PORTS];
	__u8 protos[FILTER_MAX_PROTOS];
	__u32 netns[FILTER_MAX_NETNS];
	char ifaces[FILTER_MAX_IFACES][16];
	__u16 vlans[FILTER_MAX_VLANS]; /* VLAN IDs of the skb's accelerated 802.1Q tag */
	struct filter_mark marks[FILTER_MAX_MARKS];
};

/* What a free was, decided in the kernel (drops.h) and reported on the free's event. */
enum free_class {
	FREE_DROP = 0,     /* a packet the kernel failed to deliver or send */
	FREE_CONSUMED = 1, /* consume_skb, or the reasons CONSUMED and NOT_DROPPED_YET */
	FREE_NORMAL = 2,   /* a drop reason on the normal path: bookkeeping, not a loss */
};

/* What the skb must have done for a normal_free to apply. */
enum free_need {
	FREE_NEED_NOTHING = 0,
	/* No unread bytes: the skb carries none (skb->len is 0 at the free: a FIN or an ACK
	 * on a socket's queue), or a reader copied from it. */
	FREE_NEED_NO_UNREAD = 1,
};

/* One kind of kfree_skb free that is not a drop: the reason, where (a return address
 * within (lo, hi], the function's text; lo == hi == 0: anywhere), and what the skb must
 * have done (enum free_need). */
struct normal_free {
	__u64 lo;
	__u64 hi;
	__u32 reason;
	__u8 need;  /* enum free_need */
	__u8 class; /* enum free_class: FREE_CONSUMED or FREE_NORMAL */
	__u8 _pad[2];
};

/* What user space found in the kernel's BTF, written into .rodata before load. */
struct kernel_cfg {
	/* Offset in struct nf_conn of tuplehash[IP_CT_DIR_ORIGINAL].tuple; 0 when conntrack
	 * cannot be read (not built, module not loaded, no BTF for it). */
	__u32 ct_tuple;
	/* Offsets in struct nf_conntrack_tuple. */
	__u16 ct_src_addr; /* src.u3 */
	__u16 ct_src_port; /* src.u.all */
	__u16 ct_l3num;    /* src.l3num */
	__u16 ct_dst_addr; /* dst.u3 */
	__u16 ct_dst_port; /* dst.u.all */
	__u16 ct_protonum; /* dst.protonum */
	/* The kfree_skb frees that are not drops (drops.h), built by user space. */
	__u32 n_normal_frees;
	/* The reasons among them: bit r of normal_reasons for r < NORMAL_REASON_BITS,
	 * normal_reasons_high when any is larger. A free whose reason is none of them is a
	 * drop without a look at the table. */
	__u32 normal_reasons_high;
	__u64 normal_reasons[NORMAL_REASON_BITS / 64];
	struct normal_free normal_frees[NORMAL_FREES_MAX];
	/* Offsets in nf_tables' structs (its module's BTF, beyond CO-RE's reach, so read
	 * by user space); nft_chain_name 0 when they are unknown. */
	__u16 nft_pkt_skb;     /* struct nft_pktinfo: skb */
	__u16 nft_chain_table; /* struct nft_chain: table */
	__u16 nft_chain_name;  /* struct nft_chain: name */
	__u16 nft_table_name;  /* struct nft_table: name */
	/* 1 when the kernel lets bpf_rdonly_cast make an untyped pointer (a probe program
	 * loaded alone tells): programs typed by BTF then read packet headers with plain
	 * loads instead of a helper call. */
	__u32 plain_header_loads;
	__u32 _pad_end;
};

/* The nft table and base chain a followed skb is in: written when nft_do_chain starts,
 * deleted when it lets the skb on, else left for user space, which reads (and deletes)
 * it with the skb's free as a netfilter drop. */
struct nft_names {
	char table[NFT_NAME_READ];
	char chain[NFT_NAME_READ];
};

/* Where a drop's nft names wait for user space: the free event's skb and time, which
 * no later skb at the same address shares. */
struct nft_freed_key {
	__u64 skb;
	__u64 ts_ns;
};

/* Never instantiated: a pointer to it keeps these types in each object's BTF, where
 * bpf2go finds them (-type) and generates them into Go. */
struct btf_anchor {
	struct event *event;
	enum probe_id probe;
	enum probe_cookie cookie;
	enum event_kind kind;
	enum counter_id counter;
	enum nf_verdict verdict;
	enum skb_identity identity;
	enum limits limits;
	enum free_class free_class;
	enum free_need free_need;
	struct nft_names nft_names;
	struct nft_freed_key nft_freed_key;
	struct pcap_packet pcap_packet;
	struct drop_record drop_record;
};

#endif
