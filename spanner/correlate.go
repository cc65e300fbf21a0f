package spanner

import "github.com/pktspan/pktspan/spanner/attrkey"

// App-trace correlation (--correlate http). A request owns its direction's sequence
// range from its first byte to the next request's first byte on the connection; the
// other direction's packets belong to it by what they acknowledge. Retransmissions,
// GSO, NAT and drops keep their sequence numbers, so they land in the right request.
// Each correlated request has an exchange span in the application's trace, under the
// client span its traceparent named, and the request's packet spans go under it
// instead of under their flow window's root.

const (
	// connRequests is how many of its latest requests a connection remembers: enough
	// for pipelining and for the retransmission of an earlier request's segment.
	connRequests = 8
	// windowExchangeLinks bounds the links from a flow window's root to exchanges.
	windowExchangeLinks = 8
	// seqRange bounds how far past a request's first byte its packets may be: a
	// number further on (or before it) is another connection's or a stale one.
	seqRange = 1 << 30
	// exchangeSpanName names every exchange span.
	exchangeSpanName = "tcp exchange"
)

// exchangeEnd says why an exchange was exported; its name is pktspan.exchange.end.
type exchangeEnd uint8

const (
	exchangeQuiet       exchangeEnd = iota // linger passed, its data acknowledged both ways
	exchangeIdle                           // the flow's idle timeout passed, data still unacknowledged
	exchangeMaxDuration                    // open for trace.max_duration, still unsettled (a black hole)
	exchangeFlowClose                      // its flow window closed (FIN, RST, idle, eviction)
	exchangeEvicted                        // the exchange table was full
	exchangeShutdown
	exchangeEnds
)

var exchangeEndNames = [exchangeEnds]string{"quiet", "idle", "max_duration", "flow_close", "evicted", "shutdown"}

// request is one request a connection remembers: the first byte of its range, and its
// exchange while that is open.
type request struct {
	seq    uint32
	exch   int32  // slot of its exchange, -1 for none (not correlated, or exported)
	exchID SpanID // the exchange's span ID: the slot may have been reused since
}

// conn is a TCP connection that carried requests, keyed by its flow's key.
type conn struct {
	// fwd is the requests' tuple as the first request was seen: requester to server.
	fwd Tuple
	// localIsSrc: the requester is this host's (the request was seen leaving a socket).
	localIsSrc bool
	reqs       [connRequests]request // oldest first
	n          int
}

// exchange is one correlated request's packets, until it is exported.
type exchange struct {
	id, parent SpanID
	trace      TraceID
	random     bool
	fwd        Tuple
	localIsSrc bool
	seq        uint32 // the request's first byte
	start, end int64

	packets, bytes, retransmits, drops, exported, capped uint32
	// inflight counts the packets claimed while on their way and not ended yet: the
	// exchange waits for them before it is quiet, and when its flow closes (closing).
	inflight   int
	closing    bool
	closeEnd   exchangeEnd
	rst        bool
	dropReason string // the latest drop's

	// Sequence bookkeeping, to tell a drop the peer recovered from (its data acknowledged
	// later) from one it did not: per direction, the highest end of data sent and of
	// data dropped, and the highest acknowledgement sent.
	fwdSeq, revSeq seqState

	// The flow window whose root links here, for the link back.
	flowTrace  TraceID
	flowRoot   SpanID
	flowRandom bool

	// held is the latest packet past max_packets, kept because it may be the last:
	// a slot of Spanner.exHeld, -1 for none; heldAt is where it goes.
	held   int32
	heldAt place
}

// seqState is what an exchange saw of one direction's sequence space.
type seqState struct {
	sent, lost, acked          uint32
	hasSent, hasLost, hasAcked bool
}

func (q *seqState) noteSent(end uint32) {
	if !q.hasSent || after(end, q.sent) {
		q.sent, q.hasSent = end, true
	}
}

func (q *seqState) noteLost(end uint32) {
	if !q.hasLost || after(end, q.lost) {
		q.lost, q.hasLost = end, true
	}
}

