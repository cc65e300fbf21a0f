package spanner

import "sync/atomic"

// Stats counts what the Spanner did since it was created. Gauges say "open" or "held";
// every other field only grows.
type Stats struct {
	Events uint64 // events handled
	// EventsNoFlow and PacketsNoFlow count events and packets discarded because the
	// packet ended before any of its events carried a valid tuple.
	EventsNoFlow  uint64
	PacketsNoFlow uint64

	PacketsStarted uint64
	PacketsCloned  uint64 // started by a clone event (skb_clone), included in PacketsStarted
	PacketsFreed   uint64 // ended by consume_skb, or by kfree_skb without a drop
	PacketsDropped uint64 // ended by kfree_skb with a drop reason
	PacketsTimeout uint64 // no event for the packet timeout
	PacketsEvicted uint64 // ended early because the packet table was full
	PacketsFlushed uint64 // ended by Flush
	PacketsReused  uint64 // ended when their address came back as a new skb (freed unseen)
	PacketsOpen    uint64 // gauge
	// PacketsHeld is a gauge: ended packets export mode drops keeps until their window
	// has a drop.
	PacketsHeld uint64

	FlowsOpened   uint64 // flow entries created for a 5-tuple not remembered
	WindowsOpened uint64 // traces started
	WindowsOpen   uint64 // gauge
	// WindowsRandomTraceID counts windows whose trace ID is random, not derived from
	// the connection: not TCP, or the connection's SYN and SYN-ACK were never seen.
	// Other hosts cannot put their spans of such a window into the same trace.
	WindowsRandomTraceID uint64

	// Windows closed, by cause.
	WindowsFIN           uint64
	WindowsRST           uint64
	WindowsIdle          uint64
	WindowsMaxDuration   uint64
	WindowsMaxPackets    uint64
	WindowsNewConnection uint64 // a SYN with a new sequence number reused the 5-tuple
	WindowsEvicted       uint64 // open flows evicted because the flow table was full
	WindowsShutdown      uint64

	// AliasesLearned counts translated tuples (NAT) remembered as another name of a
	// flow; AliasesEvicted those forgotten early because the alias table was full, after
	// which a packet seen only with that tuple starts a flow of its own.
	AliasesLearned uint64
	AliasesEvicted uint64

	// Retransmits counts TCP packets recognised as retransmissions of a segment seen
	// before; SegmentsForgotten the segments forgotten early because the segment table
	// was full, whose retransmission is then not recognised.
	Retransmits       uint64
	SegmentsForgotten uint64
	// RetransmitsUnmatched counts tcp:tcp_retransmit_skb events dropped because no open
	// packet span was recognised as their retransmission.
	RetransmitsUnmatched uint64

	StagesTruncated uint64 // stage spans not kept: over the per-packet stage limit
	Spans           uint64 // spans handed to the sink

	// Spans not exported, by cause. Every span a packet or a window makes is either in
	// Spans or in exactly one of these.
	SpansSampledOut uint64 // of flows head sampling (export sample ratio) left out
	// SpansNoDrop are the spans of windows that closed without a drop in export mode
	// drops: the packets held for them, later packets of theirs, and their roots.
	SpansNoDrop uint64
	// SpansHeldEvicted are the spans of held packets discarded to keep a window within
	// its drop context, or all windows within the held packets limit.
	SpansHeldEvicted uint64
	// SpansRateLimited are the spans of packet span groups and roots that did not fit
	// under the spans-per-second cap.
	SpansRateLimited uint64
	// SpansCapped are the spans of packets past correlate.max_packets in an exchange.
	SpansCapped uint64

	// --correlate http. RequestsCorrelated opened an exchange (a valid, sampled
	// traceparent); RequestsUnsampled had a valid one that was not sampled;
	// RequestsRepeated were seen before (a retransmission, or both ends on this host).
	RequestsCorrelated uint64
	RequestsUnsampled  uint64
	RequestsRepeated   uint64
	// ExchangePackets are packets put under an exchange (exported, held or capped).
	ExchangePackets uint64
	// Exchanges exported, by why: quiet (linger after the data was acknowledged), idle
	// (unacknowledged data, the flow idle timeout), max_duration (open for the flow max
	// duration), flow_close, evicted (table full), shutdown.
	ExchangesQuiet, ExchangesIdle, ExchangesMaxDuration, ExchangesFlowClose, ExchangesEvicted, ExchangesShutdown uint64
	// ConnsEvicted are connections forgotten with their requests because the table was
	// full; ExchangeLinksDropped links from a flow root to an exchange past its bound.
	ConnsEvicted         uint64
	ExchangeLinksDropped uint64
}

