package spanner

import (
	"testing"
	"time"
)

const (
	nsClient = 4026532001
	nsServer = 4026532002
	us       = time.Microsecond
	ms       = time.Millisecond
	sec      = time.Second
)

var (
	tcpClient = Tuple{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), SrcPort: 43210, DstPort: 80, Proto: protoTCP}
	tcpServer = Tuple{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), SrcPort: 80, DstPort: 43210, Proto: protoTCP}
	udpClient = Tuple{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), SrcPort: 5353, DstPort: 9999, Proto: protoUDP}
	udpServer = Tuple{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), SrcPort: 9999, DstPort: 5353, Proto: protoUDP}
	udp6      = Tuple{Src: addr("fd00::1"), Dst: addr("fd00::2"), SrcPort: 40000, DstPort: 53, Proto: protoUDP}
	icmpEcho  = Tuple{Src: addr("10.0.0.1"), Dst: addr("10.0.0.2"), Proto: protoICMP}
	// The server's answer to the client's UDP datagram, and a router's on a TCP flow.
	icmpFromServer = Tuple{Src: addr("10.0.0.2"), Dst: addr("10.0.0.1"), Proto: protoICMP}
	tcp6Client     = Tuple{Src: addr("fd00::1"), Dst: addr("fd00:1::2"), SrcPort: 43210, DstPort: 443, Proto: protoTCP}
	tcp6Server     = Tuple{Src: addr("fd00:1::2"), Dst: addr("fd00::1"), SrcPort: 443, DstPort: 43210, Proto: protoTCP}
	icmp6FromHop   = Tuple{Src: addr("fd00::fe"), Dst: addr("fd00::1"), Proto: protoICMPv6}

	// A client reaching a service address through a NAT box that translates the
	// destination to a backend (DNAT) and the source to its own address (masquerade),
	// and the backend's reply undone step by step.
	natClient        = Tuple{Src: addr("198.18.0.1"), Dst: addr("198.18.1.2"), SrcPort: 50730, DstPort: 8080, Proto: protoTCP}
	natDNATed        = Tuple{Src: addr("198.18.0.1"), Dst: addr("198.18.2.2"), SrcPort: 50730, DstPort: 8080, Proto: protoTCP}
	natMasqueraded   = Tuple{Src: addr("198.18.2.1"), Dst: addr("198.18.2.2"), SrcPort: 61000, DstPort: 8080, Proto: protoTCP}
	natReply         = Tuple{Src: addr("198.18.2.2"), Dst: addr("198.18.2.1"), SrcPort: 8080, DstPort: 61000, Proto: protoTCP}
	natUnmasqueraded = Tuple{Src: addr("198.18.2.2"), Dst: addr("198.18.0.1"), SrcPort: 8080, DstPort: 50730, Proto: protoTCP}
	natUnDNATed      = Tuple{Src: addr("198.18.1.2"), Dst: addr("198.18.0.1"), SrcPort: 8080, DstPort: 50730, Proto: protoTCP}
)

// onServer is a packet as the server's veth end in the server namespace sees it.
func onServer(skb uint64, tu Tuple, tcp TCP) pkt {
	return pkt{skb: skb, tuple: tu, tcp: tcp, ifindex: 3, ifname: "veth1", netns: nsServer, len: 60}
}

// onClient is a packet as the client's veth end in the client namespace sees it.
func onClient(skb uint64, tu Tuple, tcp TCP) pkt {
	return pkt{skb: skb, tuple: tu, tcp: tcp, ifindex: 2, ifname: "veth0", netns: nsClient, len: 60}
}

