package spanner

import "net/netip"

// closeCause says why a flow window closed; its name is pktspan.flow.close.
type closeCause uint8

const (
	closeFIN closeCause = iota
	closeRST
	closeIdle
	closeMaxDuration
	closeMaxPackets
	// closeNewConnection: a SYN with another sequence number than the window's
	// connection started, so the 5-tuple was reused by a new connection.
	closeNewConnection
	closeEvicted
	closeShutdown
	closeCauses
)

var closeNames = [closeCauses]string{"fin", "rst", "idle", "max_duration", "max_packets", "new_connection", "evicted", "shutdown"}

// flowKey is a bidirectional 5-tuple: endpoint a sorts before endpoint b, so both
// directions of a conversation land on the same key.
type flowKey struct {
	a, b   netip.Addr
	pa, pb uint16
	proto  uint8
}

// newFlowKey also reports whether the tuple's source is endpoint a. Ports count only for
// TCP and UDP, where they identify the conversation.
func newFlowKey(t Tuple) (k flowKey, srcIsA bool) {
	sp, dp := t.SrcPort, t.DstPort
	if !hasPorts(t.Proto) {
		sp, dp = 0, 0
	}
	if c := t.Src.Compare(t.Dst); c < 0 || c == 0 && sp <= dp {
		return flowKey{a: t.Src, b: t.Dst, pa: sp, pb: dp, proto: t.Proto}, true
	}
	return flowKey{a: t.Dst, b: t.Src, pa: dp, pb: sp, proto: t.Proto}, false
}

// flow is one remembered 5-tuple, the key of its slot in the flow table. It is open
// while a window (a trace) is collecting packets; a closed flow is kept for a while so
// that its next window can link back.
type flow struct {
	used, open bool
	clientIsA  bool
	win        int32 // slot of the open window, while open
	closedAt   int64

	// The IDs of the flow's latest window, for the link from the next one; lastRoot is
	// zero before the first.
	lastTrace  TraceID
	lastRoot   SpanID
	lastRandom bool

	// The TCP connection on the 5-tuple, once a SYN or a SYN-ACK told its client's
	// initial sequence number, and how many windows it has had: with the key, what
	// derives their trace IDs.
	isn      uint32
	isnKnown bool
	ordinal  uint32

	aliases int32 // the flow's first alias, -1 when none
}

// flowTable holds flows by key; a slot's zero value is an unused flow.
type flowTable struct{ table[flowKey, flow] }

func newFlowTable(limit int) flowTable { return flowTable{newTable[flowKey, flow](limit)} }

func (t *flowTable) alloc(k flowKey) int32 {
	i := t.table.alloc(k)
	t.slab[i] = flow{used: true, aliases: -1}
	return i
}

func (t *flowTable) release(i int32) {
	t.table.release(i)
	t.slab[i] = flow{}
}

// window is one trace: a flow's packets from its open to its close. It outlives its
// close while packets that joined it are open, since their spans belong to its trace
// and, in export mode drops, may still decide that it is exported.
type window struct {
	key        flowKey
	clientIsA  bool
	trace      TraceID
	random     bool // trace is random, not derived from the connection
	root       SpanID
	prevTrace  TraceID
	prevRoot   SpanID // zero when the flow had no earlier window
	prevRandom bool

	start, last int64
	packets     int   // joined
	inflight    int   // joined and not ended
	closing     bool  // FIN or RST seen
	rst         bool  // one of them was an RST
	closingAt   int64 // last FIN or RST
	closed      bool
	cause       closeCause

	sampled  bool     // head sampling keeps it
	dropSeen bool     // export mode drops: a packet of it was dropped, so it is exported
	rootDone bool     // its root span was exported or counted out
	held     heldList // export mode drops: its ended packets, while it has no drop

	// exchanges are links to the exchanges that took packets of the window
	// (--correlate http), at most windowExchangeLinks.
	exchanges []Link
}

// join attaches p to a flow window. The flow is that of ev's conntrack tuple when it
// has one, so both sides of a NAT land in one trace; else, for an ICMP error, that of
// the header it quotes, so the error lands in the trace of the flow it answers (the
// quoted packet went the other way, and its source, the client, is the flow's); else
// that of its tuple. The flow is found as a flow of its own or as an alias learned from
// a translation (a quoted header seen before the NAT box undid it).
func (s *Spanner) join(p *packet, ev *Event) {
	t := ev.TimeUnixNano
	kt := ev.Tuple
	switch {
	case ev.CT.Valid():
		kt = ev.CT
	case ev.Quoted.Valid():
		kt = ev.Quoted
	}
	key, srcIsA := newFlowKey(kt)
	fi, ok := s.flows.index[key]
	byAlias := false
	if !ok {
		fi, ok = s.aliasOf(key)
		byAlias = ok
	}
	if !ok {
		// The first packet is usually the client's; a SYN-ACK first means we missed the
		// SYN. Conntrack's original tuple names the client for sure.
		synAck := key.proto == protoTCP && ev.TCP.Flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK
		fi = s.newFlow(key, srcIsA != (synAck && !ev.CT.Valid()))
	}
	f := &s.flows.slab[fi]
	tcp := key.proto == protoTCP
	// A SYN is a client's first segment: with a new sequence number it starts another
	// connection on the same 5-tuple.
	newConn := tcp && ev.TCP.Flags&(tcpSYN|tcpACK) == tcpSYN && (!f.isnKnown || ev.TCP.Seq != f.isn)
	if f.open {
		w := &s.windows.slab[f.win]
		if cause, due := s.due(w, t); due {
			s.closeWindow(fi, cause, t)
		} else if newConn {
			s.closeWindow(fi, closeNewConnection, t)
		} else if w.packets >= s.cfg.maxPackets {
			s.closeWindow(fi, closeMaxPackets, t)
		}
	}
	if !f.open {
		switch {
		case newConn:
			f.isn, f.isnKnown, f.ordinal = ev.TCP.Seq, true, 0
			if !byAlias {
				f.clientIsA = srcIsA
			}
		case tcp && ev.TCP.Flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK && (!f.isnKnown || ev.TCP.Ack-1 != f.isn):
			// The SYN was missed; the SYN-ACK acknowledges its sequence number.
			f.isn, f.isnKnown, f.ordinal = ev.TCP.Ack-1, true, 0
		}
		s.openWindow(fi, p.start)
	}
	s.flows.lru.moveFront(fi)
	s.joinWindow(p, f.win, t)
	w := &s.windows.slab[f.win]
	if tcp && ev.TCP.Flags&(tcpFIN|tcpRST) != 0 {
		w.closing, w.closingAt = true, t
		w.rst = w.rst || ev.TCP.Flags&tcpRST != 0
	}
	// The flow was found by ev.CT's key when it is valid, so only a translated tuple
	// teaches an alias.
	p.lastCT = ev.CT
	if ev.CT.Valid() {
		s.learnAlias(w, ev.Tuple)
	}
}

