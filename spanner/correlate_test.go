package spanner

import (
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

var (
	stEgress  = &Stage{Name: "cgroup:http_egress", Request: true}
	stIngress = &Stage{Name: "cgroup:http_ingress", Request: true, Received: true}

	appTrace  = TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	appParent = SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

const (
	psh    = 0x08
	ackPsh = tcpACK | psh
)

// corrOpts turn correlation on with small bounds and a short linger.
func corrOpts(maxPackets int) []Option {
	return []Option{WithCorrelation(CorrelateSettings{MaxPackets: maxPackets, Linger: 500 * time.Millisecond, Exchanges: 64})}
}

// requests is a Request stage's mod: the requests the segment starts.
func requests(rs ...Request) mod { return func(ev *Event) { ev.Requests = rs } }

// traced is a request whose traceparent is valid, with the given flags.
func traced(offset uint32, flags TraceFlags) Request {
	return Request{Offset: offset, Verdict: HeaderValid, TraceID: appTrace, ParentID: appParent, Flags: flags}
}

// segment is one skb's life on the client's veth: queued, then consumed (or dropped).
func (h *harness) segment(at time.Duration, skb uint64, tu Tuple, tcp TCP, mods ...mod) {
	p := onClient(skb, tu, tcp)
	h.ev(at, p, stQueue)
	h.ev(at+10*us, p, stConsume, mods...)
}

// droppedSegment is one skb dropped by nft on its way.
func (h *harness) droppedSegment(at time.Duration, skb uint64, tu Tuple, tcp TCP) {
	p := onClient(skb, tu, tcp)
	h.ev(at, p, stQueue)
	h.ev(at+10*us, p, stKfree, drop("NETFILTER_DROP", "nft_do_chain+0x1f3"))
}

// handshake opens the connection of tcpClient with ISNs 1000 (client) and 5000 (server).
func (h *harness) handshake() {
	h.segment(0, 0x100, tcpClient, TCP{Flags: tcpSYN, Seq: 1000, Window: 64240})
	h.segment(100*us, 0x200, tcpServer, TCP{Flags: tcpSYN | tcpACK, Seq: 5000, Ack: 1001, Window: 65160})
	h.segment(200*us, 0x300, tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001, Window: 502})
}

var correlationScenarios = []struct {
	name string
	opts []Option
	run  func(h *harness)
}{
	{
		// The request's segment, the server's ACK and reply, and the client's ACK go
		// under the exchange in the app's trace; the handshake and FIN stay in the flow's,
		// whose root links to the exchange.
		name: "correlate_request_and_reply_go_under_the_exchange",
		opts: corrOpts(64),
		run: func(h *harness) {
			h.handshake()
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress,
				requests(traced(0, FlagSampled|FlagRandom)))
			h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
			h.segment(2*ms, 0x500, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1081, DataLen: 300, Window: 509})
			h.segment(3*ms, 0x600, tcpClient, TCP{Flags: tcpACK, Seq: 1081, Ack: 5301, Window: 500})
			h.segment(10*ms, 0x700, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 1081, Ack: 5301, Window: 500})
			h.tick(600 * ms)
			h.flush(3 * sec)
		},
	},
	{
		// A reply segment dropped and sent again: the drop is an error packet, the
		// retransmission links to it in the app's trace, and the exchange is OK because
		// the client acknowledged the data afterwards.
		name: "correlate_recovered_drop_leaves_the_exchange_ok",
		opts: corrOpts(64),
		run: func(h *harness) {
			h.handshake()
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress,
				requests(traced(0, FlagSampled)))
			h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
			h.droppedSegment(2*ms, 0x500, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1081, DataLen: 300, Window: 509})
			h.segment(210*ms, 0x510, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1081, DataLen: 300, Window: 509})
			h.segment(211*ms, 0x600, tcpClient, TCP{Flags: tcpACK, Seq: 1081, Ack: 5301, Window: 500})
			h.tick(800 * ms)
			h.flush(3 * sec)
		},
	},
	{
		// Every copy of the request dropped and never acknowledged: the exchange is an
		// error with the drop's reason, exported when the flow goes idle.
		name: "correlate_black_hole_makes_the_exchange_an_error",
		opts: append(corrOpts(64), WithWindow(2*sec, time.Minute, 200, sec)),
		run: func(h *harness) {
			h.handshake()
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress,
				requests(traced(0, FlagSampled)))
			h.droppedSegment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80})
			h.droppedSegment(201*ms, 0x410, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80})
			h.droppedSegment(601*ms, 0x420, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80})
			// Linger passes, but the data is unacknowledged: the exchange waits.
			h.tick(1500 * ms)
			h.tick(3 * sec)
		},
	},
	{
		// An unsampled traceparent puts nothing in the app's trace; the next request's
		// range still starts where it does.
		name: "correlate_unsampled_request_stays_in_the_flow",
		opts: corrOpts(64),
		run: func(h *harness) {
			h.handshake()
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress,
				requests(traced(0, 0)))
			h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
			h.segment(2*ms, 0x500, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1081, DataLen: 300, Window: 509})
			h.flush(3 * sec)
		},
	},
	{
		// Two pipelined requests in one segment: the segment is the first's and links to
		// the second's exchange; the reply acknowledging both is the second's.
		name: "correlate_pipelined_requests_split_by_sequence",
		opts: corrOpts(64),
		run: func(h *harness) {
			h.handshake()
			second := traced(80, FlagSampled)
			second.ParentID = SpanID{0xbb, 1, 2, 3, 4, 5, 6, 7}
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 160}), stEgress,
				requests(traced(0, FlagSampled), second))
			h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 160, Window: 502})
			h.segment(2*ms, 0x500, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1161, DataLen: 300, Window: 509})
			h.flush(3 * sec)
		},
	},
	{
		// A reply of many segments past max_packets 4: the first, two more, and the last
		// go; the others are counted.
		name: "correlate_caps_packets_keeping_first_and_last",
		opts: corrOpts(4),
		run: func(h *harness) {
			h.handshake()
			h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress,
				requests(traced(0, FlagSampled)))
			h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
			for i := range 6 {
				seq := 5001 + uint32(i)*1000
				h.segment(time.Duration(2+i)*ms, 0x500+uint64(i), tcpServer, TCP{Flags: tcpACK, Seq: seq, Ack: 1081, DataLen: 1000, Window: 509})
			}
			h.segment(9*ms, 0x600, tcpClient, TCP{Flags: tcpACK, Seq: 1081, Ack: 11001, Window: 500})
			h.flush(3 * sec)
		},
	},
}