func (q *seqState) noteAcked(ack uint32) {
	if !q.hasAcked || after(ack, q.acked) {
		q.acked, q.hasAcked = ack, true
	}
}

// after reports whether sequence number a is past b, modulo 2^32.
func after(a, b uint32) bool { return int32(a-b) > 0 }

// correlation holds the tables of --correlate http; nil when it is off.
type correlation struct {
	maxPackets int
	linger     int64
	conns      table[flowKey, conn]
	exchanges  table[SpanID, exchange]
	held       slots[packet]
}

func newCorrelation(c CorrelateSettings) *correlation {
	return &correlation{
		maxPackets: c.MaxPackets,
		linger:     int64(c.Linger),
		conns:      newTable[flowKey, conn](c.Exchanges),
		exchanges:  newTable[SpanID, exchange](c.Exchanges),
	}
}

// request takes the requests that start in ev's segment: each bounds the ranges of the
// requests before it, and a valid, sampled traceparent opens an exchange.
func (s *Spanner) request(ev *Event) {
	cr := s.corr
	if cr == nil || !ev.Tuple.Valid() || ev.Tuple.Proto != protoTCP {
		return
	}
	ci := s.connFor(ev)
	c := &cr.conns.slab[ci]
	for _, r := range ev.Requests {
		seq := ev.TCP.Seq + r.Offset
		if c.has(seq) {
			// The same request again: a retransmitted segment, or seen both leaving
			// one socket and arriving at another.
			s.stats.requestsRepeated.Add(1)
			continue
		}
		rq := request{seq: seq, exch: -1}
		switch {
		case r.Verdict != HeaderValid:
		case r.Flags&FlagSampled == 0:
			s.stats.requestsUnsampled.Add(1)
		default:
			rq.exch, rq.exchID = s.openExchange(c, r, seq, ev.TimeUnixNano)
			s.stats.requestsCorrelated.Add(1)
		}
		c.insert(rq)
	}
	s.claimRequestSegment(ev)
}

// claimRequestSegment claims the open packet that carries ev's segment, which probes
// on the send path (ip_output) saw before the request was known: the segment table
// names it by tuple and sequence number.
func (s *Spanner) claimRequestSegment(ev *Event) {
	si, ok := s.segments.find(segmentKey{tuple: ev.Tuple, seq: ev.TCP.Seq})
	if !ok {
		return
	}
	pi, ok := s.packets.index[s.segments.slab[si].lastSKB]
	if !ok {
		return
	}
	if p := &s.packets.slab[pi]; p.id == s.segments.slab[si].lastSpanID && p.win >= 0 {
		s.claim(p)
	}
}

// claim ties p, a packet that has just joined its window, to the exchange of the
// request it belongs to, so that the exchange waits for it to end.
func (s *Spanner) claim(p *packet) {
	if s.corr == nil || p.win < 0 || p.exchID != (SpanID{}) {
		return
	}
	xi, fwd, ok := s.exchangeFor(p, &s.windows.slab[p.win])
	if !ok {
		return
	}
	x := &s.corr.exchanges.slab[xi]
	x.inflight++
	x.end = max(x.end, p.last)
	p.exch, p.exchID, p.exchFwd = xi, x.id, fwd
}

// connFor returns the connection of ev's tuple, made when new. It is keyed by the key of
// the flow the tuple names, itself or as an alias (NAT), so that every packet of the
// flow finds it by its window's key.
func (s *Spanner) connFor(ev *Event) int32 {
	cr := s.corr
	key, _ := newFlowKey(ev.Tuple)
	if _, ok := s.flows.index[key]; !ok {
		if fi, ok := s.aliasOf(key); ok {
			key = s.flows.keys[fi]
		}
	}
	if ci, ok := cr.conns.index[key]; ok {
		cr.conns.lru.moveFront(ci)
		return ci
	}
	if cr.conns.full() {
		// Its open exchanges stay until they are due; they get no more packets.
		cr.conns.release(cr.conns.lru.tail)
		s.stats.connsEvicted.Add(1)
	}
	ci := cr.conns.alloc(key)
	cr.conns.slab[ci] = conn{fwd: ev.Tuple, localIsSrc: !ev.Stage.Received}
	return ci
}

