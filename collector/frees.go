package collector

import (
	"fmt"

	"github.com/pktspan/pktspan/bpf"
)

// normalFree is one kind of kfree_skb free that is a normal end of a packet, not a loss:
// the kernel frees it with a drop reason, in a function that says what happened to it,
// after the skb did what the need says. The list comes from what healthy and broken
// traffic show on 6.1, 6.12 and 6.18 (README, "What counts as a drop";
// `matrix-scenario --survey` prints it for a kernel).
type normalFree struct {
	// reasons the kernel gives it: one of them (kernels renamed some: 6.1 purges a
	// queue as NOT_SPECIFIED, later ones as QUEUE_PURGE).
	reasons []string
	// functions that free it (the free's location): any of them.
	functions []string
	need      bpf.TracepointsFreeNeed
}

// consumedReasons are the kernel's own names for a free that is no drop.
var consumedReasons = []string{"NOT_DROPPED_YET", "CONSUMED"}

// normalFrees are the bookkeeping frees: the packet did its work before it was freed.
var normalFrees = []normalFree{
	// The TCP state machine took the segment and had nothing to queue: the handshake's
	// last ACK, an ACK of a FIN, an ACK arriving while closing. Its real discards there
	// carry their own reasons (TCP_FLAGS, TCP_ABORT_ON_DATA, …).
	{reasons: []string{"NOT_SPECIFIED"}, functions: []string{"tcp_rcv_state_process"}, need: bpf.TracepointsFreeNeedFREE_NEED_NOTHING},
	// A closed socket's receive queue emptied: a FIN (no bytes) or a segment the
	// application read. A segment with unread bytes is a loss.
	{reasons: []string{"QUEUE_PURGE", "NOT_SPECIFIED"}, functions: []string{"sk_stream_kill_queues"}, need: bpf.TracepointsFreeNeedFREE_NEED_NO_UNREAD},
	// An ICMP echo reply no ping socket asked for: the ICMP layer looks only for ping
	// sockets, after raw sockets (ping run as root) got their own copy. ping_rcv frees
	// it on 6.18; on 6.12 it returns the reason to icmp_rcv or icmpv6_rcv, which free it
	// (their other messages are not freed as NO_SOCKET).
	{reasons: []string{"NO_SOCKET"}, functions: []string{"ping_rcv", "icmp_rcv", "icmpv6_rcv"}, need: bpf.TracepointsFreeNeedFREE_NEED_NOTHING},
	// An ICMPv6 message the kernel took (an echo request it answered, neighbour
	// discovery): 6.1 ends them all as NOT_SPECIFIED; its real discards there carry
	// their own reasons (ICMP_CSUM, XFRM_POLICY, …).
	{reasons: []string{"NOT_SPECIFIED"}, functions: []string{"icmpv6_rcv"}, need: bpf.TracepointsFreeNeedFREE_NEED_NOTHING},
	// A segment all of whose bytes had arrived already (a retransmission an earlier copy
	// made needless, as a slow receiver provokes): nothing is lost. 6.1 names an old
	// segment TCP_INVALID_SEQUENCE, as it does one beyond the window: a drop there.
	{reasons: []string{"TCP_OLD_DATA", "TCP_OFOMERGE"}, functions: []string{"tcp_data_queue", "tcp_data_queue_ofo"}, need: bpf.TracepointsFreeNeedFREE_NEED_NOTHING},
	{reasons: []string{"TCP_OLD_SEQUENCE"}, functions: []string{"tcp_validate_incoming"}, need: bpf.TracepointsFreeNeedFREE_NEED_NOTHING},
}

// FunctionText finds a kernel function's text.
type FunctionText interface {
	// Text returns the addresses a return address inside the function lies in: (lo, hi].
	Text(name string) (lo, hi uint64, ok bool)
}

// normalReasonBits are the probes' kcfg.normal_reasons for table: bit r set for each
// reason r below NORMAL_REASON_BITS, and high 1 when a reason is larger (the probes then
// always look at the table).
func normalReasonBits(table []bpf.TracepointsNormalFree) (high uint32, bits [bpf.TracepointsLimitsNORMAL_REASON_BITS / 64]uint64) {
	for _, f := range table {
		if f.Reason >= uint32(bpf.TracepointsLimitsNORMAL_REASON_BITS) {
			high = 1
			continue
		}
		bits[f.Reason/64] |= 1 << (f.Reason % 64)
	}
	return high, bits
}

// normalFreeTable builds the probes' kcfg.normal_frees for this kernel: the consumed
// reasons, the reasons the user names as always normal (each must be one of this
// kernel's), and each normalFree whose reason and function this kernel has. missing
// lists the functions this kernel lacks (their rules cannot apply).
func normalFreeTable(reasons *DropReasons, text FunctionText, user []string) (table []bpf.TracepointsNormalFree, missing []string, err error) {
	anywhere := func(v uint32, class bpf.TracepointsFreeClass) {
		table = append(table, bpf.TracepointsNormalFree{Reason: v, Class: uint8(class)})
	}
	for _, name := range consumedReasons {
		if v, ok := reasons.Value(name); ok {
			anywhere(v, bpf.TracepointsFreeClassFREE_CONSUMED)
		}
	}
	for _, name := range user {
		v, ok := reasons.Value(name)
		if !ok {
			return nil, nil, fmt.Errorf("probes.normal_free_reasons: %q is not a drop reason of this kernel (enum skb_drop_reason without its SKB_DROP_REASON_ prefix, such as NOT_SPECIFIED)", name)
		}
		anywhere(v, bpf.TracepointsFreeClassFREE_NORMAL)
	}
	for _, f := range normalFrees {
		for _, fn := range f.functions {
			lo, hi, ok := text.Text(fn)
			if !ok {
				missing = append(missing, fn)
				continue
			}
			for _, name := range f.reasons {
				if v, ok := reasons.Value(name); ok {
					table = append(table, bpf.TracepointsNormalFree{Lo: lo, Hi: hi, Reason: v, Need: uint8(f.need),
						Class: uint8(bpf.TracepointsFreeClassFREE_NORMAL)})
				}
			}
		}
	}
	if max := int(bpf.TracepointsLimitsNORMAL_FREES_MAX); len(table) > max {
		return nil, nil, fmt.Errorf("%d kinds of normal frees (normal_free_reasons and pktspan's own), the probes hold at most %d", len(table), max)
	}
	return table, missing, nil
}
