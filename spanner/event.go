package spanner

import "net/netip"

// Kind says whether an event opens a stage, closes one, or is a single point in time.
type Kind uint8

const (
	KindInstant Kind = iota // tracepoints: a stage of zero duration
	KindEnter               // fentry/kprobe: a stage starts
	KindExit                // fexit/kretprobe: the innermost open stage of that name ends
)

// Stage identifies the kernel hook an event came from. Its name becomes the stage
// span's name (`ip_rcv_core`, `net:netif_receive_skb`).
type Stage struct {
	Name string
	// Free marks the hooks that end an skb's life: skb:kfree_skb and skb:consume_skb.
	Free bool
	// Void marks functions returning nothing: their exit carries no return value.
	Void bool
	// Pointer marks functions returning a pointer: the return value is exported in hex
	// (an skb's address, 0x0 for NULL), not as a signed number.
	Pointer bool
	// Deliver marks delivery to a socket (skb:skb_copy_datagram_iovec): after it an skb
	// is only copied again or freed, never sent or received anew.
	Deliver bool
	// Clone marks skb_clone's return: the event's SKB is a new skb cloned from Parent.
	Clone bool
	// NFHook marks nf_hook_slow: the nft table and chain of a netfilter drop inside it
	// go on its stage.
	NFHook bool
	// Request marks an HTTP/1.x request seen in a TCP segment's first bytes
	// (--correlate http): the event's Requests say what its headers carried, its tuple
	// and TCP fields where the segment was seen. It is no packet span of its own.
	Request bool
	// Received marks a Request stage that saw the segment arrive at a socket of this
	// host (cgroup ingress) rather than leave one.
	Received bool
	// Pass marks the hooks no skb passes twice on one device (net:net_dev_queue,
	// net:netif_receive_skb): a second pass on one is a new skb at a reused address.
	Pass DevicePass
	// Retransmit marks tcp:tcp_retransmit_skb: its event names a TCP segment the kernel
	// sent again (tuple, seq, flags; its SKB is the write-queue skb, which never leaves
	// the host), and it is a stage of the packet span recognised as that retransmission,
	// never a packet span of its own.
	Retransmit bool
}

// DevicePass names a hook no skb passes twice on one device: forwarding, bridges,
// tunnels, VLANs and veth pairs change device, and loopback changes hook (queued, then
// received).
type DevicePass uint8

const (
	PassNone    DevicePass = iota // any other hook
	PassQueue                     // net:net_dev_queue
	PassReceive                   // net:netif_receive_skb
)

// Tuple is the L3/L4 header of a packet as one hook saw it.
type Tuple struct {
	Src, Dst         netip.Addr // invalid when the hook could not read an IP header
	SrcPort, DstPort uint16
	Proto            uint8 // IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 ipv6-icmp
}

// Valid reports whether the tuple carries addresses.
func (t Tuple) Valid() bool { return t.Src.IsValid() && t.Dst.IsValid() }

// TCP holds the TCP header fields of the packet, when it is TCP.
type TCP struct {
	Flags    uint8 // FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80
	Seq, Ack uint32
	DataLen  uint16 // payload bytes
	Window   uint16 // the header's window field, unscaled: 0 is a zero window
}

// ICMP holds the ICMP or ICMPv6 header's type and code, when the packet is ICMP.
type ICMP struct {
	Type, Code uint8
}

// Netfilter is what an nf_hook_slow stage reports.
type Netfilter struct {
	Hook    uint8 // NF_INET_PRE_ROUTING=0 … NF_INET_POST_ROUTING=4
	PF      uint8 // NFPROTO_IPV4=2, NFPROTO_IPV6=10
	Verdict int32
	Valid   bool
}

// NFT names the nftables table and base chain whose verdict dropped a packet (function
// backends only); set on the free of a netfilter drop.
type NFT struct {
	Table, Chain string
}

// Event is one sighting of one skb at one kernel hook, decoded from the kernel's record.
// It is a plain value: nothing in it refers to eBPF types. Strings in it come from
// bounded intern tables owned by the decoder, so decoding does not allocate.
type Event struct {
	TimeUnixNano int64 // wall time, converted from the kernel's monotonic clock
	SKB          uint64
	Stage        *Stage
	Kind         Kind
	CPU          uint32
	Netns        uint32 // inode of the network namespace
	Ifindex      uint32
	Ifname       string
	Len          uint32
	Mark         uint32
	Tuple        Tuple
	// CT is the original-direction tuple of the skb's conntrack entry (the tuple before
	// any NAT), invalid when the kernel had no conntrack entry for it.
	CT   Tuple
	TCP  TCP
	ICMP ICMP
	// Quoted is the header an ICMP or ICMPv6 error quotes: the packet it answers, as that
	// packet was sent (so in the other direction). Invalid when the packet is no error.
	Quoted Tuple
	// Segments is the number of wire packets a GSO/GRO skb stands for; 0 means one.
	Segments uint16
	// Parent is the skb this one was cloned from, on a Clone stage's event.
	Parent    uint64
	Netfilter Netfilter
	// DropReason is the kernel's enum skb_drop_reason name without its prefix
	// (`NETFILTER_DROP`), set on skb:kfree_skb only. Drop says whether it is a drop
	// at all (the probes decide: bpf/headers/drops.h); NormalFree that it is a normal
	// end the kernel gave a drop reason (an ACK the TCP state machine took), not
	// NOT_DROPPED_YET or CONSUMED.
	DropReason string
	Drop       bool
	NormalFree bool
	Location   string // symbolized `nft_do_chain+0x1f3`, for skb:kfree_skb
	// Stack is a drop's kernel stack under --stack, innermost frame first, one
	// symbolized frame per line; "" otherwise.
	Stack  string
	NFT    NFT
	Retval int64 // return value, on KindExit
	// Requests are the HTTP/1.x requests that start in the segment, on a Request stage's
	// event: more than one when requests are pipelined. The decoder owns the slice.
	Requests []Request
}

// HeaderVerdict says what a request's traceparent header was worth.
type HeaderVerdict uint8

const (
	HeaderValid     HeaderVerdict = iota
	HeaderMissing                 // the request's header block has no traceparent
	HeaderTruncated               // none in the bytes read, and the header block went on past them
	HeaderMalformed               // not version 00 in lowercase hex with its dashes, or a bad name
	HeaderZeroID                  // an all-zero trace ID or parent ID
	HeaderDuplicate               // traceparent given more than once
	HeaderUntrusted               // it came from where correlate.trust believes no header
	HeaderVerdicts
)

// HeaderVerdictNames name the verdicts in stats and logs.
var HeaderVerdictNames = [HeaderVerdicts]string{"valid", "missing", "truncated", "malformed", "zero_id", "duplicate", "untrusted"}

// TraceFlags are W3C Trace Context trace-flags.
type TraceFlags uint8

const (
	FlagSampled TraceFlags = 0x01
	FlagRandom  TraceFlags = 0x02 // Trace Context level 2: the trace ID is random
)

// Request is one HTTP/1.x request whose first bytes a probe saw. Only what correlation
// needs is kept: the bytes themselves never leave the decoder.
type Request struct {
	// Offset is where the request line starts, in bytes from the segment's sequence
	// number (non-zero for a pipelined request after the first).
	Offset  uint32
	Verdict HeaderVerdict
	// The traceparent's IDs and flags, when Verdict is HeaderValid.
	TraceID  TraceID
	ParentID SpanID
	Flags    TraceFlags
}
