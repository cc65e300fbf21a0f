package spanner

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// attr returns the value of key on sp.
func attr(sp Span, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range sp.Attrs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// roots returns the root spans the sink got, in export order.
func (r *recordSink) roots() []Span {
	var out []Span
	for _, sp := range r.spans() {
		if sp.ParentID == (SpanID{}) {
			out = append(out, sp)
		}
	}
	return out
}

// udpPacket plays one received and consumed datagram.
func (h *harness) udpPacket(at time.Duration, skb uint64, tu Tuple) { h.tcpPacket(at, skb, tu, TCP{}) }

// tcpPacket plays one received and consumed segment.
func (h *harness) tcpPacket(at time.Duration, skb uint64, tu Tuple, tcp TCP) {
	p := onServer(skb, tu, tcp)
	h.ev(at, p, stRecv)
	h.ev(at+5*us, p, stConsume)
}

func TestEveryCloseCauseNamesItselfAndTheNextWindowLinksBack(t *testing.T) {
	for _, tc := range []struct {
		cause string
		opts  []Option
		// run closes the flow's first window by the cause, then sends one more packet
		// of the flow, unless the cause leaves no flow to continue.
		run    func(h *harness)
		linked bool // the second window links to the first
	}{
		{"fin", nil, func(h *harness) {
			h.tcpPacket(0, 0xffff888100010000, tcpClient, TCP{Flags: tcpFIN | tcpACK, Seq: 2000, Ack: 6000})
			h.tick(2*sec + 5*us)
			h.tcpPacket(3*sec, 0xffff888100010100, tcpServer, TCP{Flags: tcpACK, Seq: 6000, Ack: 2001})
		}, true},
		{"rst", nil, func(h *harness) {
			h.tcpPacket(0, 0xffff888100010000, tcpClient, TCP{Flags: tcpRST, Seq: 2000})
			h.tick(2*sec + 5*us)
			h.tcpPacket(3*sec, 0xffff888100010100, tcpServer, TCP{Flags: tcpRST, Seq: 6000})
		}, true},
		{"idle", nil, func(h *harness) {
			h.udpPacket(0, 0xffff888100010000, udpClient)
			h.tick(31 * sec)
			h.udpPacket(32*sec, 0xffff888100010100, udpClient)
		}, true},
		{"max_duration", []Option{WithWindow(30*sec, 10*sec, 200, 2*sec)}, func(h *harness) {
			h.udpPacket(0, 0xffff888100010000, udpClient)
			h.udpPacket(9*sec, 0xffff888100010100, udpServer)
			h.tick(10 * sec)
			h.udpPacket(11*sec, 0xffff888100010200, udpClient)
		}, true},
		{"max_packets", []Option{WithWindow(30*sec, 60*sec, 2, 2*sec)}, func(h *harness) {
			for n := range 3 {
				h.udpPacket(time.Duration(n)*ms, 0xffff888100010000+uint64(n)<<8, udpClient)
			}
		}, true},
		{"new_connection", nil, func(h *harness) {
			h.tcpPacket(0, 0xffff888100010000, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
			h.tcpPacket(ms, 0xffff888100010100, tcpClient, TCP{Flags: tcpSYN, Seq: 2000})
		}, true},
		{"evicted", []Option{WithLimits(1, 100, 64)}, func(h *harness) {
			h.udpPacket(0, 0xffff888100010000, udpClient)
			other := udpClient
			other.SrcPort++
			h.udpPacket(ms, 0xffff888100010100, other) // evicts the first flow
			h.udpPacket(2*ms, 0xffff888100010200, udpClient)
		}, false},
		{"shutdown", nil, func(h *harness) {
			h.udpPacket(0, 0xffff888100010000, udpClient)
		}, false},
	} {
		t.Run(tc.cause, func(t *testing.T) {
			h := newHarness(tc.opts...)
			tc.run(h)
			h.s.Flush(h.s.now + int64(sec))
			roots := h.sink.roots()
			if len(roots) == 0 {
				t.Fatal("no root exported")
			}
			first := roots[0]
			if v, _ := attr(first, attrkey.FlowClose); v.AsString() != tc.cause {
				t.Errorf("first window closed by %q, want %q", v.AsString(), tc.cause)
			}
			if len(first.Links) != 0 {
				t.Errorf("first window links to %v", first.Links)
			}
			var next *Span
			for i := range roots[1:] {
				// The evicting flow's window is another flow's: skip it.
				if sameFlow(roots[1+i], first) {
					next = &roots[1+i]
					break
				}
			}
			switch {
			case tc.cause == "shutdown":
				if next != nil {
					t.Errorf("a window after shutdown: %+v", next)
				}
			case next == nil:
				t.Fatal("the flow's next window was not exported")
			case tc.linked && (len(next.Links) != 1 || next.Links[0].TraceID != first.TraceID || next.Links[0].SpanID != first.SpanID ||
				next.Links[0].RandomTraceID != first.RandomTraceID):
				t.Errorf("next window links %+v, want the first window's root %x/%x", next.Links, first.TraceID, first.SpanID)
			case !tc.linked && len(next.Links) != 0:
				t.Errorf("next window of a forgotten flow links %+v", next.Links)
			}
			if next != nil && next.TraceID == first.TraceID {
				t.Error("the next window shares the first one's trace")
			}
		})
	}
}

// sameFlow compares the client and server that two roots name.
func sameFlow(a, b Span) bool {
	for _, k := range []attribute.Key{attrkey.SourceAddress, attrkey.SourcePort, attrkey.DestinationAddress, attrkey.DestinationPort, attrkey.NetworkTransport} {
		va, _ := attr(a, k)
		vb, _ := attr(b, k)
		if va != vb {
			return false
		}
	}
	return true
}

func TestDerivedTraceIDRecipeIsStable(t *testing.T) {
	key, _ := newFlowKey(tcpServer)
	// The recipe spelled out byte by byte, independently of appendFlowKey.
	var in []byte
	in = append(in, "pktspan trace v1"...)
	in = append(in, protoTCP)
	in = append(in, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1) // 10.0.0.1, the lower endpoint
	in = binary.BigEndian.AppendUint16(in, 43210)
	in = append(in, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2)
	in = binary.BigEndian.AppendUint16(in, 80)
	in = binary.BigEndian.AppendUint32(in, 1000)
	in = binary.BigEndian.AppendUint32(in, 3)
	sum := sha256.Sum256(in)
	got := derivedTraceID(key, 1000, 3)
	if want := TraceID(sum[:16]); got != want {
		t.Errorf("derivedTraceID = %x, the documented recipe gives %x", got, want)
	}
	// Pinned: hosts running different versions must keep agreeing.
	if h := hex.EncodeToString(got[:]); h != pinnedTraceID {
		t.Errorf("derivedTraceID = %s, pinned %s: the derivation changed", h, pinnedTraceID)
	}
}

const pinnedTraceID = "83e422900016c99581a86a5f67f22f09"

// connection plays one TCP connection between tcpClient and tcpServer as the client's
// host sees it (sent segments queued and transmitted, received ones received and
// consumed) or as the server's host does. fromSynAck starts at the SYN-ACK, as a host
// that missed the SYN.
func connection(h *harness, clientSide, fromSynAck bool) {
	segments := []struct {
		fromClient bool
		tcp        TCP
	}{
		{true, TCP{Flags: tcpSYN, Seq: 1000}},
		{false, TCP{Flags: tcpSYN | tcpACK, Seq: 5000, Ack: 1001}},
		{true, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001}},
		{true, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 5001}},
		{false, TCP{Flags: tcpACK | 0x08, Seq: 5001, Ack: 1101}},
	}
	// The two hosts see different addresses and times for the same segments.
	base, skew := uint64(0xffff888100020000), time.Duration(0)
	if !clientSide {
		base, skew = 0xffff888200020000, 37*us
	}
	for n, seg := range segments {
		if fromSynAck && n == 0 {
			continue
		}
		tu := tcpClient
		if !seg.fromClient {
			tu = tcpServer
		}
		at := time.Duration(n)*ms + skew
		p := onClient(base+uint64(n)<<8, tu, seg.tcp)
		if seg.fromClient == clientSide {
			h.ev(at, p, stQueue)
			h.ev(at+2*us, p, stXmit)
			h.ev(at+3*us, p, stConsume)
		} else {
			h.ev(at, p, stRecv)
			h.ev(at+5*us, p, stConsume)
		}
	}
	h.flush(sec)
}