// counters are written by the ring reader and read by anyone through Stats.
type counters struct {
	events, eventsNoFlow, packetsNoFlow            atomic.Uint64
	packetsStarted, packetsCloned, packetsOpen     atomic.Uint64
	packetsHeld                                    atomic.Uint64
	packetsEnded                                   [endCauses]atomic.Uint64
	flowsOpened, windowsOpened, windowsOpen        atomic.Uint64
	windowsRandom                                  atomic.Uint64
	windowsClosed                                  [closeCauses]atomic.Uint64
	aliasesLearned, aliasesEvicted                 atomic.Uint64
	retransmits, segmentsForgotten                 atomic.Uint64
	retransmitsUnmatched                           atomic.Uint64
	stagesTruncated, spans                         atomic.Uint64
	spansSampledOut, spansNoDrop, spansHeldEvicted atomic.Uint64
	spansRateLimited, spansCapped                  atomic.Uint64
	requestsCorrelated, requestsUnsampled          atomic.Uint64
	requestsRepeated, exchangePackets              atomic.Uint64
	exchangesEnded                                 [exchangeEnds]atomic.Uint64
	connsEvicted, exchangeLinksDropped             atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Events:               c.events.Load(),
		EventsNoFlow:         c.eventsNoFlow.Load(),
		PacketsNoFlow:        c.packetsNoFlow.Load(),
		PacketsStarted:       c.packetsStarted.Load(),
		PacketsCloned:        c.packetsCloned.Load(),
		PacketsFreed:         c.packetsEnded[endFreed].Load(),
		PacketsDropped:       c.packetsEnded[endDropped].Load(),
		PacketsTimeout:       c.packetsEnded[endTimeout].Load(),
		PacketsEvicted:       c.packetsEnded[endEvicted].Load(),
		PacketsFlushed:       c.packetsEnded[endFlush].Load(),
		PacketsReused:        c.packetsEnded[endReused].Load(),
		PacketsOpen:          c.packetsOpen.Load(),
		PacketsHeld:          c.packetsHeld.Load(),
		FlowsOpened:          c.flowsOpened.Load(),
		WindowsOpened:        c.windowsOpened.Load(),
		WindowsOpen:          c.windowsOpen.Load(),
		WindowsRandomTraceID: c.windowsRandom.Load(),
		WindowsFIN:           c.windowsClosed[closeFIN].Load(),
		WindowsRST:           c.windowsClosed[closeRST].Load(),
		WindowsIdle:          c.windowsClosed[closeIdle].Load(),
		WindowsMaxDuration:   c.windowsClosed[closeMaxDuration].Load(),
		WindowsMaxPackets:    c.windowsClosed[closeMaxPackets].Load(),
		WindowsNewConnection: c.windowsClosed[closeNewConnection].Load(),
		WindowsEvicted:       c.windowsClosed[closeEvicted].Load(),
		WindowsShutdown:      c.windowsClosed[closeShutdown].Load(),
		AliasesLearned:       c.aliasesLearned.Load(),
		AliasesEvicted:       c.aliasesEvicted.Load(),
		Retransmits:          c.retransmits.Load(),
		SegmentsForgotten:    c.segmentsForgotten.Load(),
		RetransmitsUnmatched: c.retransmitsUnmatched.Load(),
		StagesTruncated:      c.stagesTruncated.Load(),
		Spans:                c.spans.Load(),
		SpansSampledOut:      c.spansSampledOut.Load(),
		SpansNoDrop:          c.spansNoDrop.Load(),
		SpansHeldEvicted:     c.spansHeldEvicted.Load(),
		SpansRateLimited:     c.spansRateLimited.Load(),
		SpansCapped:          c.spansCapped.Load(),
		RequestsCorrelated:   c.requestsCorrelated.Load(),
		RequestsUnsampled:    c.requestsUnsampled.Load(),
		RequestsRepeated:     c.requestsRepeated.Load(),
		ExchangePackets:      c.exchangePackets.Load(),
		ExchangesQuiet:       c.exchangesEnded[exchangeQuiet].Load(),
		ExchangesIdle:        c.exchangesEnded[exchangeIdle].Load(),
		ExchangesMaxDuration: c.exchangesEnded[exchangeMaxDuration].Load(),
		ExchangesFlowClose:   c.exchangesEnded[exchangeFlowClose].Load(),
		ExchangesEvicted:     c.exchangesEnded[exchangeEvicted].Load(),
		ExchangesShutdown:    c.exchangesEnded[exchangeShutdown].Load(),
		ConnsEvicted:         c.connsEvicted.Load(),
		ExchangeLinksDropped: c.exchangeLinksDropped.Load(),
	}
}

// decrement is how a gauge goes down with unsigned atomics.
const decrement = ^uint64(0)
