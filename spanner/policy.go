package spanner

// The export policy decides what becomes of the spans of an ended packet and of a closed
// window: exported, held for a drop that may come (export mode drops), or counted out
// by cause. Head sampling was decided when the window opened.

// packetDone settles the spans of p, an ended packet of a window.
func (s *Spanner) packetDone(p *packet) {
	wi := p.win
	w := &s.windows.slab[wi]
	switch {
	case s.correlate(p, w):
		// It went into an application's trace, under its request's exchange.
	case !w.sampled:
		s.stats.spansSampledOut.Add(p.spans())
	case s.cfg.export.Mode == ExportAll || w.dropSeen:
		s.emitPacket(p)
	case p.drop:
		// The window earns its export: what it held first, in order, then the drop.
		w.dropSeen = true
		s.releaseHeld(w, true)
		s.emitPacket(p)
	default:
		s.hold(w, p)
	}
	s.windows.slab[wi].inflight--
	s.settle(wi)
}

// settle decides the root span of a closed window once its fate is known: at its close
// when it is sampled out or exported, else (export mode drops, no drop yet) when its
// last open packet ends, which may still be a drop. It frees the window once none of its
// packets is open.
func (s *Spanner) settle(wi int32) {
	w := &s.windows.slab[wi]
	if !w.closed {
		return
	}
	if !w.rootDone {
		switch {
		case !w.sampled:
			s.stats.spansSampledOut.Add(1)
			w.rootDone = true
		case s.cfg.export.Mode == ExportAll || w.dropSeen:
			s.emitRoot(w)
			w.rootDone = true
		case w.inflight == 0:
			s.releaseHeld(w, false)
			s.stats.spansNoDrop.Add(1)
			w.rootDone = true
		}
	}
	if w.inflight == 0 {
		s.windows.release(wi)
	}
}

// emitPacket exports p's spans in its window's trace when the rate cap lets them through.
func (s *Spanner) emitPacket(p *packet) { s.emitPacketAt(p, s.flowPlace(p)) }

// emitPacketAt exports p's spans at pl when the rate cap lets them through.
func (s *Spanner) emitPacketAt(p *packet, pl place) {
	if n := p.spans(); !s.rate.take(n, s.now) {
		s.stats.spansRateLimited.Add(n)
		return
	}
	s.exportPacket(p, pl)
}

// emitRoot exports w's root span when the rate cap lets it through.
func (s *Spanner) emitRoot(w *window) {
	if !s.rate.take(1, s.now) {
		s.stats.spansRateLimited.Add(1)
		return
	}
	s.exportRoot(w)
}

// heldStore keeps the ended packets of export mode drops' windows that have no drop
// yet. Records are swapped with packet table slots, so stage slices only change hands
// and holding allocates nothing once the store has grown.
type heldStore struct {
	slots[packet]
	next  []int32 // the next newer held packet of the same window, -1 for its newest
	order lru     // every held packet, the oldest at the tail
	limit int
}

// heldList is one window's held packets, oldest first.
type heldList struct {
	head, tail int32
	n          int
}

func newHeldStore(limit int) heldStore { return heldStore{order: newLRU(), limit: limit} }

func (h *heldStore) alloc() int32 {
	i, grown := h.slots.alloc()
	if grown {
		h.next = append(h.next, -1)
		h.order.grow()
	}
	h.next[i] = -1
	h.order.pushFront(i)
	return i
}

func (h *heldStore) release(i int32) {
	h.order.remove(i)
	h.slots.release(i)
	h.slab[i].reset()
}

// hold keeps p, the newest packet of w, until w has a drop or closes without one. The
// oldest held packet of w goes when w holds its drop context, and the oldest of all when
// the store is full: a window's context is the packets just before its drop.
func (s *Spanner) hold(w *window, p *packet) {
	if w.held.n >= s.cfg.export.DropContext {
		s.discardOldestHeld(w)
	}
	if s.held.used() >= s.held.limit {
		s.discardOldestHeld(&s.windows.slab[s.held.slab[s.held.order.tail].win])
	}
	i := s.held.alloc()
	s.held.slab[i], *p = *p, s.held.slab[i]
	if w.held.tail >= 0 {
		s.held.next[w.held.tail] = i
	} else {
		w.held.head = i
	}
	w.held.tail = i
	w.held.n++
	s.stats.packetsHeld.Add(1)
}

// discardOldestHeld counts out w's oldest held packet. Packets are held in time order,
// so the oldest of all is always the oldest of its window.
func (s *Spanner) discardOldestHeld(w *window) {
	i := w.held.head
	s.stats.spansHeldEvicted.Add(s.held.slab[i].spans())
	s.unholdHead(w)
}

// releaseHeld exports w's held packets in order, or counts them as windows without a
// drop, and empties its list.
func (s *Spanner) releaseHeld(w *window, export bool) {
	for w.held.head >= 0 {
		p := &s.held.slab[w.held.head]
		if export {
			s.emitPacket(p)
		} else {
			s.stats.spansNoDrop.Add(p.spans())
		}
		s.unholdHead(w)
	}
}

// unholdHead frees the oldest held packet of w.
func (s *Spanner) unholdHead(w *window) {
	i := w.held.head
	w.held.head = s.held.next[i]
	if w.held.head < 0 {
		w.held.tail = -1
	}
	w.held.n--
	s.held.release(i)
	s.stats.packetsHeld.Add(decrement)
}

// tokenBucket caps exported spans per second of event time: the times the Spanner is
// given, never the wall clock, so replays and tests behave the same. Tokens are counted
// in billionths of a span so that refills need no division.
type tokenBucket struct {
	rate   int64 // spans per second; 0 is no cap
	burst  int64 // capacity, in billionths of a span
	tokens int64
	last   int64
}

// newTokenBucket starts full. Its capacity is one second's worth, but at least
// maxGroup spans, so that a whole packet span group can always fit in time.
func newTokenBucket(rate, maxGroup int) tokenBucket {
	burst := int64(max(rate, maxGroup)) * 1e9
	return tokenBucket{rate: int64(rate), burst: burst, tokens: burst}
}

// take spends n spans' tokens at time now, or none when they do not fit.
func (b *tokenBucket) take(n uint64, now int64) bool {
	if b.rate == 0 {
		return true
	}
	if now > b.last {
		// Beyond a second the bucket is full anyway; the bound keeps the product small.
		b.tokens = min(b.burst, b.tokens+min(now-b.last, 1e9)*b.rate)
		b.last = now
	}
	cost := int64(n) * 1e9
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}
