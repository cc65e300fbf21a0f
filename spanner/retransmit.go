package spanner

// segmentKey names one TCP segment as its sender sent it: the packet's tuple as first
// seen, its sequence number, and whether it is a SYN (a SYN and the first data share no
// number, but a SYN-ACK and the server's first data would).
type segmentKey struct {
	tuple Tuple
	seq   uint32
	syn   bool
}

// segment is what the Spanner remembers of a segment it saw: the packet span of its
// first sighting, which a retransmission links to, and the latest skb that carried it.
type segment struct {
	first      Link
	lastSKB    uint64
	lastSpanID SpanID
}

// noteSegment recognises p, a packet that has just joined its window, as a
// retransmission when an earlier packet carried the same segment (same tuple and
// direction, same sequence number) and is no longer on its way: then the sender sent
// it again. A segment still on its way as another skb is a copy (a clone no probe saw,
// a GSO segment), not a retransmission: the kernel does not retransmit a segment still
// in the host's queues. Only segments that occupy sequence space count: SYN, FIN or
// data; pure ACKs repeat their number all the time. A clone of a packet open in a window
// is a copy by definition (a packet tap's, a bridge's flood); a clone of an skb no window
// holds is how TCP sends each segment (its write-queue skb looks followed when a delivered
// skb freed unseen left its address behind). An skb first seen at its normal free
// (freeOnly) is a copy too: it carried the segment nowhere,
// like the clone of a packet waiting for ARP that the neighbour code takes to choose the
// probe's source address and consumes at once. Memory is the bounded segment table: a
// segment forgotten is not recognised when repeated, and counted.
func (s *Spanner) noteSegment(p *packet, freeOnly bool) {
	if p.tuple.Proto != protoTCP || p.linkSpan != (SpanID{}) || freeOnly || p.tcp.DataLen == 0 && p.tcp.Flags&(tcpSYN|tcpFIN) == 0 {
		return
	}
	k := segmentKey{tuple: p.tuple, seq: p.tcp.Seq, syn: p.tcp.Flags&tcpSYN != 0}
	if i, ok := s.segments.index[k]; ok {
		s.segments.lru.moveFront(i)
		seg := &s.segments.slab[i]
		if s.onItsWay(seg.lastSKB, seg.lastSpanID) {
			return
		}
		p.retransmitOf = seg.first
		seg.lastSKB, seg.lastSpanID = p.skb, p.id
		s.stats.retransmits.Add(1)
		return
	}
	if s.segments.full() {
		s.segments.release(s.segments.lru.tail)
		s.stats.segmentsForgotten.Add(1)
	}
	w := &s.windows.slab[p.win]
	s.segments.slab[s.segments.alloc(k)] = segment{
		first:      Link{TraceID: w.trace, SpanID: p.id, RandomTraceID: w.random, Role: RolePacket},
		lastSKB:    p.skb,
		lastSpanID: p.id,
	}
}

// onItsWay reports whether the packet span id of skb is open, neither freed nor
// delivered to a socket.
func (s *Spanner) onItsWay(skb uint64, id SpanID) bool {
	i, ok := s.packets.index[skb]
	if !ok {
		return false
	}
	p := &s.packets.slab[i]
	return p.id == id && !p.freed && !p.delivered
}

// retransmitStage puts ev, the kernel's word that it sent a segment again
// (tcp:tcp_retransmit_skb), on the packet span of that retransmission: the open packet
// noteSegment recognised as the latest sighting of the same segment, same tuple and
// direction. The copy's own events come first: the kernel reports after sending it. With
// no such packet (the copy went unseen or already ended, its segment forgotten, a
// translated tuple the sender's socket does not name) the event is dropped and counted:
// its SKB is the write-queue skb, never on the wire, so it starts no packet span.
func (s *Spanner) retransmitStage(ev *Event) {
	k := segmentKey{tuple: ev.Tuple, seq: ev.TCP.Seq, syn: ev.TCP.Flags&tcpSYN != 0}
	si, ok := s.segments.index[k]
	if !ok {
		s.stats.retransmitsUnmatched.Add(1)
		return
	}
	seg := &s.segments.slab[si]
	pi, ok := s.packets.index[seg.lastSKB]
	if !ok || s.packets.slab[pi].id != seg.lastSpanID || s.packets.slab[pi].retransmitOf.SpanID == (SpanID{}) {
		s.stats.retransmitsUnmatched.Add(1)
		return
	}
	s.packets.lru.moveFront(pi)
	p := &s.packets.slab[pi]
	p.events++
	p.last = max(p.last, ev.TimeUnixNano)
	s.addStage(p, ev, ev.Stage.Name)
}