var scenarios = []struct {
	name string
	opts []Option
	run  func(h *harness)
}{
	{
		// Both directions land in one trace; the stage crossing the veth pair into the
		// server namespace names its new interface and netns.
		name: "tcp_request_and_reply_share_one_trace",
		run: func(h *harness) {
			syn := onClient(0xffff888100000100, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			h.ev(0, syn, stQueue)
			h.ev(2*us, syn, stXmit)
			h.ev(10*us, syn, stRecv, dev(3, "veth1", nsServer))
			h.ev(15*us, syn, stTCPRcv, dev(3, "veth1", nsServer))
			h.ev(20*us, syn, stConsume, dev(3, "veth1", nsServer))
			synack := onServer(0xffff888100000200, tcpServer, TCP{Flags: tcpSYN | tcpACK, Seq: 5000, Ack: 1001})
			h.ev(100*us, synack, stQueue)
			h.ev(102*us, synack, stXmit)
			h.ev(110*us, synack, stRecv, dev(2, "veth0", nsClient))
			h.ev(115*us, synack, stTCPRcv, dev(2, "veth0", nsClient))
			h.ev(120*us, synack, stConsume, dev(2, "veth0", nsClient))
			h.flush(sec)
		},
	},
	{
		name: "udp_to_closed_port_is_dropped_with_no_socket",
		run: func(h *harness) {
			p := onServer(0xffff888100000300, udpClient, TCP{})
			h.ev(0, p, stRecv)
			h.ev(3*us, p, stIPRcv)
			h.ev(6*us, p, stUDPRcv)
			h.ev(9*us, p, stKfree, drop("NO_SOCKET", "__udp4_lib_rcv+0x5a1"))
			h.flush(sec)
		},
	},
	{
		// With function probes nf_hook_slow returns after the drop freed the skb: its exit,
		// carrying the verdict, still belongs to the dropped packet.
		name: "nft_drop_carries_reason_location_and_verdict",
		run: func(h *harness) {
			p := onServer(0xffff888100000400, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			h.ev(0, p, stRecv)
			h.ev(2*us, p, stIPRcv, enter)
			h.ev(3*us, p, stIPRcv, exit(int64(p.skb)))
			h.ev(5*us, p, stNF, enter)
			h.ev(8*us, p, stKfree, drop("NETFILTER_DROP", "nft_do_chain+0x1f3"))
			h.ev(9*us, p, stNF, exit(-1), nf(0, 2, 0))
			h.flush(sec)
		},
	},
	{
		// A free the probes called a normal end (an ACK the TCP state machine took, freed
		// as NOT_SPECIFIED) is no error: the packet span keeps its reason and location as
		// pktspan.free.*, with no drop event and no error.type.
		name: "bookkeeping_free_is_a_normal_end_with_its_reason",
		run: func(h *harness) {
			p := onServer(0xffff888100000450, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(0, p, stRecv)
			h.ev(3*us, p, stIPRcv)
			h.ev(8*us, p, stKfree, normalFree("NOT_SPECIFIED", "tcp_rcv_state_process+0x3a1"))
			h.flush(sec)
		},
	},
	{
		// With a function backend, the nft table and chain of the drop go on the packet
		// span and on the nf_hook_slow stage the free happened in.
		name: "nft_drop_names_its_table_and_chain_on_packet_and_hook_stage",
		run: func(h *harness) {
			p := onServer(0xffff888100000440, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			h.ev(0, p, stRecv)
			h.ev(5*us, p, stNF, enter)
			h.ev(8*us, p, stKfree, drop("NETFILTER_DROP", "nft_do_chain+0x1f3"), nft("pktspan_lab", "input"))
			h.ev(9*us, p, stNF, exit(-1), nf(1, 2, 0))
			h.flush(sec)
		},
	},
	{
		// Under --stack the stack is on the drop event only, not on the packet span.
		name: "drop_stack_is_on_the_drop_event",
		run: func(h *harness) {
			p := onServer(0xffff888100000480, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			h.ev(0, p, stRecv)
			h.ev(8*us, p, stKfree, drop("NETFILTER_DROP", "nft_do_chain+0x1f3"),
				stack("sk_skb_reason_drop+0x5e\nnft_do_chain+0x1f3\nnf_hook_slow+0x44"))
			h.flush(sec)
		},
	},
	{
		name: "consumed_packet_has_unset_status",
		run: func(h *harness) {
			p := pkt{skb: 0xffff888100000500, tuple: udp6, ifindex: 1, ifname: "lo", netns: nsServer, len: 80, mark: 7}
			h.ev(0, p, stRecv)
			h.ev(4*us, p, stUDPRcv)
			h.ev(20*us, p, stCopy)
			h.ev(21*us, p, stConsume)
			h.flush(sec)
		},
	},
	{
		name: "skb_address_reused_after_free_gives_two_packets",
		run: func(h *harness) {
			echo := onServer(0xffff888100000600, icmpEcho, TCP{})
			h.ev(0, echo, stRecv)
			h.ev(5*us, echo, stConsume)
			h.ev(50*us, echo, stRecv)
			h.ev(55*us, echo, stConsume)
			h.flush(sec)
		},
	},
	{
		// TCP frees a received segment on a path with no tracepoint; the next segment
		// arrives in the same memory. Its different seq/ack/flags start a new packet.
		name: "tcp_segment_at_an_unseen_freed_address_is_a_new_packet",
		run: func(h *harness) {
			ack := onServer(0xffff888100000650, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(0, ack, stRecv)
			data := onServer(0xffff888100000650, tcpClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001})
			h.ev(40*us, data, stRecv)
			h.ev(45*us, data, stCopy)
			h.ev(60*us, data, stCopy)
			h.ev(70*us, data, stKfree)
			h.flush(sec)
		},
	},
	{
		// After delivery to a socket an skb is only copied or freed; a UDP skb freed
		// unseen whose address is sent from again is a new packet.
		name: "udp_send_after_delivery_at_the_same_address_is_a_new_packet",
		run: func(h *harness) {
			in := onServer(0xffff888100000660, udpClient, TCP{})
			h.ev(0, in, stRecv)
			h.ev(5*us, in, stCopy)
			out := onServer(0xffff888100000660, udpServer, TCP{})
			h.ev(30*us, out, stQueue)
			h.ev(32*us, out, stConsume)
			h.flush(sec)
		},
	},
	{
		// A TCP ACK freed unseen; a UDP datagram is built in the same memory.
		name: "other_protocol_at_an_unseen_freed_address_is_a_new_packet",
		run: func(h *harness) {
			ack := onClient(0xffff888100000670, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(0, ack, stQueue)
			h.ev(2*us, ack, stRecv, dev(3, "veth1", nsServer))
			dgram := onClient(0xffff888100000670, udpClient, TCP{})
			h.ev(50*us, dgram, stQueue)
			h.ev(52*us, dgram, stRecv, dev(3, "veth1", nsServer))
			h.ev(55*us, dgram, stKfree, dev(3, "veth1", nsServer), drop("NO_SOCKET", "__udp4_lib_rcv+0x4bc"))
			h.flush(sec)
		},
	},
	{
		// A datagram a socket read was freed unseen; the next one, same headers, is built
		// in the same memory. No skb is queued twice on one device: it is a new packet,
		// while the same skb received on the peer veth stays one.
		name: "udp_datagram_queued_again_on_its_device_is_a_new_packet",
		run: func(h *harness) {
			for n := range 2 {
				d := onClient(0xffff888100000680, udpClient, TCP{})
				at := time.Duration(n) * 50 * us
				h.ev(at, d, stQueue)
				h.ev(at+1*us, d, stXmit)
				h.ev(at+2*us, d, stRecv, dev(3, "veth1", nsServer))
			}
			h.flush(sec)
		},
	},
	{
		name: "packet_never_freed_times_out",
		run: func(h *harness) {
			p := onServer(0xffff888100000700, udpClient, TCP{})
			h.ev(0, p, stRecv)
			h.ev(1*us, p, stIPRcv)
			h.tick(4 * sec)
			h.tick(5*sec + 1*us)
			h.flush(6 * sec)
		},
	},
	{
		name: "fin_then_grace_closes_window_and_next_packet_links",
		run: func(h *harness) {
			fin := onServer(0xffff888100000800, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 2000, Ack: 6000})
			h.ev(0, fin, stRecv)
			h.ev(5*us, fin, stConsume)
			ack := onClient(0xffff888100000900, tcpServer, TCP{Flags: tcpACK, Seq: 6000, Ack: 2001})
			h.ev(ms, ack, stRecv)
			h.ev(ms+5*us, ack, stConsume)
			h.tick(sec) // within the grace: nothing closes
			h.tick(2*sec + ms)
			syn := onServer(0xffff888100000a00, tcpClient, TCP{Flags: tcpSYN, Seq: 9000})
			h.ev(3*sec, syn, stRecv)
			h.ev(3*sec+5*us, syn, stConsume)
			h.flush(4 * sec)
		},
	},
	{
		name: "idle_flow_closes_window",
		run: func(h *harness) {
			p := onServer(0xffff888100000b00, udpClient, TCP{})
			h.ev(0, p, stRecv)
			h.ev(5*us, p, stConsume)
			h.tick(29 * sec)
			h.tick(30*sec + 5*us)
		},
	},
	{
		// A flow forgotten after its close starts a trace with no link.
		name: "closed_flow_forgotten_after_idle_starts_unlinked_trace",
		run: func(h *harness) {
			p := onServer(0xffff888100000b00, udpClient, TCP{})
			h.ev(0, p, stRecv)
			h.ev(5*us, p, stConsume)
			h.tick(31 * sec) // idle: closes
			h.tick(61 * sec) // closed for an idle timeout: forgotten
			h.ev(62*sec, p, stRecv)
			h.ev(62*sec+5*us, p, stConsume)
			h.flush(63 * sec)
		},
	},
	{
		name: "max_packets_splits_window_with_link",
		opts: []Option{WithWindow(30*sec, 60*sec, 2, 2*sec)},
		run: func(h *harness) {
			for n := range 3 {
				tu := udpClient
				if n == 1 {
					tu = udpServer
				}
				p := onServer(0xffff888100000c00+uint64(n)<<8, tu, TCP{})
				h.ev(time.Duration(n)*ms, p, stRecv)
				h.ev(time.Duration(n)*ms+5*us, p, stConsume)
			}
			h.flush(sec)
		},
	},
	{
		name: "max_duration_closes_window_and_next_links",
		opts: []Option{WithWindow(30*sec, 10*sec, 200, 2*sec)},
		run: func(h *harness) {
			for _, at := range []time.Duration{0, 8 * sec, 11 * sec} {
				p := onServer(0xffff888100000d00, udpClient, TCP{})
				h.ev(at, p, stRecv)
				h.ev(at+5*us, p, stConsume)
				if at == 8*sec {
					h.tick(10 * sec)
				}
			}
			h.flush(12 * sec)
		},
	},
	{
		name: "flow_table_full_evicts_least_recent_flow",
		opts: []Option{WithLimits(2, 100, 64)},
		run: func(h *harness) {
			for n := range 3 {
				tu := udpClient
				tu.SrcPort += uint16(n)
				p := onServer(0xffff888100000e00+uint64(n)<<8, tu, TCP{})
				h.ev(time.Duration(n)*ms, p, stRecv)
				h.ev(time.Duration(n)*ms+5*us, p, stConsume)
			}
			h.flush(sec)
		},
	},
	{
		name: "packet_table_full_evicts_least_recent_packet",
		opts: []Option{WithLimits(100, 2, 64)},
		run: func(h *harness) {
			for n := range 3 {
				p := onServer(0xffff888100001000+uint64(n)<<8, udpClient, TCP{})
				h.ev(time.Duration(n)*us, p, stRecv)
			}
			h.flush(sec)
		},
	},
	{
		// Function stages nest; an instant is a child of the innermost open function; a
		// free inside functions waits for their exits; an exit with no enter is a point;
		// functions whose exits never come end with the packet, which times out. A
		// pointer returned (ip_rcv_core's skb) is hex, not a negative number.
		name: "enter_exit_nest_stages",
		run: func(h *harness) {
			rx := onServer(0xffff888100001100, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(0, rx, stRecv)
			h.ev(1*us, rx, stIPRcv, enter)
			h.ev(2*us, rx, stIPRcv, exit(int64(rx.skb)))
			h.ev(3*us, rx, stLocal, enter)
			h.ev(4*us, rx, stNF, enter)
			h.ev(6*us, rx, stNF, exit(1), nf(1, 2, 1))
			h.ev(7*us, rx, stTCPRcv, enter)
			h.ev(9*us, rx, stConsume)
			h.ev(10*us, rx, stTCPRcv, exit(0))
			h.ev(11*us, rx, stLocal, exit(0))

			tx := onClient(0xffff888100001200, tcpClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001})
			h.ev(100*us, tx, stUDPRcv, exit(0)) // exit without enter
			h.ev(101*us, tx, stOutput, enter)
			h.ev(102*us, tx, stQueue)
			h.ev(103*us, tx, stXmit)

			// Freed inside tcp_v4_rcv, whose exit is lost: it waits, then ends as freed.
			lost := onServer(0xffff888100001300, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(200*us, lost, stTCPRcv, enter)
			h.ev(202*us, lost, stConsume)
			h.tick(6 * sec)
			h.flush(7 * sec)
		},
	},
	{
		name: "stage_limit_truncates_and_counts",
		opts: []Option{WithLimits(100, 100, 3)},
		run: func(h *harness) {
			p := onServer(0xffff888100001300, udpClient, TCP{})
			for n, st := range []*Stage{stRecv, stIPRcv, stLocal, stUDPRcv, stCopy, stConsume} {
				h.ev(time.Duration(n)*us, p, st)
			}
			h.flush(sec)
		},
	},
	{
		name: "stages_before_tuple_wait_and_tupleless_packet_is_discarded",
		run: func(h *harness) {
			p := onServer(0xffff888100001400, udpClient, TCP{})
			h.ev(0, p, stRecv, noTuple)
			h.ev(2*us, p, stIPRcv)
			h.ev(4*us, p, stConsume)
			arp := onServer(0xffff888100001500, Tuple{}, TCP{})
			h.ev(10*us, arp, stRecv)
			h.ev(12*us, arp, stConsume)
			h.flush(sec)
		},
	},
	{
		// At shutdown a window whose grace has elapsed still closes as fin.
		name: "flush_ends_open_packets_and_flows",
		run: func(h *harness) {
			fin := onServer(0xffff888100001600, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 2000, Ack: 6000})
			h.ev(0, fin, stRecv)
			h.ev(5*us, fin, stConsume)
			p := onServer(0xffff888100001700, udpClient, TCP{})
			h.ev(sec, p, stRecv)
			h.ev(sec+2*us, p, stIPRcv, enter)
			h.flush(3 * sec)
		},
	},
	{
		name: "rst_then_grace_closes_window_and_next_packet_links",
		run: func(h *harness) {
			rst := onServer(0xffff888100001800, tcpClient, TCP{Flags: tcpRST | tcpACK, Seq: 2000, Ack: 6000})
			h.ev(0, rst, stRecv)
			h.ev(5*us, rst, stConsume)
			h.tick(2*sec + 5*us)
			late := onServer(0xffff888100001900, tcpClient, TCP{Flags: tcpACK, Seq: 2000, Ack: 6000})
			h.ev(3*sec, late, stRecv)
			h.ev(3*sec+5*us, late, stConsume)
			h.flush(4 * sec)
		},
	},
	{
		// A SYN with another sequence number on an open window's 5-tuple is a new
		// connection: a new trace, derived from its own ISN, linked to the old one. A
		// retransmitted SYN (same number) stays in its window.
		name: "syn_with_new_sequence_number_closes_window_as_new_connection",
		run: func(h *harness) {
			for n, step := range []struct {
				at  time.Duration
				tu  Tuple
				tcp TCP
			}{
				{0, tcpClient, TCP{Flags: tcpSYN, Seq: 1000}},
				{ms, tcpServer, TCP{Flags: tcpSYN | tcpACK, Seq: 5000, Ack: 1001}},
				{2 * ms, tcpClient, TCP{Flags: tcpSYN, Seq: 1000}}, // retransmitted
				{10 * ms, tcpClient, TCP{Flags: tcpSYN, Seq: 777000}},
			} {
				p := onServer(0xffff888100001a00+uint64(n)<<8, step.tu, step.tcp)
				h.ev(step.at, p, stRecv)
				h.ev(step.at+5*us, p, stConsume)
			}
			h.flush(sec)
		},
	},
	{
		// skb_clone makes a new skb: its own packet span in its parent's trace, linked to
		// the parent's packet span. A clone of an skb not open (or never seen) joins the
		// flow by its own tuple and only names its parent. GSO segments keep the largest.
		name: "clone_joins_parent_trace_with_link_and_clone_of",
		run: func(h *harness) {
			orig := onClient(0xffff888100001b00, tcpClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001})
			h.ev(0, orig, stQueue, segs(3))
			clone := onClient(0xffff888100001c00, tcpClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001})
			h.ev(1*us, clone, stClone, exit(0), cloneOf(orig.skb), segs(3))
			h.ev(2*us, orig, stXmit)
			h.ev(3*us, orig, stConsume)
			h.ev(4*us, clone, stRecv, dev(3, "veth1", nsServer))
			h.ev(5*us, clone, stConsume, dev(3, "veth1", nsServer))
			orphan := onClient(0xffff888100001d00, tcpClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001})
			h.ev(10*us, orphan, stClone, exit(0), cloneOf(0xffff888100001e00))
			h.ev(11*us, orphan, stConsume)
			h.flush(sec)
		},
	},
	{
		// On a NAT box: the client's packet arrives for the service address, PREROUTING
		// translates its destination to the backend (DNAT) and POSTROUTING its source to
		// the box's own address (masquerade). The backend's reply is first seen before the
		// box, where it has no conntrack entry: it joins through the alias the
		// translations taught. One trace; the root names the original client and service.
		name: "nat_dnat_and_masquerade_share_one_trace",
		run: func(h *harness) {
			syn := pkt{skb: 0xffff888100002000, tuple: natClient, tcp: TCP{Flags: tcpSYN, Seq: 1000}, ifindex: 4, ifname: "eth0", netns: nsClient, len: 60}
			h.ev(0, syn, stRecv)
			h.ev(1*us, syn, stNF, enter, ct(natClient))
			h.ev(3*us, syn, stNF, exit(1), nf(0, 2, 1), ct(natClient), seenAs(natDNATed))
			h.ev(4*us, syn, stForward, ct(natClient), seenAs(natDNATed))
			h.ev(5*us, syn, stNF, enter, ct(natClient), seenAs(natDNATed))
			h.ev(7*us, syn, stNF, exit(1), nf(4, 2, 1), ct(natClient), seenAs(natMasqueraded))
			h.ev(8*us, syn, stQueue, ct(natClient), seenAs(natMasqueraded), dev(5, "eth1", nsClient))
			h.ev(9*us, syn, stXmit, ct(natClient), seenAs(natMasqueraded), dev(5, "eth1", nsClient))
			h.ev(10*us, syn, stConsume, ct(natClient), seenAs(natMasqueraded), dev(5, "eth1", nsClient))

			synack := pkt{skb: 0xffff888100002100, tuple: natReply, tcp: TCP{Flags: tcpSYN | tcpACK, Seq: 9000, Ack: 1001}, ifindex: 2, ifname: "veth0", netns: nsServer, len: 60}
			h.ev(100*us, synack, stQueue)
			h.ev(101*us, synack, stXmit)
			h.ev(110*us, synack, stRecv, dev(5, "eth1", nsClient))
			h.ev(111*us, synack, stNF, enter, ct(natClient), dev(5, "eth1", nsClient))
			h.ev(113*us, synack, stNF, exit(1), nf(0, 2, 1), ct(natClient), seenAs(natUnmasqueraded), dev(5, "eth1", nsClient))
			h.ev(114*us, synack, stForward, ct(natClient), seenAs(natUnmasqueraded), dev(5, "eth1", nsClient))
			h.ev(115*us, synack, stNF, enter, ct(natClient), seenAs(natUnmasqueraded), dev(5, "eth1", nsClient))
			h.ev(117*us, synack, stNF, exit(1), nf(4, 2, 1), ct(natClient), seenAs(natUnDNATed), dev(5, "eth1", nsClient))
			h.ev(118*us, synack, stQueue, ct(natClient), seenAs(natUnDNATed), dev(4, "eth0", nsClient))
			h.ev(119*us, synack, stConsume, ct(natClient), seenAs(natUnDNATed), dev(4, "eth0", nsClient))
			h.flush(sec)
		},
	},
	{
		// Tail-based export: a window's ended packets wait for a drop. The first flow's
		// drop releases the packets before it (at most the drop context, the most recent
		// ones), itself, then the packets after it directly and its root at close. The
		// second flow never drops: nothing of it leaves, and everything is counted.
		name: "drops_mode_exports_context_drop_and_rest_and_discards_windows_without_drop",
		opts: []Option{WithExport(ExportPolicy{Mode: ExportDrops, DropContext: 2})},
		run: func(h *harness) {
			other := udpClient
			other.SrcPort++
			for n := range 6 {
				base := time.Duration(n) * ms
				p := onServer(0xffff888100002200+uint64(n)<<8, udpClient, TCP{})
				h.ev(base, p, stRecv)
				if n == 3 {
					h.ev(base+5*us, p, stKfree, drop("NO_SOCKET", "__udp4_lib_rcv+0x5a1"))
				} else {
					h.ev(base+5*us, p, stConsume)
				}
				q := onServer(0xffff888100003200+uint64(n)<<8, other, TCP{})
				h.ev(base+10*us, q, stRecv)
				h.ev(base+15*us, q, stConsume)
			}
			h.flush(sec)
		},
	},
	{
		// A flow whose only frees with a reason are normal ends exports nothing in drops
		// mode: a FIN purged from a closed socket's queue is no drop.
		name: "drops_mode_discards_a_window_whose_frees_are_normal_ends",
		opts: []Option{WithExport(ExportPolicy{Mode: ExportDrops})},
		run: func(h *harness) {
			p := onServer(0xffff888100002000, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001})
			h.ev(0, p, stRecv)
			h.ev(5*us, p, stKfree, normalFree("NOT_SPECIFIED", "tcp_rcv_state_process+0x3a1"))
			q := onServer(0xffff888100002100, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 1001, Ack: 5001})
			h.ev(ms, q, stRecv)
			h.ev(ms+5*us, q, stKfree, normalFree("QUEUE_PURGE", "sk_stream_kill_queues+0x5e"))
			h.flush(sec)
		},
	},
	{
		// A window closed by max_packets while one of its packets is still on its way:
		// in drops mode its fate waits for that packet, whose drop exports the window
		// (held packets, the drop and the root) after the next window has opened.
		name: "drops_mode_late_drop_exports_window_closed_meanwhile",
		opts: []Option{WithExport(ExportPolicy{Mode: ExportDrops}), WithWindow(30*sec, 60*sec, 2, 2*sec)},
		run: func(h *harness) {
			a := onServer(0xffff888100004200, udpClient, TCP{})
			h.ev(0, a, stRecv)
			h.ev(5*us, a, stConsume)
			slow := onServer(0xffff888100004300, udpClient, TCP{})
			h.ev(ms, slow, stRecv)
			third := onServer(0xffff888100004400, udpClient, TCP{})
			h.ev(2*ms, third, stRecv) // the window is full: closes, the next one opens
			h.ev(2*ms+5*us, third, stConsume)
			h.ev(3*ms, slow, stKfree, drop("QDISC_DROP", "__dev_queue_xmit+0x7d"))
			h.flush(sec)
		},
	},
}