func TestClientAndServerHostsDeriveTheSameTraceID(t *testing.T) {
	key, _ := newFlowKey(tcpClient)
	want := derivedTraceID(key, 1000, 0)
	spanIDs := map[SpanID]bool{}
	for _, host := range []struct {
		name                   string
		clientSide, fromSynAck bool
	}{
		{"client", true, false},
		{"server", false, false},
		{"server that missed the SYN", false, true},
	} {
		h := randomHarness()
		connection(h, host.clientSide, host.fromSynAck)
		spans := h.sink.spans()
		if len(spans) == 0 {
			t.Fatalf("%s: nothing exported", host.name)
		}
		for _, sp := range spans {
			if sp.TraceID != want || sp.RandomTraceID {
				t.Fatalf("%s: span %s in trace %x (random %v), want derived %x", host.name, sp.Name, sp.TraceID, sp.RandomTraceID, want)
			}
			if spanIDs[sp.SpanID] {
				t.Errorf("%s: span ID %x repeats across hosts", host.name, sp.SpanID)
			}
			spanIDs[sp.SpanID] = true
		}
		if st := h.s.Stats(); st.WindowsRandomTraceID != 0 {
			t.Errorf("%s: %d random windows", host.name, st.WindowsRandomTraceID)
		}
	}
}