func TestCorrelationScenariosExportTheirGoldenSpanTrees(t *testing.T) {
	for _, sc := range correlationScenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := newHarness(sc.opts...)
			sc.run(h)
			checkGolden(t, sc.name, render(h.sink.spans(), h.s.Stats()))
		})
	}
}

// TestRequestRangesFollowSequenceNumbersAcrossWraparound places packets by sequence
// number and acknowledgement around requests whose ranges cross 2^32.
func TestRequestRangesFollowSequenceNumbersAcrossWraparound(t *testing.T) {
	var c conn
	c.insert(request{seq: 0xffffff00})
	c.insert(request{seq: 0x00000040}) // 0x140 bytes later, past the wrap
	c.insert(request{seq: 0x00000100})
	cases := []struct {
		name    string
		seq     uint32
		data    bool
		ack     uint32
		bySeq   int
		byAck   int
		comment string
	}{
		{"first byte of the first", 0xffffff00, true, 0xffffff00, 0, -1, "an ACK of nothing of it is no answer to it"},
		{"inside the first, before the wrap", 0xffffffff, true, 0xffffffff, 0, 0, ""},
		{"inside the first, after the wrap", 0x00000010, true, 0x00000010, 0, 0, ""},
		{"pure ACK at the second's first byte", 0x00000040, false, 0x00000040, 0, 0, "it follows the first's bytes"},
		{"data at the second's first byte", 0x00000040, true, 0x00000041, 1, 1, ""},
		{"last request, far on", 0x00010000, true, 0x00010000, 2, 2, ""},
		{"before every request", 0xfffffe00, true, 0xfffffe00, -1, -1, ""},
		{"another sequence space", 0x80000000, true, 0x80000000, -1, -1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.bySeq(tc.seq, tc.data); got != tc.bySeq {
				t.Errorf("bySeq(%#x, data=%v) = %d, want %d %s", tc.seq, tc.data, got, tc.bySeq, tc.comment)
			}
			if got := c.byAck(tc.ack); got != tc.byAck {
				t.Errorf("byAck(%#x) = %d, want %d %s", tc.ack, got, tc.byAck, tc.comment)
			}
		})
	}
}