// has reports whether the connection remembers a request starting at seq.
func (c *conn) has(seq uint32) bool {
	for i := range c.n {
		if c.reqs[i].seq == seq {
			return true
		}
	}
	return false
}

// insert remembers rq in sequence order, forgetting the oldest request when full.
func (c *conn) insert(rq request) {
	if c.n == connRequests {
		copy(c.reqs[:], c.reqs[1:])
		c.n--
	}
	i := c.n
	for i > 0 && after(c.reqs[i-1].seq, rq.seq) {
		c.reqs[i] = c.reqs[i-1]
		i--
	}
	c.reqs[i] = rq
	c.n++
}

// bySeq returns the request whose range holds a packet of the requests' direction with
// sequence number seq: the latest request starting at or before it. A packet without
// data sits right after the bytes before it, so seq equal to a request's first byte
// belongs to the request before. -1 when none does.
func (c *conn) bySeq(seq uint32, data bool) int {
	for i := c.n - 1; i >= 0; i-- {
		d := int32(seq - c.reqs[i].seq)
		if d >= seqRange || d < 0 || d == 0 && !data {
			continue
		}
		return i
	}
	return -1
}

// byAck returns the request that a packet of the other direction acknowledging up to
// ack answers: the latest request whose first byte it acknowledges. -1 when none.
func (c *conn) byAck(ack uint32) int {
	for i := c.n - 1; i >= 0; i-- {
		if d := int32(ack - c.reqs[i].seq); d > 0 && d < seqRange {
			return i
		}
	}
	return -1
}

// direction tells whether p goes the requests' way, by its tuples where one of them is
// the requests' (or its reverse), else by which sequence space its numbers fall in (a
// tuple translated beyond where the requests were seen).
func (c *conn) direction(p *packet) (fwd, ok bool) {
	rev := reversed(c.fwd)
	for _, t := range [2]Tuple{p.tuple, p.lastTuple} {
		switch t {
		case c.fwd:
			return true, true
		case rev:
			return false, true
		}
	}
	switch {
	case c.bySeq(p.tcp.Seq, true) >= 0:
		return true, true
	case c.byAck(p.tcp.Ack) >= 0:
		return false, true
	}
	return false, false
}

func reversed(t Tuple) Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// openExchange opens the exchange of a request starting at seq, evicting the least
// recently active exchange when the table is full.
func (s *Spanner) openExchange(c *conn, r Request, seq uint32, at int64) (int32, SpanID) {
	cr := s.corr
	if cr.exchanges.full() {
		s.exportExchange(cr.exchanges.lru.tail, exchangeEvicted)
	}
	id := s.cfg.spanID()
	xi := cr.exchanges.alloc(id)
	cr.exchanges.slab[xi] = exchange{
		id: id, parent: r.ParentID, trace: r.TraceID, random: r.Flags&FlagRandom != 0,
		fwd: c.fwd, localIsSrc: c.localIsSrc, seq: seq, start: at, end: at, held: -1,
	}
	return xi, id
}

// connOf returns the connection p's packets belong to: by its window's key, else by
// its own tuples' keys.
func (s *Spanner) connOf(p *packet, w *window) (int32, bool) {
	idx := s.corr.conns.index
	if ci, ok := idx[w.key]; ok {
		return ci, true
	}
	for _, t := range [2]Tuple{p.tuple, p.lastTuple} {
		k, _ := newFlowKey(t)
		if ci, ok := idx[k]; ok {
			return ci, true
		}
	}
	return -1, false
}

// liveExchange returns the open exchange of request rq.
func (s *Spanner) liveExchange(rq *request) (int32, bool) {
	if rq.exch < 0 {
		return -1, false
	}
	// A released slot is zeroed and a reused one has a new ID: the slot's ID says all.
	if s.corr.exchanges.slab[rq.exch].id != rq.exchID {
		rq.exch = -1
		return -1, false
	}
	return rq.exch, true
}

