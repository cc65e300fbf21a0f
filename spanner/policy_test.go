package spanner

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// exportedSKBs lists the skb addresses of the packet spans the sink got, in order.
func (r *recordSink) exportedSKBs() []string {
	var out []string
	for _, g := range r.groups {
		if g[0].Name == packetSpanName {
			out = append(out, fmt.Sprintf("%#x", g[0].SKB))
		}
	}
	return out
}

func TestHeldPacketsLimitDiscardsTheOldestOfAllWindows(t *testing.T) {
	h := newHarness(WithExport(ExportPolicy{Mode: ExportDrops, Held: 3}))
	other := udpClient
	other.SrcPort++
	h.udpPacket(0, 0xffff888100090000, udpClient) // the oldest: discarded for room
	h.udpPacket(1*ms, 0xffff888100090100, other)
	h.udpPacket(2*ms, 0xffff888100090200, udpClient)
	h.udpPacket(3*ms, 0xffff888100090300, other)
	if st := h.s.Stats(); st.PacketsHeld != 3 || st.SpansHeldEvicted != 3 || st.Spans != 0 {
		t.Fatalf("stats %+v: want 3 held, one packet's 3 spans discarded, nothing exported", st)
	}
	p := onServer(0xffff888100090400, udpClient, TCP{})
	h.ev(4*ms, p, stRecv)
	h.ev(4*ms+5*us, p, stKfree, drop("NO_SOCKET", ""))
	want := []string{"0xffff888100090200", "0xffff888100090400"}
	if got := h.sink.exportedSKBs(); !slices.Equal(got, want) {
		t.Errorf("exported %v, want the window's surviving held packet then its drop %v", got, want)
	}
	h.flush(sec)
	st := h.s.Stats()
	if st.PacketsHeld != 0 || st.SpansNoDrop != 2*3+1 {
		t.Errorf("stats %+v: want the other window's 2 held packets and root counted as without a drop", st)
	}
}

// spansMade is every span a Spanner made, exported or counted out.
func spansMade(st Stats) uint64 {
	return st.Spans + st.SpansSampledOut + st.SpansNoDrop + st.SpansHeldEvicted + st.SpansRateLimited
}

func TestEverySpanIsExportedOrCountedByCause(t *testing.T) {
	play := func(opts ...Option) (Stats, *discardSink) {
		sink := &discardSink{}
		f := newFlowFeeder(New(sink, append(opts, WithLogger(discardLog))...))
		f.nat, f.dropEvery, f.cloneEvery = true, 97, 13
		f.run(20000)
		f.s.Flush(f.now + int64(time.Minute))
		return f.s.Stats(), sink
	}
	base := everyFeature()[:1] // the same windows, everything exported
	all, _ := play(base...)
	if all.Spans == 0 || all.SpansSampledOut+all.SpansNoDrop+all.SpansHeldEvicted+all.SpansRateLimited != 0 {
		t.Fatalf("mode all: %+v", all)
	}
	for _, tc := range []struct {
		name   string
		policy ExportPolicy
		causes func(Stats) []uint64 // the counters this policy must have used
	}{
		{"drops", ExportPolicy{Mode: ExportDrops, DropContext: 8, Held: 1024},
			func(st Stats) []uint64 { return []uint64{st.SpansNoDrop, st.SpansHeldEvicted} }},
		{"sampled", ExportPolicy{SampleRatio: 0.5},
			func(st Stats) []uint64 { return []uint64{st.SpansSampledOut} }},
		{"capped", ExportPolicy{MaxSpansPerSecond: 100_000},
			func(st Stats) []uint64 { return []uint64{st.SpansRateLimited} }},
		{"every policy", func() ExportPolicy {
			p := everyFeaturePolicy
			p.MaxSpansPerSecond = 20_000 // a burst smaller than what the short run exports
			return p
		}(),
			func(st Stats) []uint64 {
				return []uint64{st.SpansNoDrop, st.SpansHeldEvicted, st.SpansSampledOut, st.SpansRateLimited}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, sink := play(append(base, WithExport(tc.policy))...)
			if got := spansMade(st); got != all.Spans {
				t.Errorf("%d spans exported or counted, mode all exported %d: %+v", got, all.Spans, st)
			}
			if uint64(sink.spans) != st.Spans || st.Spans == 0 {
				t.Errorf("sink got %d spans, Stats.Spans %d", sink.spans, st.Spans)
			}
			for i, n := range tc.causes(st) {
				if n == 0 {
					t.Errorf("cause %d of this policy counted nothing: %+v", i, st)
				}
			}
			if st.PacketsHeld != 0 || st.PacketsOpen != 0 || st.WindowsOpen != 0 {
				t.Errorf("after flush: %+v", st)
			}
		})
	}
}

