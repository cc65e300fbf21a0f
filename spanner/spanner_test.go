package spanner

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

func TestFlowKeyIsSameForBothDirections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fwd, rev Tuple
	}{
		{"tcp", tcpClient, tcpServer},
		{"udp", udpClient, udpServer},
		{"same address, ports decide", Tuple{Src: addr("127.0.0.1"), Dst: addr("127.0.0.1"), SrcPort: 5000, DstPort: 80, Proto: protoTCP},
			Tuple{Src: addr("127.0.0.1"), Dst: addr("127.0.0.1"), SrcPort: 80, DstPort: 5000, Proto: protoTCP}},
		{"icmp ignores ports", Tuple{Src: addr("fd00::1"), Dst: addr("fd00::2"), SrcPort: 8, Proto: protoICMPv6},
			Tuple{Src: addr("fd00::2"), Dst: addr("fd00::1"), DstPort: 3, Proto: protoICMPv6}},
	} {
		k1, a1 := newFlowKey(tc.fwd)
		k2, a2 := newFlowKey(tc.rev)
		if k1 != k2 {
			t.Errorf("%s: keys differ: %+v vs %+v", tc.name, k1, k2)
		}
		if a1 == a2 {
			t.Errorf("%s: both directions report the source as the same endpoint", tc.name)
		}
	}
	other := udpClient
	other.Proto = protoTCP
	if k1, _ := newFlowKey(udpClient); k1 == func() flowKey { k, _ := newFlowKey(other); return k }() {
		t.Error("udp and tcp with the same addresses and ports share a key")
	}
}