// exchangeFor finds the open exchange of the request p belongs to, and whether p goes
// the request's way. SYNs and FINs, packets of requests without an open exchange, and
// packets of no request have none.
func (s *Spanner) exchangeFor(p *packet, w *window) (xi int32, fwd, ok bool) {
	if p.tuple.Proto != protoTCP || p.tcp.Flags&(tcpSYN|tcpFIN) != 0 {
		return -1, false, false
	}
	ci, ok := s.connOf(p, w)
	if !ok {
		return -1, false, false
	}
	c := &s.corr.conns.slab[ci]
	fwd, ok = c.direction(p)
	if !ok {
		return -1, false, false
	}
	r := c.byAck(p.tcp.Ack)
	if fwd {
		r = c.bySeq(p.tcp.Seq, p.tcp.DataLen > 0)
	}
	if r < 0 {
		return -1, false, false
	}
	xi, ok = s.liveExchange(&c.reqs[r])
	if !ok {
		return -1, false, false
	}
	// A segment that goes on into the next request (GSO, pipelining) is the earlier
	// request's, and links to the next one's exchange.
	if fwd && p.tcp.DataLen > 0 && r+1 < c.n {
		if end := p.tcp.Seq + uint32(p.tcp.DataLen); after(end, c.reqs[r+1].seq) {
			if ni, ok := s.liveExchange(&c.reqs[r+1]); ok {
				nx := &s.corr.exchanges.slab[ni]
				p.nextExchange = Link{TraceID: nx.trace, SpanID: nx.id, RandomTraceID: nx.random, Role: RoleExchange}
			}
		}
	}
	return xi, fwd, true
}

// correlate puts p, an ended packet of window w, under the exchange that claimed it on
// its way, or else of the request it belongs to, and reports whether it did.
func (s *Spanner) correlate(p *packet, w *window) bool {
	cr := s.corr
	if cr == nil {
		return false
	}
	var (
		xi  int32
		fwd bool
		ok  bool
	)
	if p.exchID != (SpanID{}) {
		if cr.exchanges.slab[p.exch].id != p.exchID {
			return false // exported while the packet was on its way
		}
		xi, fwd = p.exch, p.exchFwd
		cr.exchanges.slab[xi].inflight--
	} else if xi, fwd, ok = s.exchangeFor(p, w); !ok {
		return false
	}
	cr.exchanges.lru.moveFront(xi)
	x := &cr.exchanges.slab[xi]
	x.account(p, fwd)
	if x.packets == 1 {
		x.flowTrace, x.flowRoot, x.flowRandom = w.trace, w.root, w.random
	}
	w.linkExchange(x, &s.stats)
	s.relinkSegment(p, x)
	s.stats.exchangePackets.Add(1)

	at := place{trace: x.trace, parent: x.id, random: x.random, flowTrace: w.trace, flowRandom: w.random}
	special := x.packets == 1 || p.drop || p.retransmitOf.SpanID != (SpanID{}) ||
		p.tcp.Flags&tcpRST != 0 || p.tcp.Window == 0 && p.tcp.Flags&tcpACK != 0
	if special || int(x.exported)+1 < cr.maxPackets {
		x.exported++
		s.emitPacketAt(p, at)
		return true
	}
	// Past the cap p is held, as it may be the exchange's last packet; the one held
	// before it was not, and is counted out.
	if x.held >= 0 {
		s.stats.spansCapped.Add(cr.held.slab[x.held].spans())
		x.capped++
	} else {
		x.held, _ = cr.held.alloc()
	}
	cr.held.slab[x.held], *p = *p, cr.held.slab[x.held]
	x.heldAt = at
	return true
}

// account adds p to the exchange's counts and sequence bookkeeping.
func (x *exchange) account(p *packet, fwd bool) {
	x.packets++
	x.bytes += uint32(p.tcp.DataLen)
	x.start, x.end = min(x.start, p.start), max(x.end, p.end)
	if p.retransmitOf.SpanID != (SpanID{}) {
		x.retransmits++
	}
	if p.tcp.Flags&tcpRST != 0 {
		x.rst = true
	}
	mine, theirs := &x.fwdSeq, &x.revSeq
	if !fwd {
		mine, theirs = theirs, mine
	}
	end := p.tcp.Seq + uint32(p.tcp.DataLen)
	switch {
	case p.drop:
		x.drops++
		x.dropReason = p.dropReason
		if p.tcp.DataLen > 0 {
			mine.noteLost(end)
		}
	default:
		if p.tcp.DataLen > 0 {
			mine.noteSent(end)
		}
		if p.tcp.Flags&tcpACK != 0 {
			// An acknowledgement that got through acknowledges the other way's data.
			theirs.noteAcked(p.tcp.Ack)
		}
	}
}