// TestConnRemembersItsLatestRequestsInSequenceOrder inserts out of order and past the
// bound.
func TestConnRemembersItsLatestRequestsInSequenceOrder(t *testing.T) {
	var c conn
	for _, seq := range []uint32{100, 300, 200, 400, 500, 600, 700, 800, 900, 1000} {
		c.insert(request{seq: seq})
	}
	if c.n != connRequests {
		t.Fatalf("%d requests remembered, want %d", c.n, connRequests)
	}
	for i := 1; i < c.n; i++ {
		if !after(c.reqs[i].seq, c.reqs[i-1].seq) {
			t.Fatalf("requests out of order: %v", c.reqs[:c.n])
		}
	}
	if c.reqs[0].seq != 300 || c.has(100) {
		t.Errorf("oldest remembered %d, want 300 with 100 forgotten", c.reqs[0].seq)
	}
}

// TestRequestSeenLeavingAndArrivingCountsOnce gives the same request as the client's
// socket sent it and as the server's received it: one exchange.
func TestRequestSeenLeavingAndArrivingCountsOnce(t *testing.T) {
	h := newHarness(corrOpts(64)...)
	h.handshake()
	seg := onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80})
	h.ev(1*ms, seg, stEgress, requests(traced(0, FlagSampled)))
	h.ev(2*ms, seg, stIngress, requests(traced(0, FlagSampled)))
	h.flush(time.Second)
	st := h.s.Stats()
	if st.RequestsCorrelated != 1 || st.RequestsRepeated != 1 {
		t.Errorf("correlated %d repeated %d, want 1 and 1", st.RequestsCorrelated, st.RequestsRepeated)
	}
	exchanges := 0
	for _, sp := range h.sink.spans() {
		if sp.Role == RoleExchange {
			exchanges++
		}
	}
	if exchanges != 1 {
		t.Errorf("%d exchange spans, want 1", exchanges)
	}
}

// TestExchangeNamesLocalAndPeerFromTheSideThatSawTheRequest: a request leaving this host
// makes its sender local; one arriving makes its receiver local.
func TestExchangeNamesLocalAndPeerFromTheSideThatSawTheRequest(t *testing.T) {
	for _, tc := range []struct {
		stage     *Stage
		wantLocal string
	}{{stEgress, "10.0.0.1"}, {stIngress, "10.0.0.2"}} {
		h := newHarness(corrOpts(64)...)
		h.handshake()
		h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), tc.stage, requests(traced(0, FlagSampled)))
		h.segment(1*ms, 0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
		h.flush(time.Second)
		var local string
		for _, sp := range h.sink.spans() {
			if sp.Role != RoleExchange {
				continue
			}
			for _, kv := range sp.Attrs {
				if kv.Key == attrkey.NetworkLocalAddress {
					local = kv.Value.AsString()
				}
			}
		}
		if local != tc.wantLocal {
			t.Errorf("%s: network.local.address %q, want %q", tc.stage.Name, local, tc.wantLocal)
		}
	}
}

// TestExchangeTableBoundEvictsTheLeastRecentlyActive opens more exchanges than the
// table holds: the oldest is exported early and counted.
func TestExchangeTableBoundEvictsTheLeastRecentlyActive(t *testing.T) {
	h := newHarness(WithCorrelation(CorrelateSettings{MaxPackets: 8, Linger: time.Second, Exchanges: 2}))
	h.handshake()
	for i := range 3 {
		seq := 1001 + uint32(i)*80
		h.ev(time.Duration(1+i)*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: seq, Ack: 5001, DataLen: 80}), stEgress,
			requests(traced(0, FlagSampled)))
	}
	st := h.s.Stats()
	if st.ExchangesEvicted != 1 {
		t.Errorf("exchanges evicted %d, want 1", st.ExchangesEvicted)
	}
}

// lateRequestSegment is a correlated request whose segment was delivered and not freed
// where a probe sees it (it ends by reuse or timeout), and its reply.
func lateRequestSegment() *harness {
	h := newHarness(corrOpts(64)...)
	h.handshake()
	h.ev(1*ms, onClient(0, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80}), stEgress, requests(traced(0, FlagSampled)))
	late := onClient(0x400, tcpClient, TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 80, Window: 502})
	h.ev(1*ms, late, stQueue)
	h.ev(1*ms+10*us, late, stCopy)
	h.segment(2*ms, 0x500, tcpServer, TCP{Flags: ackPsh, Seq: 5001, Ack: 1081, DataLen: 300, Window: 509})
	return h
}

