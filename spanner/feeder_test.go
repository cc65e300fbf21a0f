package spanner

import (
	"net/netip"
	"testing"
	"time"
)

// flowFeeder plays a realistic mix: many TCP connections on veth pairs, each packet a
// request or a reply passing tracepoints and function probes on both sides, with a Tick
// every simulated millisecond as the ring reader would do.
type flowFeeder struct {
	s     *Spanner
	now   int64
	n     uint64
	ev    Event
	flows []Tuple

	// Options for the mix with every feature on.
	nat        bool   // NAT box: netfilter translates, conntrack names the original tuple
	dropEvery  uint64 // every so many packets end in a drop; 0 for none
	cloneEvery uint64 // every so many packets are cloned, the clone sent and freed; 0 for none
	crossNetns bool   // packets are sent from the client's namespace, not the server's
}

func newFlowFeeder(s *Spanner) *flowFeeder {
	f := &flowFeeder{s: s, now: t0}
	for i := range 256 {
		tu := tcpClient
		tu.SrcPort = 30000 + uint16(i)
		f.flows = append(f.flows, tu)
	}
	return f
}

var feederStages = []struct {
	st   *Stage
	kind Kind
}{
	{stQueue, KindInstant},
	{stXmit, KindInstant},
	{stRecv, KindInstant},
	{stIPRcv, KindEnter},
	{stIPRcv, KindExit},
	{stNF, KindEnter},
	{stNF, KindExit},
	{stLocal, KindEnter},
	{stTCPRcv, KindEnter},
	{stConsume, KindInstant},
	{stTCPRcv, KindExit},
	{stLocal, KindExit},
}

// The stages where the packet arrives from the other end of the veth pair, where
// conntrack is attached, where the netfilter hook that translates returns, and the
// consume_skb a drop replaces.
const (
	feederRecvStage = 2
	feederCTStage   = 5
	feederNATStage  = 6
	feederFreeStage = 9
)

var (
	feederMasquerade = netip.MustParseAddr("10.0.1.1")
	feederBackend    = netip.MustParseAddr("10.0.1.2")
)

// translate is what the NAT box makes of the client's tuple c: its source masqueraded,
// its destination sent to the backend.
func translate(c Tuple) Tuple {
	return Tuple{Src: feederMasquerade, Dst: feederBackend, SrcPort: c.SrcPort + 10000, DstPort: 8080, Proto: c.Proto}
}

func reverse(t Tuple) Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// run feeds packets packets of 12 events each (more for clones).
func (f *flowFeeder) run(packets int) {
	ev := &f.ev
	for range packets {
		f.n++
		client := f.flows[f.n%uint64(len(f.flows))]
		reply := f.n&1 == 1
		// Before and after the NAT box's translation; the same without NAT.
		before, after := client, client
		flags := uint8(tcpACK | 0x08)
		if reply {
			before, after, flags = reverse(client), reverse(client), tcpACK
		}
		if f.nat {
			if reply {
				before = reverse(translate(client))
			} else {
				after = translate(client)
			}
		}
		drop := f.dropEvery > 0 && f.n%f.dropEvery == 0
		skb := 0xffff888100000000 + (f.n%4096)<<8
		for k, fs := range feederStages {
			f.now += 200
			tu := before
			if f.nat && k >= feederNATStage {
				tu = after
			}
			*ev = Event{
				TimeUnixNano: f.now, SKB: skb, Stage: fs.st, Kind: fs.kind,
				Netns: nsServer, Ifindex: 3, Ifname: "veth1", Len: 1500, Segments: uint16(f.n % 3),
				Tuple: tu, TCP: TCP{Flags: flags, Seq: uint32(f.n), Ack: uint32(f.n)},
			}
			if f.crossNetns && k < feederRecvStage {
				ev.Netns, ev.Ifindex, ev.Ifname = nsClient, 2, "veth0"
			}
			if f.nat && k >= feederCTStage {
				ev.CT = client
			}
			if fs.st == stNF && fs.kind == KindExit {
				ev.Netfilter, ev.Retval = Netfilter{Hook: 1, PF: 2, Verdict: 1, Valid: true}, 1
			}
			if k == feederFreeStage && drop {
				ev.Stage, ev.Drop, ev.DropReason = stKfree, true, "NETFILTER_DROP"
			}
			f.s.HandleEvent(ev)
			if k == 1 && f.cloneEvery > 0 && f.n%f.cloneEvery == 0 {
				f.clone(skb, tu)
			}
		}
		if f.n%16 == 0 {
			f.s.Tick(f.now)
		}
	}
}