func TestFlushLeavesNoWindowOrHeldPacket(t *testing.T) {
	sink := &discardSink{}
	f := newEveryFeatureFeeder(sink)
	f.run(5000)
	f.s.Flush(f.now + int64(time.Minute))
	s := f.s
	if s.windows.used() != 0 || s.held.used() != 0 ||
		len(s.aliases.index) != 0 || len(s.flows.index) != 0 || len(s.packets.index) != 0 {
		t.Errorf("after flush: %d windows, %d held, %d aliases, %d flows, %d packets",
			s.windows.used(), s.held.used(), len(s.aliases.index), len(s.flows.index), len(s.packets.index))
	}
}

// udpFlow is the n-th of many distinct UDP flows.
func udpFlow(n int) Tuple {
	tu := udpClient
	tu.Src = netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)})
	return tu
}

func TestSampleRatioKeepsTheSameFlowsOnEveryHost(t *testing.T) {
	const flows, ratio = 2000, 0.25
	var kept [2][]string
	for host := range kept {
		h := randomHarness(WithExport(ExportPolicy{SampleRatio: ratio}))
		for n := range flows {
			tu := udpFlow(n)
			if host == 1 {
				tu = reverse(tu) // the other host sees the reply first
			}
			h.udpPacket(time.Duration(n)*us, 0xffff888100100000+uint64(n)<<8, tu)
		}
		h.flush(sec)
		for _, r := range h.sink.roots() {
			// The client's address tells the flows apart, whichever end the root names.
			for _, k := range []attribute.Key{attrkey.SourceAddress, attrkey.DestinationAddress} {
				if v, _ := attr(r, k); v.AsString() != udpClient.Dst.String() {
					kept[host] = append(kept[host], v.AsString())
				}
			}
		}
		slices.Sort(kept[host])
		st := h.s.Stats()
		if spansMade(st) != flows*4 || st.SpansSampledOut == 0 {
			t.Errorf("host %d: %+v, want %d spans exported or sampled out", host, st, flows*4)
		}
	}
	if !slices.Equal(kept[0], kept[1]) {
		t.Error("the hosts kept different flows")
	}
	if got := float64(len(kept[0])) / flows; got < ratio-0.05 || got > ratio+0.05 {
		t.Errorf("kept %.3f of the flows, want about %.2f", got, ratio)
	}
}

