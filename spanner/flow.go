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
	closeEvicted
	closeShutdown
	closeCauses
)

var closeNames = [closeCauses]string{"fin", "rst", "idle", "max_duration", "max_packets", "evicted", "shutdown"}

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

// flow is one remembered 5-tuple. It is open while a window (a trace) is collecting
// packets; a closed flow is kept for a while so that its next window can link back.
type flow struct {
	key        flowKey
	used, open bool
	aStr, bStr string // addresses formatted once per flow
	clientIsA  bool

	win       uint64 // serial of the current or last window, unique across flows
	trace     TraceID
	root      SpanID
	prevTrace TraceID
	prevRoot  SpanID // zero when there is no earlier window

	start, last int64
	packets     int
	closing     bool // FIN or RST seen
	rst         bool
	closingAt   int64 // last FIN or RST
	closedAt    int64
}

// flowTable holds flows by key; a slot's zero value is an unused flow.
type flowTable struct{ table[flowKey, flow] }

func newFlowTable(limit int) flowTable { return flowTable{newTable[flowKey, flow](limit)} }

func (t *flowTable) alloc(k flowKey) int32 {
	i := t.table.alloc(k)
	t.slab[i] = flow{key: k, used: true}
	return i
}

// release forgets a flow; clearing it also clears win, so packets still pointing at the
// slot no longer match it.
func (t *flowTable) release(i int32) {
	t.table.release(i)
	t.slab[i] = flow{}
}

// join attaches p to the flow of ev's tuple, opening a window when none is open.
func (s *Spanner) join(p *packet, ev *Event) {
	t := ev.TimeUnixNano
	key, srcIsA := newFlowKey(ev.Tuple)
	fi, ok := s.flows.index[key]
	if !ok {
		if s.flows.full() {
			s.evictFlow()
		}
		fi = s.flows.alloc(key)
		f := &s.flows.slab[fi]
		f.aStr, f.bStr = key.a.String(), key.b.String()
		// The first packet is usually the client's; a SYN-ACK first means we missed the SYN.
		f.clientIsA = srcIsA != (key.proto == protoTCP && ev.TCP.Flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK)
		s.stats.flowsOpened.Add(1)
	}
	f := &s.flows.slab[fi]
	if f.open {
		if cause, due := s.due(f, t); due {
			s.closeWindow(fi, cause, t)
		} else if f.packets >= s.cfg.maxPackets {
			s.closeWindow(fi, closeMaxPackets, t)
		}
	}
	if !f.open {
		s.openWindow(f, p.start)
	}
	s.flows.lru.moveFront(fi)
	f.packets++
	f.last = max(f.last, t)
	if key.proto == protoTCP && ev.TCP.Flags&(tcpFIN|tcpRST) != 0 {
		f.closing, f.closingAt = true, t
		f.rst = f.rst || ev.TCP.Flags&tcpRST != 0
	}

	p.win, p.flow, p.trace, p.parent = f.win, fi, f.trace, f.root
	p.src, p.dst = f.aStr, f.bStr
	if !srcIsA {
		p.src, p.dst = f.bStr, f.aStr
	}
	p.tuple, p.tcp = ev.Tuple, ev.TCP
	p.ifname, p.ifindex, p.netns, p.len, p.mark = ev.Ifname, ev.Ifindex, ev.Netns, ev.Len, ev.Mark
}

func (s *Spanner) openWindow(f *flow, start int64) {
	s.winSeq++
	f.prevTrace, f.prevRoot = f.trace, f.root
	f.win, f.trace, f.root = s.winSeq, s.cfg.traceID(), s.cfg.spanID()
	f.open = true
	f.start, f.last, f.packets = start, start, 0
	f.closing, f.rst, f.closingAt = false, false, 0
	s.stats.windowsOpened.Add(1)
	s.stats.windowsOpen.Add(1)
}

// due reports whether f's window must close at time now, and why.
func (s *Spanner) due(f *flow, now int64) (closeCause, bool) {
	switch {
	case f.closing && now-f.closingAt >= s.cfg.grace:
		if f.rst {
			return closeRST, true
		}
		return closeFIN, true
	case now-f.last >= s.cfg.idle:
		return closeIdle, true
	case now-f.start >= s.cfg.maxDuration:
		return closeMaxDuration, true
	}
	return 0, false
}

// closeWindow exports the root span of the flow's open window. The flow stays remembered
// (for the link from its next window) but moves to the cold end of the LRU list, so
// closed flows are the first to make room.
func (s *Spanner) closeWindow(i int32, cause closeCause, at int64) {
	f := &s.flows.slab[i]
	s.exportRoot(f, cause)
	f.open, f.closedAt = false, at
	s.stats.windowsClosed[cause].Add(1)
	s.stats.windowsOpen.Add(decrement)
	s.flows.lru.moveBack(i)
}

// evictFlow makes room for a new flow. A closed flow goes silently; an open one has its
// window exported first and is counted.
func (s *Spanner) evictFlow() {
	i := s.flows.lru.tail
	if s.flows.slab[i].open {
		if !s.warnedFlows {
			s.warnedFlows = true
			s.log.Warn("flow table full, evicting least recently active flows", "limit", s.cfg.flows)
		}
		s.closeWindow(i, closeEvicted, s.flows.slab[i].last)
	}
	s.flows.release(i)
}
