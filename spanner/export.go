package spanner

import (
	"slices"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// exportBuf holds the buffers reused by every export: a sink must not keep what it is
// given, so one group, one attribute arena and one event and link slice serve all spans.
type exportBuf struct {
	group  []Span
	attrs  []attribute.KeyValue
	events []SpanEvent
	links  []Link
	ids    []SpanID
	hex    hexCache
	text   textCache
}

// appendTuple appends the transport, network type, source and destination attributes
// of t, a valid tuple; ports only for protocols that have them.
func (b *exportBuf) appendTuple(t Tuple) {
	b.attrs = append(b.attrs,
		attrkey.NetworkTransport.String(transportName(t.Proto)),
		attrkey.NetworkType.String(networkType(t.Src)),
		attrkey.SourceAddress.String(b.text.addr(t.Src)),
		attrkey.DestinationAddress.String(b.text.addr(t.Dst)),
	)
	if hasPorts(t.Proto) {
		b.attrs = append(b.attrs, attrkey.SourcePort.Int64(int64(t.SrcPort)), attrkey.DestinationPort.Int64(int64(t.DstPort)))
	}
}

// appendDrop appends the reason and, when known, the location of p's drop.
func (b *exportBuf) appendDrop(p *packet) {
	b.attrs = append(b.attrs, attrkey.DropReason.String(p.dropReason))
	if p.dropLocation != "" {
		b.attrs = append(b.attrs, attrkey.DropLocation.String(p.dropLocation))
	}
}

// appendNFT appends the nft table and chain of a drop, when known.
func (b *exportBuf) appendNFT(nft NFT) {
	if nft.Table == "" && nft.Chain == "" {
		return
	}
	b.attrs = append(b.attrs, attrkey.NetfilterTable.String(nft.Table), attrkey.NetfilterChain.String(nft.Chain))
}

// carve returns the attributes appended since from, capped so that a sink appending to
// them cannot overwrite the next span's.
func (b *exportBuf) carve(from int) []attribute.KeyValue {
	n := len(b.attrs)
	return b.attrs[from:n:n]
}

// place is where a packet span goes: its trace and parent (the flow window's root, or
// an exchange in the application's trace), and the flow window's trace, which a
// clone's link to its parent names.
type place struct {
	trace      TraceID
	parent     SpanID
	random     bool
	flowTrace  TraceID
	flowRandom bool
}

// flowPlace is the place of p in its window's trace.
func (s *Spanner) flowPlace(p *packet) place {
	w := &s.windows.slab[p.win]
	return place{trace: w.trace, parent: w.root, random: w.random, flowTrace: w.trace, flowRandom: w.random}
}

// exportPacket sends the packet span followed by its stage spans in start-time order.
func (s *Spanner) exportPacket(p *packet, pl place) {
	b := &s.out
	b.attrs, b.events = b.attrs[:0], b.events[:0]
	proto := p.tuple.Proto

	b.appendTuple(p.tuple)
	if p.lastTuple != p.tuple {
		b.attrs = append(b.attrs, attrkey.NATPre.String(b.text.tuple(p.tuple)), attrkey.NATPost.String(b.text.tuple(p.lastTuple)))
	}
	if p.ifname != "" {
		b.attrs = append(b.attrs, attrkey.NetworkInterfaceName.String(p.ifname))
	}
	b.attrs = append(b.attrs, attrkey.Ifindex.Int64(int64(p.ifindex)), attrkey.Netns.Int64(int64(p.netns)))
	b.attrs = append(b.attrs, s.cfg.netnsNamer.NetnsAttrs(p.netns, p.start)...)
	b.attrs = append(b.attrs, attrkey.SKBAddress.String(s.skbIDs.get(&b.hex, p.skb)))
	if p.cloneOf != 0 {
		b.attrs = append(b.attrs, attrkey.SKBCloneOf.String(s.skbIDs.get(&b.hex, p.cloneOf)))
	}
	b.attrs = append(b.attrs,
		attrkey.SKBLen.Int64(int64(p.len)),
		attrkey.SKBMark.Int64(int64(p.mark)),
		attrkey.SKBSegments.Int64(int64(max(p.segments, 1))),
	)
	if proto == protoTCP {
		if p.tcp.Flags != 0 {
			b.attrs = append(b.attrs, attrkey.TCPFlags.String(tcpFlags[p.tcp.Flags]))
		}
		b.attrs = append(b.attrs, attrkey.TCPSeq.Int64(int64(p.tcp.Seq)), attrkey.TCPAck.Int64(int64(p.tcp.Ack)))
		if p.retransmitOf.SpanID != (SpanID{}) {
			b.attrs = append(b.attrs, attrkey.TCPRetransmit.Bool(true))
		}
	}
	if proto == protoICMP || proto == protoICMPv6 {
		b.attrs = append(b.attrs, attrkey.ICMPType.Int64(int64(p.icmp.Type)), attrkey.ICMPCode.Int64(int64(p.icmp.Code)))
	}
	b.attrs = append(b.attrs, attrkey.PacketEnd.String(endNames[p.cause]))

	// The group is filled in place: a Span is some 200 bytes, and building each in a
	// local and appending it copied every one once more.
	g := slices.Grow(b.group[:0], 1+len(p.stages))[:1]
	pkt := &g[0]
	// Zeroed, then set field by field: a composite literal is built aside and copied.
	*pkt = Span{}
	pkt.TraceID, pkt.SpanID, pkt.ParentID = pl.trace, p.id, pl.parent
	pkt.Name, pkt.Role, pkt.Kind = packetSpanName, RolePacket, SpanKindInternal
	pkt.StartUnixNano, pkt.EndUnixNano = p.start, p.end
	pkt.RandomTraceID, pkt.SKB, pkt.SKBCloneOf = pl.random, p.skb, p.cloneOf
	if p.drop {
		b.appendDrop(p)
		b.appendNFT(p.nft)
		b.attrs = append(b.attrs, attrkey.ErrorType.String(p.dropReason))
		pkt.Status, pkt.StatusDescription = StatusError, p.dropReason
	} else if p.dropReason != "" {
		b.attrs = append(b.attrs, attrkey.FreeReason.String(p.dropReason))
		if p.dropLocation != "" {
			b.attrs = append(b.attrs, attrkey.FreeLocation.String(p.dropLocation))
		}
	}
	pkt.Attrs = b.carve(0)
	if p.drop {
		// The drop event repeats the reason and location, and alone carries the stack.
		from := len(b.attrs)
		b.appendDrop(p)
		if p.dropStack != "" {
			b.attrs = append(b.attrs, attrkey.DropStack.String(p.dropStack))
		}
		b.events = append(b.events, SpanEvent{Name: dropEventName, TimeUnixNano: p.dropAt, Attrs: b.carve(from)})
		pkt.Events = b.events[:1:1]
	}
	// A clone links to the skb it was cloned from, a retransmission to the segment's first
	// sighting; no packet is both. A segment that carries the start of the next request
	// too (GSO, pipelining) links to that request's exchange.
	b.links = b.links[:0]
	switch {
	case p.linkSpan != (SpanID{}):
		b.links = append(b.links, Link{TraceID: pl.flowTrace, SpanID: p.linkSpan, RandomTraceID: pl.flowRandom, Role: RolePacket})
	case p.retransmitOf.SpanID != (SpanID{}):
		b.links = append(b.links, p.retransmitOf)
	}
	if p.nextExchange.SpanID != (SpanID{}) {
		b.links = append(b.links, p.nextExchange)
	}
	if n := len(b.links); n > 0 {
		pkt.Links = b.links[:n:n]
	}

	b.ids = b.ids[:0]
	for range p.stages {
		b.ids = append(b.ids, s.cfg.spanID())
	}
	// A stage names its interface and netns only where the packet moved, starting from
	// where the packet span says it was, the netns's owner only where the netns changed,
	// and its tuple before and after only where the tuple changed (NAT).
	ifindex, netns, ifname := p.ifindex, p.netns, p.ifname
	var tuple Tuple
	for k := range p.stages {
		st := &p.stages[k]
		from := len(b.attrs)
		if st.ifindex != ifindex || st.netns != netns || st.ifname != ifname {
			netnsChanged := st.netns != netns
			ifindex, netns, ifname = st.ifindex, st.netns, st.ifname
			if ifname != "" {
				b.attrs = append(b.attrs, attrkey.NetworkInterfaceName.String(ifname))
			}
			b.attrs = append(b.attrs, attrkey.Ifindex.Int64(int64(ifindex)), attrkey.Netns.Int64(int64(netns)))
			if netnsChanged {
				b.attrs = append(b.attrs, s.cfg.netnsNamer.NetnsAttrs(netns, st.start)...)
			}
		}
		if st.tuple.Valid() {
			if tuple.Valid() && st.tuple != tuple {
				b.attrs = append(b.attrs, attrkey.NATPre.String(b.text.tuple(tuple)), attrkey.NATPost.String(b.text.tuple(st.tuple)))
			}
			tuple = st.tuple
		}
		if st.nf.Valid {
			b.attrs = append(b.attrs,
				attrkey.NetfilterHook.String(nfHookName(st.nf.Hook)),
				attrkey.NetfilterPF.String(nfPFName(st.nf.PF)),
				attrkey.NetfilterVerdict.String(nfVerdictName(st.nf.Verdict)),
			)
		}
		b.appendNFT(st.nft)
		switch {
		case st.hasRetval && st.retPtr:
			b.attrs = append(b.attrs, attrkey.Retval.String(s.skbIDs.get(&b.hex, uint64(st.retval))))
		case st.hasRetval:
			b.attrs = append(b.attrs, attrkey.Retval.Int64(st.retval))
		}
		if st.drop {
			b.attrs = append(b.attrs, attrkey.DropReason.String(p.dropReason))
		}
		parent := pkt.SpanID
		if st.parent >= 0 {
			parent = b.ids[st.parent]
		}
		g = g[:len(g)+1]
		span := &g[len(g)-1]
		*span = Span{}
		span.TraceID, span.SpanID, span.ParentID = pkt.TraceID, b.ids[k], parent
		span.Name, span.Role, span.Kind = st.name, RoleStage, SpanKindInternal
		span.StartUnixNano, span.EndUnixNano = st.start, st.end
		span.RandomTraceID = pkt.RandomTraceID
		if len(b.attrs) > from {
			span.Attrs = b.carve(from)
		}
	}
	sortByStart(g[1:])
	b.group = g
	s.sink.Export(g)
	s.stats.spans.Add(uint64(len(g)))
}

// exportRoot sends the root span of window w. Its source and destination are the
// client and server of the flow's key: conntrack's original tuple under NAT.
func (s *Spanner) exportRoot(w *window) {
	b := &s.out
	b.attrs = b.attrs[:0]
	k := w.key
	// The flow as its client sent it.
	tu := Tuple{Src: k.a, Dst: k.b, SrcPort: k.pa, DstPort: k.pb, Proto: k.proto}
	if !w.clientIsA {
		tu = Tuple{Src: k.b, Dst: k.a, SrcPort: k.pb, DstPort: k.pa, Proto: k.proto}
	}
	b.appendTuple(tu)
	b.attrs = append(b.attrs,
		attrkey.FlowPackets.Int64(int64(w.packets)),
		attrkey.FlowClose.String(closeNames[w.cause]),
	)
	root := Span{
		TraceID:       w.trace,
		SpanID:        w.root,
		Name:          rootName(k.proto),
		Role:          RoleFlow,
		Kind:          SpanKindInternal,
		StartUnixNano: w.start,
		EndUnixNano:   max(w.last, w.start),
		Attrs:         b.carve(0),
		RandomTraceID: w.random,
	}
	b.links = b.links[:0]
	if w.prevRoot != (SpanID{}) {
		b.links = append(b.links, Link{TraceID: w.prevTrace, SpanID: w.prevRoot, RandomTraceID: w.prevRandom, Role: RoleFlow})
	}
	// The exchanges that took packets of this window, in the applications' traces.
	b.links = append(b.links, w.exchanges...)
	if n := len(b.links); n > 0 {
		root.Links = b.links[:n:n]
	}
	b.group = append(b.group[:0], root)
	s.sink.Export(b.group)
	s.stats.spans.Add(1)
}

// sortByStart is a stable insertion sort: stages arrive almost in time order (events of
// one skb rarely cross CPUs), so it is linear in practice and allocates nothing.
func sortByStart(g []Span) {
	for i := 1; i < len(g); i++ {
		if g[i].StartUnixNano >= g[i-1].StartUnixNano {
			continue
		}
		sp := g[i]
		j := i
		for j > 0 && g[j-1].StartUnixNano > sp.StartUnixNano {
			g[j] = g[j-1]
			j--
		}
		g[j] = sp
	}
}