func TestClonesFollowTheirFlowsSamplingDecision(t *testing.T) {
	const ratio = 0.5
	var in, out Tuple
	for n := 0; !in.Valid() || !out.Valid(); n++ {
		tu := udpFlow(n)
		k, _ := newFlowKey(tu)
		if sampled(k, ratio) {
			in = tu
		} else {
			out = tu
		}
	}
	h := newHarness(WithExport(ExportPolicy{SampleRatio: ratio}))
	// A clone of a packet of the flow left out, carrying the other flow's tuple (as after
	// an encapsulation), follows its parent's window.
	parent := onServer(0xffff888100110000, out, TCP{})
	h.ev(0, parent, stRecv)
	clone := onServer(0xffff888100110100, in, TCP{})
	h.ev(1*us, clone, stClone, exit(0), cloneOf(parent.skb))
	h.ev(2*us, clone, stConsume)
	h.ev(3*us, parent, stConsume)
	if st := h.s.Stats(); st.Spans != 0 || st.SpansSampledOut != 2*3 {
		t.Errorf("stats %+v: want the parent's and the clone's spans sampled out", st)
	}
	// A clone whose parent was never seen follows the window of its own tuple: out.
	sampledOut := h.s.Stats().SpansSampledOut
	kept := onServer(0xffff888100110200, in, TCP{})
	h.ev(10*us, kept, stRecv)
	h.ev(11*us, kept, stClone, exit(0), cloneOf(0xffff888100110300), seenAs(out), func(ev *Event) { ev.SKB = 0xffff888100110400 })
	h.ev(12*us, kept, stConsume)
	h.ev(13*us, onServer(0xffff888100110400, out, TCP{}), stConsume)
	if got := h.sink.exportedSKBs(); !slices.Equal(got, []string{"0xffff888100110200"}) {
		t.Errorf("exported %v, want the packet of the kept flow only", got)
	}
	if st := h.s.Stats(); st.SpansSampledOut <= sampledOut {
		t.Errorf("stats %+v: the orphan clone's spans were not sampled out", st)
	}
}

func TestRateCapSkipsGroupsThatDoNotFitAndRefillsWithEventTime(t *testing.T) {
	// 10 spans a second; packets of 3 spans.
	h := newHarness(WithLimits(100, 100, 4), WithExport(ExportPolicy{MaxSpansPerSecond: 10}))
	for n := range 4 {
		h.udpPacket(time.Duration(n)*ms, 0xffff888100120000+uint64(n)<<8, udpClient)
	}
	if st := h.s.Stats(); st.Spans != 9 || st.SpansRateLimited != 3 {
		t.Errorf("at once: %+v, want 3 packets exported and the 4th's 3 spans limited", st)
	}
	h.udpPacket(sec, 0xffff888100120400, udpClient)
	h.flush(2 * sec)
	if st := h.s.Stats(); st.Spans != 13 || st.SpansRateLimited != 3 {
		t.Errorf("a second later: %+v, want the 5th packet and the root exported", st)
	}
}

func TestRateCapAlwaysFitsAWholePacketGroup(t *testing.T) {
	// A cap below one packet's span count would otherwise export no packet at all.
	h := newHarness(WithLimits(100, 100, 4), WithExport(ExportPolicy{MaxSpansPerSecond: 1}))
	h.udpPacket(0, 0xffff888100130000, udpClient)
	if st := h.s.Stats(); st.Spans != 3 {
		t.Errorf("stats %+v: want the packet exported", st)
	}
}

func TestWithExportKeepsDefaultsForUnsetFields(t *testing.T) {
	d := defaultSettings().export
	for _, tc := range []struct {
		name string
		in   ExportPolicy
		want ExportPolicy
	}{
		{"zero", ExportPolicy{}, d},
		{"negative", ExportPolicy{DropContext: -1, SampleRatio: -0.5, MaxSpansPerSecond: -3, Held: -1}, d},
		{"set", ExportPolicy{Mode: ExportDrops, DropContext: 4, SampleRatio: 0.1, MaxSpansPerSecond: 1000, Held: 50},
			ExportPolicy{Mode: ExportDrops, DropContext: 4, SampleRatio: 0.1, MaxSpansPerSecond: 1000, Held: 50}},
		{"ratio above one", ExportPolicy{SampleRatio: 2}, d},
	} {
		s := defaultSettings()
		WithExport(tc.in)(&s)
		if s.export != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, s.export, tc.want)
		}
	}
	s := defaultSettings()
	WithNATAliases(0)(&s)
	if s.aliases != 16384 {
		t.Errorf("WithNATAliases(0): %d, want the default", s.aliases)
	}
}