// clone plays a clone of parent taken on transmit (as a tap or a retransmission
// would): made, queued and freed.
func (f *flowFeeder) clone(parent uint64, tu Tuple) {
	ev := &f.ev
	skb := parent + 0x80
	for _, st := range []*Stage{stClone, stQueue, stConsume} {
		f.now += 200
		*ev = Event{TimeUnixNano: f.now, SKB: skb, Stage: st, Netns: nsServer, Ifindex: 3, Ifname: "veth1", Len: 1500, Tuple: tu}
		if st == stClone {
			ev.Kind, ev.Parent = KindExit, parent
		}
		f.s.HandleEvent(ev)
	}
}

// everyFeaturePolicy holds packets for drops, samples half the flows and caps spans
// low enough to skip some once a run outlasts the cap's one-second burst: the mix would
// export about a million a second of its event time.
var everyFeaturePolicy = ExportPolicy{Mode: ExportDrops, DropContext: 8, SampleRatio: 0.5, MaxSpansPerSecond: 500_000, Held: 1024}

// everyFeature is the option set of the mix with every feature on; the window comes
// first, so that everyFeature()[:1] is the same mix exporting everything.
func everyFeature() []Option {
	return []Option{
		WithWindow(30*time.Second, 60*time.Second, 200, 2*time.Second),
		WithExport(everyFeaturePolicy),
		WithNATAliases(1024),
	}
}

func newEveryFeatureFeeder(sink Sink) *flowFeeder {
	f := newFlowFeeder(New(sink, append(everyFeature(), WithLogger(discardLog))...))
	f.nat, f.dropEvery, f.cloneEvery = true, 97, 13
	return f
}

func BenchmarkSpannerTCPFlow(b *testing.B) {
	sink := &discardSink{}
	f := newFlowFeeder(New(sink, WithWindow(30*time.Second, 60*time.Second, 200, 2*time.Second)))
	benchFeeder(b, f, sink)
}

// BenchmarkSpannerTCPFlowNetnsNamed is BenchmarkSpannerTCPFlow with packets crossing
// from the client's namespace into the server's and a namer naming both: every packet
// span and one stage of each packet carry a namespace's owner.
func BenchmarkSpannerTCPFlowNetnsNamed(b *testing.B) {
	sink := &discardSink{}
	f := newFlowFeeder(New(sink, WithWindow(30*time.Second, 60*time.Second, 200, 2*time.Second), WithNetnsNamer(testNamer)))
	f.crossNetns = true
	benchFeeder(b, f, sink)
}

// BenchmarkSpannerNATDropsSampled is the mix with every feature on: NAT with conntrack
// and aliases, export mode drops holding packets, head sampling at one half, a span
// cap, clones and GSO.
func BenchmarkSpannerNATDropsSampled(b *testing.B) {
	sink := &discardSink{}
	benchFeeder(b, newEveryFeatureFeeder(sink), sink)
}

func benchFeeder(b *testing.B, f *flowFeeder, sink *discardSink) {
	f.run(10000)
	before := sink.spans
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.run(1)
	}
	b.StopTimer()
	spans := float64(sink.spans - before)
	b.ReportMetric(spans/float64(b.N), "spans/op")
	b.ReportMetric(spans/b.Elapsed().Seconds(), "spans/s")
}
