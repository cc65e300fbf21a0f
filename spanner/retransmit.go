package spanner

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

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
	key        segmentKey
	first      Link
	lastSKB    uint64
	lastSpanID SpanID
}

// segmentTable is the bounded table of recent segments, indexed by a 64-bit fold of
// their key. Nearly every segment is new, so the table is searched, added to and evicted
// from for every one: a map keyed by the whole key (some 60 bytes, hashed and compared
// field by field) cost a tenth of pktspan's CPU with every packet traced, and one keyed
// by a fold is a fifth of its size. Two keys may fold alike: each slot keeps its own key,
// a search matches only that, and an added segment takes the slot of one it folds with.
type segmentTable struct {
	table[uint64, segment]
	seed [2]uint64
}

func newSegmentTable(limit int) segmentTable {
	// Seeded at random, so that no sender can choose segments that fold alike.
	return segmentTable{table: newTable[uint64, segment](limit), seed: [2]uint64{rand.Uint64(), rand.Uint64()}}
}

// fold mixes k's words two at a time by multiplication (as wyhash does).
func (t *segmentTable) fold(k *segmentKey) uint64 {
	src, dst := k.tuple.Src.As16(), k.tuple.Dst.As16()
	le := binary.LittleEndian
	h := mix(le.Uint64(src[:8])^t.seed[0], le.Uint64(src[8:])^t.seed[1])
	h = mix(h^le.Uint64(dst[:8]), le.Uint64(dst[8:])^t.seed[1])
	rest := uint64(k.tuple.SrcPort)<<48 | uint64(k.tuple.DstPort)<<32 | uint64(k.seq)
	var syn uint64
	if k.syn {
		syn = 1
	}
	return mix(h^rest, uint64(k.tuple.Proto)<<1|syn^t.seed[0])
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// search folds k and looks the fold up: the slot it names, or -1 for none, and whether
// that slot holds k (it may hold a key that folds alike).
func (t *segmentTable) search(k *segmentKey) (h uint64, i int32, found bool) {
	h = t.fold(k)
	i, ok := t.index[h]
	if !ok {
		return h, -1, false
	}
	return h, i, t.slab[i].key == *k
}

// find returns the slot of segment k.
func (t *segmentTable) find(k segmentKey) (int32, bool) {
	_, i, found := t.search(&k)
	return i, found
}

// add remembers seg, which search did not find, as most recently used: h and at are
// what search returned for its key. A key that folds alike gives up slot at; else the
// least recently used segment is evicted when the table is full. It reports whether it
// forgot a segment.
func (t *segmentTable) add(h uint64, at int32, seg segment) (forgot bool) {
	if at >= 0 {
		t.release(at)
		forgot = true
	} else if t.full() {
		t.release(t.lru.tail)
		forgot = true
	}
	t.slab[t.alloc(h)] = seg
	return forgot
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
	// One fold and one search serve both the match and the add.
	h, i, found := s.segments.search(&k)
	if found {
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
	w := &s.windows.slab[p.win]
	if s.segments.add(h, i, segment{
		key:        k,
		first:      Link{TraceID: w.trace, SpanID: p.id, RandomTraceID: w.random, Role: RolePacket},
		lastSKB:    p.skb,
		lastSpanID: p.id,
	}) {
		s.stats.segmentsForgotten.Add(1)
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
	si, ok := s.segments.find(k)
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