// Retransmissions and ICMP errors: a packet span of its own in the trace of the flow it
// belongs to, linked to what it repeats, or filed by the header it quotes.
var retransmitAndICMPScenarios = []struct {
	name string
	opts []Option
	run  func(h *harness)
}{
	{
		// The client's SYN is dropped by an nft rule in the server's namespace; a second
		// later TCP sends it again as a new skb: a packet span of its own with its real
		// headers, marked as a retransmission and linked to the first. Before the first
		// went out, the neighbour code cloned it to choose its ARP probe's source and
		// consumed the clone at once: that copy carried the SYN nowhere, so the first
		// SYN is no retransmission of it.
		name: "retransmitted_syn_links_to_the_dropped_first",
		run: func(h *harness) {
			probe := onClient(0xffff888100004f00, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			probe.len = 60
			h.ev(0, probe, stConsume)
			for n, at := range []time.Duration{35 * us, sec + 35*us} {
				syn := onClient(0xffff888100005000+uint64(n)<<8, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
				h.ev(at, syn, stQueue)
				h.ev(at+2*us, syn, stXmit)
				h.ev(at+10*us, syn, stRecv, dev(3, "veth1", nsServer))
				h.ev(at+15*us, syn, stKfree, dev(3, "veth1", nsServer), drop("NETFILTER_DROP", "nft_do_chain+0x1f3"))
			}
			h.flush(3 * sec)
		},
	},
	{
		// As above, with the kernel's word: after the second SYN's copy went out,
		// tcp:tcp_retransmit_skb names the segment (the socket's tuple, the seq and flags
		// of the write-queue skb, which is not on the wire) and becomes a stage of that
		// copy's packet span. The same word for a segment no packet span was recognised
		// as repeating (a first sighting; a segment whose copy was never seen) starts no
		// packet span: it is dropped and counted.
		name: "retransmitted_syn_has_the_tcp_retransmit_skb_stage",
		run: func(h *harness) {
			// The write-queue skb: no device, no length on the wire.
			const queued = 0xffff888100007000
			synAgain := pkt{skb: queued, tuple: tcpClient, tcp: TCP{Flags: tcpSYN, Seq: 1000}, netns: nsClient}
			for n, at := range []time.Duration{0, sec} {
				syn := onClient(0xffff888100005000+uint64(n)<<8, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
				h.ev(at, syn, stQueue)
				h.ev(at+2*us, syn, stXmit)
				// The first time, the SYN's only packet span is its first sighting.
				h.ev(at+5*us, synAgain, stRetx)
				h.ev(at+10*us, syn, stRecv, dev(3, "veth1", nsServer))
				h.ev(at+15*us, syn, stKfree, dev(3, "veth1", nsServer), drop("NETFILTER_DROP", "nft_do_chain+0x1f3"))
			}
			unseen := pkt{skb: queued, tuple: tcpClient, tcp: TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001, DataLen: 100}, netns: nsClient}
			h.ev(2*sec, unseen, stRetx)
			h.flush(3 * sec)
		},
	},
	{
		// A data segment lost on the way is sent again twice: both repeats link to the
		// first sighting. Pure ACKs repeat their sequence number and are not repeats; a
		// copy of a segment still on its way (a clone no probe saw) is not one either.
		name: "retransmitted_data_segment_links_to_its_first_sighting",
		run: func(h *harness) {
			data := TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001, DataLen: 100}
			first := onClient(0xffff888100005100, tcpClient, data)
			first.len = 166
			h.ev(0, first, stQueue)
			copyOf := onClient(0xffff888100005200, tcpClient, data)
			copyOf.len = 166
			h.ev(1*us, copyOf, stCopy)
			h.ev(2*us, copyOf, stConsume)
			h.ev(5*us, first, stKfree, drop("QDISC_DROP", "__dev_queue_xmit+0x7d"))
			ack := onClient(0xffff888100005300, tcpClient, TCP{Flags: tcpACK, Seq: 1101, Ack: 5001})
			h.ev(10*ms, ack, stQueue)
			h.ev(10*ms+5*us, ack, stConsume)
			ackAgain := onClient(0xffff888100005400, tcpClient, TCP{Flags: tcpACK, Seq: 1101, Ack: 5001})
			h.ev(20*ms, ackAgain, stQueue)
			h.ev(20*ms+5*us, ackAgain, stConsume)
			for n, at := range []time.Duration{200 * ms, 600 * ms} {
				again := onClient(0xffff888100005500+uint64(n)<<8, tcpClient, data)
				again.len = 166
				h.ev(at, again, stQueue)
				h.ev(at+5*us, again, stConsume)
			}
			h.flush(2 * sec)
		},
	},
	{
		// Only the most recent segments are remembered: the oldest, forgotten, is not
		// recognised when sent again, and the forgetting is counted.
		name: "segment_memory_full_forgets_the_oldest_and_counts",
		opts: []Option{WithSegmentMemory(2)},
		run: func(h *harness) {
			for n, seq := range []uint32{1001, 1101, 1201, 1001} {
				p := onClient(0xffff888100005600+uint64(n)<<8, tcpClient, TCP{Flags: tcpACK, Seq: seq, Ack: 5001, DataLen: 100})
				h.ev(time.Duration(n)*ms, p, stQueue)
				h.ev(time.Duration(n)*ms+5*us, p, stConsume)
			}
			h.flush(sec)
		},
	},
	{
		// The server answers a datagram to its closed port with an ICMP port unreachable
		// quoting it: the answer is a packet span in the UDP flow's trace, with its type
		// and code. An echo request is ICMP too, with its own type.
		name: "icmp_port_unreachable_joins_the_udp_flow_it_answers",
		run: func(h *harness) {
			dgram := onServer(0xffff888100005a00, udpClient, TCP{})
			h.ev(0, dgram, stRecv)
			h.ev(5*us, dgram, stKfree, drop("NO_SOCKET", "__udp4_lib_rcv+0x5a1"))
			unreach := onServer(0xffff888100005b00, icmpFromServer, TCP{})
			unreach.len = 70
			h.ev(10*us, unreach, stQueue, icmp(3, 3, udpClient))
			h.ev(12*us, unreach, stRecv, dev(2, "veth0", nsClient), icmp(3, 3, udpClient))
			h.ev(15*us, unreach, stConsume, dev(2, "veth0", nsClient), icmp(3, 3, udpClient))
			echo := onClient(0xffff888100005c00, icmpEcho, TCP{})
			h.ev(ms, echo, stQueue, icmp(8, 0, Tuple{}))
			h.ev(ms+5*us, echo, stConsume, icmp(8, 0, Tuple{}))
			h.flush(sec)
		},
	},
	{
		// A router on the way cannot forward a full-sized IPv6 segment and answers with
		// packet too big: its ICMPv6 error is a packet span in the TCP flow's trace, even
		// seen before any packet of the flow.
		name: "icmpv6_packet_too_big_joins_the_tcp_flow_it_answers",
		run: func(h *harness) {
			tooBig := pkt{skb: 0xffff888100005d00, tuple: icmp6FromHop, ifindex: 2, ifname: "veth0", netns: nsClient, len: 1280}
			h.ev(0, tooBig, stRecv, icmp(2, 0, tcp6Client))
			h.ev(5*us, tooBig, stConsume, icmp(2, 0, tcp6Client))
			ack := pkt{skb: 0xffff888100005e00, tuple: tcp6Server, tcp: TCP{Flags: tcpACK, Seq: 9001, Ack: 2001}, ifindex: 2, ifname: "veth0", netns: nsClient, len: 72}
			h.ev(ms, ack, stRecv)
			h.ev(ms+5*us, ack, stConsume)
			h.flush(sec)
		},
	},
}

func TestScenariosExportTheirGoldenSpanTrees(t *testing.T) {
	for _, sc := range append(scenarios, retransmitAndICMPScenarios...) {
		t.Run(sc.name, func(t *testing.T) {
			h := newHarness(sc.opts...)
			sc.run(h)
			st := h.s.Stats()
			checkGolden(t, sc.name, render(h.sink.spans(), st))
			if st.PacketsOpen != 0 || st.WindowsOpen != 0 {
				t.Errorf("after flush: %d packets and %d windows still open", st.PacketsOpen, st.WindowsOpen)
			}
		})
	}
}