func TestFlagsProtocolsAndNetfilterValuesAreNamedOrNumbered(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{tcpFlags[tcpSYN|tcpACK], "SYN,ACK"},
		{tcpFlags[0xff], "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR"},
		{tcpFlags[tcpFIN|0x08|tcpACK], "FIN,PSH,ACK"},
		{transportName(protoICMPv6), "icmp"},
		{transportName(132), "132"},
		{rootName(132), "flow ip"},
		{nfHookName(4), "POSTROUTING"},
		{nfHookName(5), "5"},
		{nfPFName(10), "ipv6"},
		{nfPFName(7), "bridge"},
		{nfPFName(12), "12"},
		{nfVerdictName(0), "DROP"},
		{nfVerdictName(0x00010003), "QUEUE"}, // queue number in the upper bits
		{nfVerdictName(9), "9"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestHexCacheFormatsAndReplacesCollidingAddresses(t *testing.T) {
	var c hexCache
	if got := c.get(0xffff888100000100); got != "0xffff888100000100" {
		t.Fatalf("got %q", got)
	}
	// Fill the slot of the first address with another and come back.
	first := uint64(0xffff888100000100)
	slot := (first * 0x9e3779b97f4a7c15) >> 52
	got := c.get(first)
	var other uint64
	for x := first + 1; ; x++ {
		if (x*0x9e3779b97f4a7c15)>>52 == slot {
			other = x
			break
		}
	}
	if got := c.get(other); got != "0x"+strconv.FormatUint(other, 16) {
		t.Errorf("colliding address: got %q", got)
	}
	if again := c.get(first); again != "0xffff888100000100" {
		t.Errorf("after collision: got %q", again)
	}
	if got != "0xffff888100000100" {
		t.Errorf("an earlier string changed to %q", got)
	}
}

func TestRandomIDsAreNonZeroAndDistinct(t *testing.T) {
	g := newRandomIDs()
	seen := map[SpanID]bool{}
	for range 1000 {
		if g.traceID() == (TraceID{}) {
			t.Fatal("zero trace id")
		}
		id := g.spanID()
		if id == (SpanID{}) || seen[id] {
			t.Fatalf("zero or repeated span id %x", id)
		}
		seen[id] = true
	}
	a, b := newRandomIDs(), newRandomIDs()
	if a.spanID() == b.spanID() {
		t.Error("two generators start with the same id: not seeded")
	}
}

func TestExportedGroupIsPacketFirstThenStagesByStartTime(t *testing.T) {
	h := newHarness()
	p := onServer(0xffff888100002000, udpClient, TCP{})
	// Events of one skb from two CPUs can arrive slightly out of order.
	h.ev(0, p, stRecv)
	h.ev(10*us, p, stUDPRcv)
	h.ev(5*us, p, stIPRcv)
	h.ev(12*us, p, stConsume)
	if len(h.sink.groups) != 1 {
		t.Fatalf("got %d groups, want 1", len(h.sink.groups))
	}
	g := h.sink.groups[0]
	if g[0].Name != packetSpanName {
		t.Fatalf("first span is %q, want the packet", g[0].Name)
	}
	var names []string
	for _, sp := range g[1:] {
		names = append(names, sp.Name)
		if sp.ParentID != g[0].SpanID || sp.TraceID != g[0].TraceID {
			t.Errorf("%s is not a child of the packet span", sp.Name)
		}
	}
	want := []string{"net:netif_receive_skb", "ip_rcv_core", "udp_rcv", "skb:consume_skb"}
	if len(names) != len(want) {
		t.Fatalf("stages %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("stages %v, want %v", names, want)
		}
	}
}

func TestNewSkbAtFreedAddressEndsPacketWaitingForExits(t *testing.T) {
	h := newHarness()
	p := onServer(0xffff888100002100, udpClient, TCP{})
	h.ev(0, p, stUDPRcv, enter)
	h.ev(2*us, p, stKfree, drop("NO_SOCKET", ""))
	// udp_rcv's exit is lost; the slab hands the address to a new skb.
	h.ev(50*us, p, stRecv)
	if len(h.sink.groups) != 1 {
		t.Fatalf("got %d groups, want the dropped packet alone", len(h.sink.groups))
	}
	g := h.sink.groups[0]
	if g[0].Status != StatusError || g[0].EndUnixNano != t0+int64(2*us) {
		t.Errorf("dropped packet: status %d end %d", g[0].Status, g[0].EndUnixNano-t0)
	}
	if st := h.s.Stats(); st.PacketsStarted != 2 || st.PacketsDropped != 1 || st.PacketsOpen != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRootNamesTheClientWhenFirstPacketIsSynAck(t *testing.T) {
	h := newHarness()
	h.ev(0, onClient(0xffff888100002200, tcpServer, TCP{Flags: tcpSYN | tcpACK}), stConsume)
	h.flush(sec)
	roots := h.sink.roots()
	if len(roots) != 1 {
		t.Fatalf("%d roots, want 1", len(roots))
	}
	if v, _ := attr(roots[0], attrkey.SourceAddress); v.AsString() != "10.0.0.1" {
		t.Errorf("root source.address %q, want the client 10.0.0.1", v.AsString())
	}
	if v, _ := attr(roots[0], attrkey.SourcePort); v.AsInt64() != 43210 {
		t.Errorf("root source.port %d, want the client's 43210", v.AsInt64())
	}
}

func TestPacketOfClosedWindowStaysInItsTrace(t *testing.T) {
	h := newHarness(WithPacketTimeout(time.Hour))
	p := onServer(0xffff888100002300, udpClient, TCP{})
	h.ev(0, p, stRecv)
	h.tick(31 * sec) // the window closes idle while the packet is still open
	h.ev(31*sec, p, stConsume)
	if len(h.sink.groups) != 2 {
		t.Fatalf("got %d groups, want root then packet", len(h.sink.groups))
	}
	root, pkt := h.sink.groups[0][0], h.sink.groups[1][0]
	if pkt.TraceID != root.TraceID || pkt.ParentID != root.SpanID {
		t.Error("the packet left the trace of the window it joined")
	}
}

func TestStatsCanBeReadWhileEventsAreHandled(t *testing.T) {
	h := newHarness()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				_ = h.s.Stats()
			}
		}
	})
	for n := range 1000 {
		p := onServer(0xffff888100000000+uint64(n%64)<<8, udpClient, TCP{})
		h.ev(time.Duration(n)*us, p, stRecv)
		h.ev(time.Duration(n)*us+100, p, stConsume)
	}
	close(done)
	wg.Wait()
	if st := h.s.Stats(); st.Events != 2000 || st.PacketsFreed != 1000 {
		t.Errorf("stats %+v", st)
	}
}

// discardSink counts spans without keeping them, as a sink that cannot keep up would.
type discardSink struct{ spans int }

func (d *discardSink) Export(g []Span) { d.spans += len(g) }
func (d *discardSink) Shutdown(context.Context) error {
	return nil
}
func (d *discardSink) Stats() SinkStats { return SinkStats{} }

func TestSteadyStateAllocatesFarLessThanOnePerSpan(t *testing.T) {
	for _, tc := range []struct {
		name string
		feed func(Sink) *flowFeeder
	}{
		{"tcp flows", func(sink Sink) *flowFeeder { return newFlowFeeder(New(sink, WithLogger(discardLog))) }},
		{"every feature", newEveryFeatureFeeder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &discardSink{}
			f := tc.feed(sink)
			f.run(20000) // warm up tables, held records, buffers and caches
			before := sink.spans
			const packets = 2000
			allocs := testing.AllocsPerRun(5, func() { f.run(packets) })
			spans := float64(sink.spans-before) / 6 // AllocsPerRun runs once more to warm up
			if spans == 0 {
				t.Fatal("no span exported")
			}
			if perSpan := allocs / spans; perSpan > 0.05 {
				t.Errorf("%.0f allocations for %.0f spans: %.3f per span", allocs, spans, perSpan)
			}
		})
	}
}
