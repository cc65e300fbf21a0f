package spanner

import (
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

// run feeds packets packets of 12 events each.
func (f *flowFeeder) run(packets int) {
	ev := &f.ev
	for range packets {
		f.n++
		tu := f.flows[f.n%uint64(len(f.flows))]
		flags := uint8(tcpACK | 0x08)
		if f.n&1 == 1 {
			tu.Src, tu.Dst, tu.SrcPort, tu.DstPort = tu.Dst, tu.Src, tu.DstPort, tu.SrcPort
			flags = tcpACK
		}
		skb := 0xffff888100000000 + (f.n%4096)<<8
		for _, fs := range feederStages {
			f.now += 200
			*ev = Event{
				TimeUnixNano: f.now, SKB: skb, Stage: fs.st, Kind: fs.kind,
				Netns: nsServer, Ifindex: 3, Ifname: "veth1", Len: 1500,
				Tuple: tu, TCP: TCP{Flags: flags, Seq: uint32(f.n), Ack: uint32(f.n)},
			}
			if fs.st == stNF && fs.kind == KindExit {
				ev.Netfilter, ev.Retval = Netfilter{Hook: 1, PF: 2, Verdict: 1, Valid: true}, 1
			}
			f.s.HandleEvent(ev)
		}
		if f.n%16 == 0 {
			f.s.Tick(f.now)
		}
	}
}

func BenchmarkSpannerTCPFlow(b *testing.B) {
	sink := &discardSink{}
	f := newFlowFeeder(New(sink, WithWindow(30*time.Second, 60*time.Second, 200, 2*time.Second)))
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