// settled reports whether every byte the exchange saw sent or dropped, either way, was
// acknowledged afterwards: nothing more of it is on its way.
func (x *exchange) settled() bool {
	return !x.fwdSeq.unacked() && !x.revSeq.unacked() && !x.fwdSeq.unrecovered() && !x.revSeq.unrecovered()
}

// seqState's acked is the acknowledgement of its direction's data, sent the other way.
func (q *seqState) unacked() bool {
	return q.hasSent && (!q.hasAcked || after(q.sent, q.acked))
}

func (q *seqState) unrecovered() bool {
	return q.hasLost && (!q.hasAcked || after(q.lost, q.acked))
}

// linkExchange has w's root link to x, once.
func (w *window) linkExchange(x *exchange, st *counters) {
	for i := range w.exchanges {
		if w.exchanges[i].SpanID == x.id {
			return
		}
	}
	if len(w.exchanges) >= windowExchangeLinks {
		st.exchangeLinksDropped.Add(1)
		return
	}
	w.exchanges = append(w.exchanges, Link{TraceID: x.trace, SpanID: x.id, RandomTraceID: x.random, Role: RoleExchange})
}

// relinkSegment makes the segment table name p's span in the exchange's trace, where it
// now is, so that a retransmission of it links there.
func (s *Spanner) relinkSegment(p *packet, x *exchange) {
	k := segmentKey{tuple: p.tuple, seq: p.tcp.Seq, syn: false}
	if i, ok := s.segments.find(k); ok && s.segments.slab[i].first.SpanID == p.id {
		s.segments.slab[i].first.TraceID, s.segments.slab[i].first.RandomTraceID = x.trace, x.random
	}
}

// tickExchanges exports the exchanges that are due at now: quiet for linger once a reply
// began, every packet they claimed ended, and their data was acknowledged both ways; or,
// whatever their state, quiet for the flow idle timeout
// or open for the flow max duration (a peer that never answers keeps retransmissions
// coming for minutes).
func (s *Spanner) tickExchanges(now int64) {
	cr := s.corr
	if cr == nil {
		return
	}
	for xi := range cr.exchanges.slab {
		x := &cr.exchanges.slab[xi]
		if x.id == (SpanID{}) {
			continue // a free slot: released exchanges are zeroed
		}
		quiet := now - x.end
		switch {
		case x.closing && x.inflight == 0:
			s.exportExchange(int32(xi), x.closeEnd)
		case quiet >= s.cfg.idle:
			s.exportExchange(int32(xi), exchangeIdle)
		case now-x.start >= s.cfg.maxDuration:
			s.exportExchange(int32(xi), exchangeMaxDuration)
		case quiet >= cr.linger && x.inflight == 0 && x.packets > 0 && x.revSeq.hasSent && x.settled():
			s.exportExchange(int32(xi), exchangeQuiet)
		}
	}
}

// closeExchanges exports the open exchanges of the connection on flow key k, whose
// window closed for cause.
func (s *Spanner) closeExchanges(k flowKey, cause closeCause) {
	cr := s.corr
	if cr == nil || cause == closeMaxDuration || cause == closeMaxPackets {
		// The connection goes on in a new window: so do its exchanges.
		return
	}
	ci, ok := cr.conns.index[k]
	if !ok {
		return
	}
	c := &cr.conns.slab[ci]
	end := exchangeFlowClose
	if cause == closeShutdown {
		end = exchangeShutdown
	}
	for i := range c.n {
		xi, ok := s.liveExchange(&c.reqs[i])
		switch {
		case !ok:
		case s.corr.exchanges.slab[xi].inflight > 0:
			// A packet of it is still on its way (a delivered segment the kernel frees
			// unseen ends by reuse or timeout): it goes when that one ends.
			x := &s.corr.exchanges.slab[xi]
			x.closing, x.closeEnd = true, end
		default:
			s.exportExchange(xi, end)
		}
	}
}

