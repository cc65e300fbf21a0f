// Package spanner assembles kernel packet events into spans: one span per skb lifetime,
// one trace per flow window, one child span per kernel hook, and a drop as error status.
// It knows nothing of eBPF; its input is Event and its output goes to a Sink.
package spanner

import "log/slog"

// Spanner turns events into spans. HandleEvent, Tick and Flush must be called from one
// goroutine (the ring reader); Stats may be called from any.
type Spanner struct {
	sink   Sink
	cfg    settings
	log    *slog.Logger
	skbIDs *skbIDs

	packets packetTable
	flows   flowTable
	// windows needs no bound of its own: a window is open in a flow, or closed with a
	// packet of it still open.
	windows slots[window]
	aliases table[flowKey, alias]
	// segments remembers recent TCP segments, to recognise their retransmissions.
	segments segmentTable
	held     heldStore
	corr     *correlation // nil unless --correlate http
	rate     tokenBucket
	now      int64 // the latest time the Spanner was given

	out   exportBuf
	stats counters

	warnedPackets, warnedFlows bool
}

// unknownStage names events whose decoder could not tell the hook, rather than crashing
// the reader on a nil Stage.
var unknownStage = &Stage{Name: "unknown"}

// New returns a Spanner exporting to sink; settings default to config.Default()'s values.
func New(sink Sink, opts ...Option) *Spanner {
	cfg := defaultSettings()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.traceID == nil {
		ids := newRandomIDs()
		cfg.traceID, cfg.spanID = ids.traceID, ids.spanID
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	var corr *correlation
	if cfg.correlate != nil {
		corr = newCorrelation(*cfg.correlate)
	}
	return &Spanner{
		skbIDs:   newSKBIDs(cfg.exportSKB, cfg.skbKey),
		corr:     corr,
		sink:     sink,
		cfg:      cfg,
		log:      cfg.log.With("component", "spanner"),
		packets:  newPacketTable(cfg.packets),
		flows:    newFlowTable(cfg.flows),
		aliases:  newTable[flowKey, alias](cfg.aliases),
		segments: newSegmentTable(cfg.segments),
		held:     newHeldStore(cfg.export.Held),
		rate:     newTokenBucket(cfg.export.MaxSpansPerSecond, cfg.stages+1),
	}
}

// HandleEvent adds one event. It does not keep ev.
func (s *Spanner) HandleEvent(ev *Event) {
	s.stats.events.Add(1)
	st := ev.Stage
	if st == nil {
		st = unknownStage
	}
	t := ev.TimeUnixNano
	s.now = max(s.now, t)
	if st.Retransmit {
		s.retransmitStage(ev)
		return
	}
	if st.Request {
		s.request(ev)
		return
	}

	i, ok := s.packets.index[ev.SKB]
	if ok && (st.Clone || !s.packets.slab[i].freed && isNewSKB(&s.packets.slab[i], ev)) {
		// A clone is a new skb: what was open at its address was freed unseen.
		s.endPacket(i, endReused, s.packets.slab[i].last)
		ok = false
	}
	if ok && s.packets.slab[i].freed && !closesStage(&s.packets.slab[i], ev, st.Name) {
		// Only exits of its open functions follow a free: anything else at this address
		// is a new skb.
		s.endPacket(i, endFreed, s.packets.slab[i].last)
		ok = false
	}
	if ok {
		s.packets.lru.moveFront(i)
	} else {
		i = s.startPacket(ev, st)
	}
	p := &s.packets.slab[i]
	p.events++
	p.start, p.last = min(p.start, t), max(p.last, t)
	p.segments = max(p.segments, ev.Segments)

	hasTuple := ev.Tuple.Valid()
	if hasTuple && !p.tuple.Valid() {
		p.setHeaders(ev)
	}
	if p.win < 0 {
		if hasTuple {
			s.join(p, ev)
			s.noteSegment(p, st.Free && !ev.Drop && p.events == 1)
			s.claim(p)
		}
	} else {
		w := &s.windows.slab[p.win]
		if !w.closed {
			w.last = max(w.last, t)
		}
		// A tuple or conntrack tuple not seen on this packet yet is a translation.
		if hasTuple && ev.Tuple != p.lastTuple {
			p.lastTuple = ev.Tuple
			s.learnAlias(w, ev.Tuple)
		}
		if ev.CT.Valid() && ev.CT != p.lastCT {
			p.lastCT = ev.CT
			s.learnAlias(w, ev.CT)
		}
	}

	s.addStage(p, ev, st.Name)
	p.delivered = p.delivered || st.Deliver
	p.notePass(ev)

	if st.Free && !p.freed {
		p.freed = true
		switch {
		case ev.Drop:
			p.drop, p.dropAt, p.dropReason, p.dropLocation = true, t, ev.DropReason, ev.Location
			p.dropStack, p.nft = ev.Stack, ev.NFT
			if ev.NFT.Table != "" {
				p.markNFT(ev.NFT)
			}
			if p.dropReason == "" {
				p.dropReason = unknownDropReason
			}
		case ev.NormalFree:
			p.dropReason, p.dropLocation = ev.DropReason, ev.Location
		}
	}
	if p.freed && len(p.stack) == 0 {
		s.endPacket(i, endFreed, p.last)
	}
}

// startPacket opens a packet for ev's skb, making room when the table is full.
func (s *Spanner) startPacket(ev *Event, st *Stage) int32 {
	if s.packets.full() {
		s.evictPacket()
	}
	i := s.packets.alloc(ev.SKB)
	p := &s.packets.slab[i]
	p.start, p.last, p.id = ev.TimeUnixNano, ev.TimeUnixNano, s.cfg.spanID()
	s.stats.packetsStarted.Add(1)
	s.stats.packetsOpen.Add(1)
	if st.Clone {
		s.startClone(p, ev)
	}
	return i
}

// startClone makes p, a new clone of ev.Parent, a packet of the parent's window when
// the parent's packet is open in one, linked to the parent's packet span; otherwise p
// joins a flow by its own tuple, as any packet.
func (s *Spanner) startClone(p *packet, ev *Event) {
	p.cloneOf = ev.Parent
	s.stats.packetsCloned.Add(1)
	pi, ok := s.packets.index[ev.Parent]
	if !ok || ev.Parent == ev.SKB {
		return
	}
	parent := &s.packets.slab[pi]
	if parent.win < 0 {
		return
	}
	p.linkSpan = parent.id
	if !ev.Tuple.Valid() {
		// A clone shares its parent's headers.
		p.tuple, p.lastTuple, p.tcp, p.icmp = parent.lastTuple, parent.lastTuple, parent.tcp, parent.icmp
		p.ifname, p.ifindex, p.netns, p.len, p.mark = parent.ifname, parent.ifindex, parent.netns, parent.len, parent.mark
	}
	p.lastCT = parent.lastCT
	s.joinWindow(p, parent.win, ev.TimeUnixNano)
}

// Tick ends packets with no event for the packet timeout (a freed packet still waiting
// for function exits keeps its freed or dropped end) and closes flow windows that
// are due at now: grace elapsed after FIN/RST, idle, or too long. It also forgets closed
// flows after an idle timeout, after which a returning flow starts an unlinked trace.
// It visits every remembered flow, so call it periodically (about once a second), not
// per event.
func (s *Spanner) Tick(nowUnixNano int64) {
	s.now = max(s.now, nowUnixNano)
	for s.packets.lru.tail >= 0 {
		i := s.packets.lru.tail
		p := &s.packets.slab[i]
		if nowUnixNano-p.last < s.cfg.packetTimeout {
			break
		}
		s.endPacket(i, endTimeout, p.last)
	}
	for i := range s.flows.slab {
		f := &s.flows.slab[i]
		switch {
		case !f.used:
		case f.open:
			if cause, due := s.due(&s.windows.slab[f.win], nowUnixNano); due {
				s.closeWindow(int32(i), cause, nowUnixNano)
			}
		case nowUnixNano-f.closedAt >= s.cfg.idle:
			s.forgetFlow(int32(i))
		}
	}
	s.tickExchanges(nowUnixNano)
}

// Flush is for shutdown: after closing what is due at now as Tick would, it ends every
// open packet (pktspan.packet.end=flush) and every open window (pktspan.flow.close=shutdown),
// exports them as the export policy says (a window without a drop in export mode drops
// leaves nothing), and forgets all flows.
func (s *Spanner) Flush(nowUnixNano int64) {
	s.Tick(nowUnixNano)
	for s.packets.lru.tail >= 0 {
		i := s.packets.lru.tail
		s.endPacket(i, endFlush, s.packets.slab[i].last)
	}
	for s.flows.lru.tail >= 0 {
		i := s.flows.lru.tail
		if s.flows.slab[i].open {
			s.closeWindow(i, closeShutdown, nowUnixNano)
		}
		s.forgetFlow(i)
	}
	s.flushExchanges()
}

// Stats returns the counters; it is safe to call from any goroutine.
func (s *Spanner) Stats() Stats { return s.stats.snapshot() }
