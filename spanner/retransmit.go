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

// segmentTable is the bounded table of recent segments: a set-associative cache. A
// segment's key folds to 64 bits, the fold picks a set of up to segmentWays slots, and
// within a set the least recently used slot gives way. Nearly every segment is new, so
// the table is searched, added to and evicted from for every one: a map keyed by the
// whole key cost a tenth of pktspan's CPU with every packet traced, and a map keyed by
// the fold, with an LRU list over the slots, still 8% (its inserts and deletes); a set
// is one cache line of folds and an eviction is a store. Two keys may fold alike: each
// slot keeps its own key, a search matches only that, and an added segment takes the
// slot of one it folds with.
type segmentTable struct {
	slab  []segment // slot set*ways+way
	folds []uint64  // the fold of each slot's key
	used  []uint64  // when each slot was last used (tick); 0 for an empty slot
	tick  uint64
	ways  int
	mask  uint64 // sets-1
	seed  [2]uint64
}

// segmentWays is the associativity: the slots one search looks through.
const segmentWays = 4

// newSegmentTable holds at most limit segments: as many sets of segmentWays slots as fit
// (a power of two), or one set of limit slots when fewer than segmentWays.
func newSegmentTable(limit int) segmentTable {
	ways := min(segmentWays, limit)
	sets := 1 << (bits.Len(uint(limit/ways)) - 1)
	n := sets * ways
	// Seeded at random, so that no sender can choose segments that fold alike.
	return segmentTable{
		slab: make([]segment, n), folds: make([]uint64, n), used: make([]uint64, n),
		ways: ways, mask: uint64(sets - 1), seed: [2]uint64{rand.Uint64(), rand.Uint64()},
	}
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

// set is the first slot of the set fold h picks.
func (t *segmentTable) set(h uint64) int { return int(h&t.mask) * t.ways }

// search folds k and looks through its set: the slot holding k's fold, or -1 for none,
// and whether that slot holds k (it may hold a key that folds alike).
func (t *segmentTable) search(k *segmentKey) (h uint64, i int32, found bool) {
	h = t.fold(k)
	first := t.set(h)
	for j := first; j < first+t.ways; j++ {
		if t.folds[j] == h && t.used[j] != 0 {
			return h, int32(j), t.slab[j].key == *k
		}
	}
	return h, -1, false
}

// find returns the slot of segment k.
func (t *segmentTable) find(k segmentKey) (int32, bool) {
	_, i, found := t.search(&k)
	return i, found
}

// touch makes slot i the most recently used of its set.
func (t *segmentTable) touch(i int32) {
	t.tick++
	t.used[i] = t.tick
}

// add remembers seg, which search did not find, as most recently used: h and at are
// what search returned for its key. A key that folds alike gives up slot at; else an
// empty slot of the set takes it, or the set's least recently used. It reports whether
// it forgot a segment.
func (t *segmentTable) add(h uint64, at int32, seg segment) (forgot bool) {
	if at < 0 {
		first := t.set(h)
		at = int32(first)
		for j := first + 1; j < first+t.ways; j++ {
			if t.used[j] < t.used[at] {
				at = int32(j)
			}
		}
	}
	forgot = t.used[at] != 0
	t.slab[at], t.folds[at] = seg, h
	t.touch(at)
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
		s.segments.touch(i)
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