func TestEachWindowOfAConnectionDerivesItsOwnTraceID(t *testing.T) {
	h := newHarness(WithWindow(30*sec, 60*sec, 2, 2*sec))
	h.tcpPacket(0, 0xffff888100030000, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
	for n := 1; n < 6; n++ {
		h.tcpPacket(time.Duration(n)*ms, 0xffff888100030000+uint64(n)<<8, tcpServer, TCP{Flags: tcpACK, Seq: 5000, Ack: 1001})
	}
	h.flush(sec)
	key, _ := newFlowKey(tcpClient)
	roots := h.sink.roots()
	if len(roots) != 3 {
		t.Fatalf("%d windows, want 3", len(roots))
	}
	for i, r := range roots {
		if want := derivedTraceID(key, 1000, uint32(i)); r.TraceID != want || r.RandomTraceID {
			t.Errorf("window %d: trace %x (random %v), want %x", i, r.TraceID, r.RandomTraceID, want)
		}
	}
	if roots[0].TraceID == roots[1].TraceID || roots[1].TraceID == roots[2].TraceID {
		t.Error("windows share a trace ID")
	}
}

func TestTraceIDIsRandomWithoutTheConnectionsISN(t *testing.T) {
	for _, tc := range []struct {
		name string
		tu   Tuple
		tcp  TCP
	}{
		{"tcp joined mid-connection", tcpClient, TCP{Flags: tcpACK, Seq: 1001, Ack: 5001}},
		{"udp", udpClient, TCP{}},
		{"icmp", icmpEcho, TCP{}},
		{"ipv6 udp", udp6, TCP{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := randomHarness()
			h.tcpPacket(0, 0xffff888100040000, tc.tu, tc.tcp)
			h.flush(sec)
			spans := h.sink.spans()
			if len(spans) != 4 {
				t.Fatalf("%d spans, want the packet's 3 and the root", len(spans))
			}
			for _, sp := range spans {
				if !sp.RandomTraceID || sp.TraceID != spans[0].TraceID {
					t.Errorf("span %s: trace %x random %v, want the window's random trace", sp.Name, sp.TraceID, sp.RandomTraceID)
				}
			}
			if st := h.s.Stats(); st.WindowsRandomTraceID != 1 {
				t.Errorf("WindowsRandomTraceID = %d, want 1", st.WindowsRandomTraceID)
			}
		})
	}
}