// joinWindow makes p a packet of window wi.
func (s *Spanner) joinWindow(p *packet, wi int32, t int64) {
	w := &s.windows.slab[wi]
	w.packets++
	w.inflight++
	if !w.closed {
		w.last = max(w.last, t)
	}
	p.win = wi
}

// newFlow remembers a flow for key, making room when the table is full.
func (s *Spanner) newFlow(key flowKey, clientIsA bool) int32 {
	if s.flows.full() {
		s.evictFlow()
	}
	fi := s.flows.alloc(key)
	s.flows.slab[fi].clientIsA = clientIsA
	s.stats.flowsOpened.Add(1)
	return fi
}

// openWindow starts a window in flow fi. Its trace ID is derived from the TCP connection
// when the client's initial sequence number is known, so that other hosts derive the
// same; otherwise it is random.
func (s *Spanner) openWindow(fi int32, start int64) {
	wi, _ := s.windows.alloc()
	f, key := &s.flows.slab[fi], s.flows.keys[fi]
	w := &s.windows.slab[wi]
	*w = window{
		exchanges:  w.exchanges[:0],
		key:        key,
		clientIsA:  f.clientIsA,
		root:       s.cfg.spanID(),
		prevTrace:  f.lastTrace,
		prevRoot:   f.lastRoot,
		prevRandom: f.lastRandom,
		start:      start,
		last:       start,
		sampled:    sampled(key, s.cfg.export.SampleRatio),
		held:       heldList{head: -1, tail: -1},
	}
	if key.proto == protoTCP && f.isnKnown {
		w.trace = derivedTraceID(key, f.isn, f.ordinal)
		f.ordinal++
	} else {
		w.trace, w.random = s.cfg.traceID(), true
		s.stats.windowsRandom.Add(1)
	}
	f.win, f.open = wi, true
	f.lastTrace, f.lastRoot, f.lastRandom = w.trace, w.root, w.random
	s.stats.windowsOpened.Add(1)
	s.stats.windowsOpen.Add(1)
}

// due reports whether w must close at time now, and why.
func (s *Spanner) due(w *window, now int64) (closeCause, bool) {
	switch {
	case w.closing && now-w.closingAt >= s.cfg.grace:
		if w.rst {
			return closeRST, true
		}
		return closeFIN, true
	case now-w.last >= s.cfg.idle:
		return closeIdle, true
	case now-w.start >= s.cfg.maxDuration:
		return closeMaxDuration, true
	}
	return 0, false
}

// closeWindow closes the open window of flow fi and lets the export policy settle its
// root span. The flow stays remembered (for the link from its next window) but moves to
// the cold end of the LRU list, so closed flows are the first to make room.
func (s *Spanner) closeWindow(fi int32, cause closeCause, at int64) {
	f := &s.flows.slab[fi]
	wi := f.win
	w := &s.windows.slab[wi]
	w.closed, w.cause = true, cause
	f.open, f.closedAt = false, at
	s.stats.windowsClosed[cause].Add(1)
	s.stats.windowsOpen.Add(decrement)
	s.flows.lru.moveBack(fi)
	s.closeExchanges(w.key, cause)
	s.settle(wi)
}

// evictFlow makes room for a new flow. A closed flow goes silently; an open one has its
// window closed first and is counted.
func (s *Spanner) evictFlow() {
	i := s.flows.lru.tail
	if s.flows.slab[i].open {
		if !s.warnedFlows {
			s.warnedFlows = true
			s.log.Warn("flow table full, evicting least recently active flows", "limit", s.cfg.flows)
		}
		s.closeWindow(i, closeEvicted, s.windows.slab[s.flows.slab[i].win].last)
	}
	s.forgetFlow(i)
}

// forgetFlow releases a closed flow and its aliases.
func (s *Spanner) forgetFlow(i int32) {
	s.dropAliases(s.flows.slab[i].aliases)
	s.flows.release(i)
}