// appTracePackets counts the packet spans exported into the app's trace.
func appTracePackets(h *harness) int {
	n := 0
	for _, sp := range h.sink.spans() {
		if sp.Role == RolePacket && sp.TraceID == appTrace {
			n++
		}
	}
	return n
}

// TestExchangeWaitsForItsPacketsOnTheirWay: a delivered segment the kernel frees unseen
// ends late (by reuse or timeout); its exchange, past linger and settled, waits for it
// instead of leaving it to the flow's trace.
func TestExchangeWaitsForItsPacketsOnTheirWay(t *testing.T) {
	h := lateRequestSegment()
	h.segment(3*ms, 0x600, tcpClient, TCP{Flags: tcpACK, Seq: 1081, Ack: 5301, Window: 500})
	h.tick(900 * ms)
	if st := h.s.Stats(); st.ExchangesQuiet != 0 {
		t.Fatalf("the exchange was exported with a packet of it on its way")
	}
	h.tick(6 * sec) // the packet timeout ends the request's span
	h.tick(7 * sec)
	under := appTracePackets(h)
	if st := h.s.Stats(); st.ExchangesQuiet != 1 || under != 3 {
		t.Errorf("exchanges quiet %d, packets in the app's trace %d: want 1 and 3", st.ExchangesQuiet, under)
	}
}

// TestRetransmissionSentAsACloneOfAnUnseenSkbIsRecognised: TCP sends every segment as a
// clone of its write-queue skb, which pktspan follows when a delivered skb freed unseen
// left its address behind; such a clone carries the segment for real, so its repeat is
// a retransmission, while a clone of a packet open in a window stays a copy.
func TestRetransmissionSentAsACloneOfAnUnseenSkbIsRecognised(t *testing.T) {
	h := newHarness()
	h.handshake()
	seg := TCP{Flags: ackPsh, Seq: 1001, Ack: 5001, DataLen: 1000, Window: 502}
	first := onClient(0x400, tcpClient, seg)
	h.ev(1*ms, first, stClone, cloneOf(0xdead0))
	h.ev(1*ms+10*us, first, stKfree, drop("NETFILTER_DROP", "nft_do_chain+0x1f3"))
	again := onClient(0x410, tcpClient, seg)
	h.ev(201*ms, again, stClone, cloneOf(0xdead0))
	h.ev(201*ms+10*us, again, stConsume)
	// A copy of the open packet (a tap's) is no retransmission.
	tapped := onClient(0x420, tcpClient, seg)
	h.ev(300*ms, onClient(0x430, tcpClient, TCP{Flags: ackPsh, Seq: 2001, Ack: 5001, DataLen: 10}), stQueue)
	h.ev(300*ms+5*us, tapped, stClone, cloneOf(0x430))
	h.ev(300*ms+10*us, tapped, stConsume)
	h.flush(time.Second)
	if st := h.s.Stats(); st.Retransmits != 1 {
		t.Errorf("retransmits %d, want 1", st.Retransmits)
	}
}

// TestExchangeOfAClosedFlowWaitsForItsPacketsOnTheirWay: the flow's window closes (FIN
// and grace) while a delivered segment of the exchange is still open; the exchange goes
// when that segment ends, with it.
func TestExchangeOfAClosedFlowWaitsForItsPacketsOnTheirWay(t *testing.T) {
	h := lateRequestSegment()
	h.segment(3*ms, 0x700, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 1081, Ack: 5301, Window: 500})
	h.tick(3 * sec) // past the close grace: the window closes
	if st := h.s.Stats(); st.WindowsFIN != 1 || st.ExchangesFlowClose != 0 {
		t.Fatalf("windows closed by FIN %d, exchanges exported at flow close %d: want 1 and 0", st.WindowsFIN, st.ExchangesFlowClose)
	}
	h.tick(6 * sec) // the packet timeout ends the request's span
	under := appTracePackets(h)
	if st := h.s.Stats(); st.ExchangesFlowClose != 1 || under != 2 {
		t.Errorf("exchanges exported at flow close %d, packets in the app's trace %d: want 1 and 2", st.ExchangesFlowClose, under)
	}
}