// flushExchanges exports every open exchange, for shutdown.
func (s *Spanner) flushExchanges() {
	cr := s.corr
	if cr == nil {
		return
	}
	for cr.exchanges.lru.tail >= 0 {
		s.exportExchange(cr.exchanges.lru.tail, exchangeShutdown)
	}
}

// exportExchange sends the exchange in slot xi, after its held last packet, and frees it.
func (s *Spanner) exportExchange(xi int32, end exchangeEnd) {
	cr := s.corr
	x := &cr.exchanges.slab[xi]
	if x.held >= 0 {
		x.exported++
		s.emitPacketAt(&cr.held.slab[x.held], x.heldAt)
		cr.held.slab[x.held].reset()
		cr.held.release(x.held)
		x.held = -1
	}
	if s.rate.take(1, s.now) {
		s.sendExchange(x, end)
	} else {
		s.stats.spansRateLimited.Add(1)
	}
	s.stats.exchangesEnded[end].Add(1)
	cr.exchanges.release(xi)
	cr.exchanges.slab[xi] = exchange{}
}

// sendExchange builds x's span. It is an error when data it carried was dropped and
// never acknowledged afterwards, or when the connection was reset.
func (s *Spanner) sendExchange(x *exchange, end exchangeEnd) {
	b := &s.out
	b.attrs = b.attrs[:0]
	local, peer := x.fwd, reversed(x.fwd)
	if !x.localIsSrc {
		local, peer = peer, local
	}
	b.attrs = append(b.attrs,
		attrkey.NetworkTransport.String(transportName(protoTCP)),
		attrkey.NetworkType.String(networkType(local.Src)),
		attrkey.NetworkLocalAddress.String(b.text.addr(local.Src)),
		attrkey.NetworkLocalPort.Int64(int64(local.SrcPort)),
		attrkey.NetworkPeerAddress.String(b.text.addr(peer.Src)),
		attrkey.NetworkPeerPort.Int64(int64(peer.SrcPort)),
		attrkey.ExchangeSeq.Int64(int64(x.seq)),
		attrkey.ExchangePackets.Int64(int64(x.packets)),
		attrkey.ExchangeBytes.Int64(int64(x.bytes)),
		attrkey.ExchangeRetransmits.Int64(int64(x.retransmits)),
		attrkey.ExchangeDrops.Int64(int64(x.drops)),
		attrkey.ExchangePacketsCapped.Int64(int64(x.capped)),
		attrkey.ExchangeEnd.String(exchangeEndNames[end]),
	)
	sp := Span{
		TraceID:       x.trace,
		SpanID:        x.id,
		ParentID:      x.parent,
		Name:          exchangeSpanName,
		Role:          RoleExchange,
		Kind:          SpanKindInternal,
		StartUnixNano: x.start,
		EndUnixNano:   max(x.end, x.start),
		RandomTraceID: x.random,
	}
	var errType string
	switch {
	case x.fwdSeq.unrecovered() || x.revSeq.unrecovered():
		errType = x.dropReason
	case x.rst:
		errType = "TCP_RST"
	}
	if errType != "" {
		b.attrs = append(b.attrs, attrkey.ErrorType.String(errType))
		sp.Status, sp.StatusDescription = StatusError, errType
	}
	sp.Attrs = b.carve(0)
	b.links = b.links[:0]
	if x.flowRoot != (SpanID{}) {
		b.links = append(b.links, Link{TraceID: x.flowTrace, SpanID: x.flowRoot, RandomTraceID: x.flowRandom, Role: RoleFlow})
		sp.Links = b.links[:1:1]
	}
	b.group = append(b.group[:0], sp)
	s.sink.Export(b.group)
	s.stats.spans.Add(1)
}
