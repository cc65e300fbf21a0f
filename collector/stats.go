package collector

import (
	"time"

	"github.com/pktspan/pktspan/bpf"
)

// Stats are the collector's counters: what the kernel sent and what was lost.
type Stats struct {
	EventsRead   uint64
	EventsLost   uint64 // ring buffer full: the kernel could not write them
	DecodeErrors uint64
	Tracked      uint64 // skbs the kernel started following
	TrackFailed  uint64 // skbs that matched but could not be remembered
	TrackStale   uint64 // remembered skbs freed unseen, forgotten when their address came back
	CallsFull    uint64 // function entries whose exit could not be awaited (call map full)
	// FreesNormal counts followed skbs that kfree_skb freed with a drop reason the probes
	// called a normal end (bpf/headers/drops.h), in every mode: the probes decide before
	// drops-only mode holds anything back or user space sees anything.
	FreesNormal uint64
	// Drops-only mode (filter.drops_only): the events the kernel kept in its per-CPU
	// trail, and what drops took of them.
	TrailEvents uint64 // events written to the trail
	TrailSent   uint64 // trail events sent with their skb's drop
	// TrailCut counts drops whose skb still had an event in its CPU's oldest trail
	// slot: events of it older than the trail may be missing from its packet span.
	TrailCut uint64
	// StackMissed counts drops left without a stack under --stack: the kernel could
	// not store it (table full, hash collision) or user space could not read it.
	StackMissed uint64
	// Requests is what --correlate http read.
	Requests RequestStats
	// RingDelayMax is the longest an event was seen to wait between its probe and the
	// reader (sampled: the first event after each poll, and every 64th).
	RingDelayMax time.Duration
	DetachTime   time.Duration
}

// Stats reads the counters, summing the kernel's per-CPU values.
func (c *Collector) Stats() Stats {
	s := Stats{EventsRead: c.eventsRead.Load(), DecodeErrors: c.decodeErrors.Load(), DetachTime: time.Duration(c.detachTime.Load()),
		RingDelayMax: time.Duration(c.ringDelayMax.Load())}
	if c.decoder != nil {
		s.Requests = c.decoder.requests.stats()
	}
	if c.coll == nil {
		return s
	}
	m := c.coll.Maps[bpf.TracepointsMapCounters]
	sum := func(id bpf.TracepointsCounterId) uint64 {
		var per []uint64
		if err := m.Lookup(uint32(id), &per); err != nil {
			return 0
		}
		var t uint64
		for _, v := range per {
			t += v
		}
		return t
	}
	s.EventsLost = sum(bpf.TracepointsCounterIdCOUNTER_RINGBUF_FULL)
	s.Tracked = sum(bpf.TracepointsCounterIdCOUNTER_TRACK_INSERT)
	s.TrackFailed = sum(bpf.TracepointsCounterIdCOUNTER_TRACK_FAIL)
	s.TrackStale = sum(bpf.TracepointsCounterIdCOUNTER_TRACK_STALE)
	s.CallsFull = sum(bpf.TracepointsCounterIdCOUNTER_CALLS_FULL)
	s.TrailEvents = sum(bpf.TracepointsCounterIdCOUNTER_TRAIL)
	s.TrailSent = sum(bpf.TracepointsCounterIdCOUNTER_TRAIL_SENT)
	s.TrailCut = sum(bpf.TracepointsCounterIdCOUNTER_TRAIL_CUT)
	s.FreesNormal = sum(bpf.TracepointsCounterIdCOUNTER_FREES_NORMAL)
	s.StackMissed = sum(bpf.TracepointsCounterIdCOUNTER_STACK_FAIL)
	s.Requests.TLSHellos = sum(bpf.TracepointsCounterIdCOUNTER_TLS_HELLO)
	if c.decoder != nil && c.decoder.stacks != nil {
		s.StackMissed += c.decoder.stacks.missed.Load()
	}
	return s
}
