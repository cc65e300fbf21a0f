package spanner

import "sync/atomic"

// Stats counts what the Spanner did since it was created. Gauges say "open"; every other
// field only grows.
type Stats struct {
	Events uint64 // events handled
	// EventsNoFlow and PacketsNoFlow count events and packets discarded because the
	// packet ended before any of its events carried a valid tuple.
	EventsNoFlow  uint64
	PacketsNoFlow uint64

	PacketsStarted uint64
	PacketsFreed   uint64 // ended by consume_skb, or by kfree_skb without a drop
	PacketsDropped uint64 // ended by kfree_skb with a drop reason
	PacketsTimeout uint64 // no event for the packet timeout
	PacketsEvicted uint64 // ended early because the packet table was full
	PacketsFlushed uint64 // ended by Flush
	PacketsReused  uint64 // ended when their address came back as a new skb (freed unseen)
	PacketsOpen    uint64 // gauge

	FlowsOpened   uint64 // flow entries created for a 5-tuple not remembered
	WindowsOpened uint64 // traces started
	WindowsOpen   uint64 // gauge

	// Windows closed, by cause.
	WindowsFIN         uint64
	WindowsRST         uint64
	WindowsIdle        uint64
	WindowsMaxDuration uint64
	WindowsMaxPackets  uint64
	WindowsEvicted     uint64 // open flows evicted because the flow table was full
	WindowsShutdown    uint64

	StagesTruncated uint64 // stage spans not kept: over the per-packet stage limit
	Spans           uint64 // spans handed to the sink
}

// counters are written by the ring reader and read by anyone through Stats.
type counters struct {
	events, eventsNoFlow, packetsNoFlow     atomic.Uint64
	packetsStarted, packetsOpen             atomic.Uint64
	packetsEnded                            [endCauses]atomic.Uint64
	flowsOpened, windowsOpened, windowsOpen atomic.Uint64
	windowsClosed                           [closeCauses]atomic.Uint64
	stagesTruncated, spans                  atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Events:             c.events.Load(),
		EventsNoFlow:       c.eventsNoFlow.Load(),
		PacketsNoFlow:      c.packetsNoFlow.Load(),
		PacketsStarted:     c.packetsStarted.Load(),
		PacketsFreed:       c.packetsEnded[endFreed].Load(),
		PacketsDropped:     c.packetsEnded[endDropped].Load(),
		PacketsTimeout:     c.packetsEnded[endTimeout].Load(),
		PacketsEvicted:     c.packetsEnded[endEvicted].Load(),
		PacketsFlushed:     c.packetsEnded[endFlush].Load(),
		PacketsReused:      c.packetsEnded[endReused].Load(),
		PacketsOpen:        c.packetsOpen.Load(),
		FlowsOpened:        c.flowsOpened.Load(),
		WindowsOpened:      c.windowsOpened.Load(),
		WindowsOpen:        c.windowsOpen.Load(),
		WindowsFIN:         c.windowsClosed[closeFIN].Load(),
		WindowsRST:         c.windowsClosed[closeRST].Load(),
		WindowsIdle:        c.windowsClosed[closeIdle].Load(),
		WindowsMaxDuration: c.windowsClosed[closeMaxDuration].Load(),
		WindowsMaxPackets:  c.windowsClosed[closeMaxPackets].Load(),
		WindowsEvicted:     c.windowsClosed[closeEvicted].Load(),
		WindowsShutdown:    c.windowsClosed[closeShutdown].Load(),
		StagesTruncated:    c.stagesTruncated.Load(),
		Spans:              c.spans.Load(),
	}
}

// decrement is how a gauge goes down with unsigned atomics.
const decrement = ^uint64(0)
