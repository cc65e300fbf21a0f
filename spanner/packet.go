package spanner

// endCause says why a packet span ended; its name is pktspan.packet.end.
type endCause uint8

const (
	endFreed endCause = iota
	endDropped
	endTimeout
	endEvicted
	endFlush
	// endReused: the kernel freed the skb on a path with no tracepoint (TCP and UDP
	// free delivered skbs so) and its address came back as a new skb.
	endReused
	endCauses
)

var endNames = [endCauses]string{"freed", "dropped", "timeout", "evicted", "flush", "reused"}

// stage is one kernel hook hit, kept until its packet ends. Attributes are built only at
// export, so recording a stage copies a few words and allocates nothing.
type stage struct {
	name       string
	start, end int64
	parent     int32 // index of the enclosing stage, -1 for the packet span
	ifindex    uint32
	netns      uint32
	ifname     string
	// tuple is the packet's tuple at the function's exit when the exit carried one (so
	// the function that rewrote it shows the change), else where the stage began;
	// invalid when the hook could not read it.
	tuple     Tuple
	nf        Netfilter
	nfHook    bool // nf_hook_slow: a netfilter drop inside it names its nft table and chain here
	nft       NFT
	retval    int64
	hasRetval bool
	retPtr    bool // retval is a pointer
	drop      bool // the kfree_skb stage of a drop
}

// packet is one open skb lifetime; ended packets held by export mode drops keep it.
type packet struct {
	skb              uint64
	id               SpanID // drawn at the start, so that clones can link to it
	start, last, end int64
	events           uint64
	cause            endCause // set when the packet ends

	// The window the packet joined, whose trace and root span are the packet span's;
	// -1 until it joins one. The window outlives its packets, held ones included.
	win int32

	// From the first event with a valid tuple.
	tuple                     Tuple
	tcp                       TCP
	icmp                      ICMP
	ifname                    string
	ifindex, netns, len, mark uint32

	// The latest valid tuple and conntrack tuple: a change is a translation to learn.
	lastTuple, lastCT Tuple
	segments          uint16 // the most GSO segments seen

	// A clone's parent skb, and the parent's packet span when it was open in a window:
	// the clone joined that window, so the span is in the clone's own trace.
	cloneOf  uint64
	linkSpan SpanID
	// The packet span of the segment's first sighting, when this packet is a TCP
	// retransmission (noteSegment); zero otherwise.
	retransmitOf Link
	// The exchange of the next request when this segment carries its start too.
	nextExchange Link
	// The exchange that claimed the packet while it is on its way (--correlate http):
	// its slot, and its span ID, zero when none (the slot may be reused once it is gone).
	exch    int32
	exchID  SpanID
	exchFwd bool // it goes the request's way

	// freed is set by skb:kfree_skb or skb:consume_skb. The packet then ends at once,
	// unless function stages are still open: the functions that freed the skb (udp_rcv,
	// nf_hook_slow) return after the free, and their exits still belong to this packet.
	// It ends as dropped when drop is set, else as freed.
	freed bool
	// delivered is set by a Deliver stage.
	delivered bool
	// The devices the skb last passed net:net_dev_queue and net:netif_receive_skb on.
	queued, received device

	drop bool
	// dropReason and dropLocation are the free's reason and location, of a drop or of a
	// normal end with a drop reason (the event's NormalFree).
	dropReason, dropLocation string
	dropStack                string // --stack: the kernel stack, a frame per line
	nft                      NFT    // the nft table and chain that dropped it
	dropAt                   int64

	stages []stage
	stack  []int32 // open Enter stages, innermost last
}

// spans is how many spans exporting p makes.
func (p *packet) spans() uint64 { return 1 + uint64(len(p.stages)) }

// setHeaders takes the packet span's header attributes from ev, whose tuple is valid.
func (p *packet) setHeaders(ev *Event) {
	p.tuple, p.lastTuple, p.tcp, p.icmp = ev.Tuple, ev.Tuple, ev.TCP, ev.ICMP
	p.ifname, p.ifindex, p.netns, p.len, p.mark = ev.Ifname, ev.Ifindex, ev.Netns, ev.Len, ev.Mark
}

// reset empties a packet record for reuse, keeping its slices' capacity.
func (p *packet) reset() { *p = packet{win: -1, stages: p.stages[:0], stack: p.stack[:0]} }

// packetTable holds open packets keyed by skb address. Slots are reused across packets
// so that their stage slices keep their capacity.
type packetTable struct{ table[uint64, packet] }

func newPacketTable(limit int) packetTable { return packetTable{newTable[uint64, packet](limit)} }

// alloc takes a slot for skb; release left it reset, and only a new slot's win needs
// setting.
func (t *packetTable) alloc(skb uint64) int32 {
	i := t.table.alloc(skb)
	p := &t.slab[i]
	p.skb, p.win = skb, -1
	return i
}

func (t *packetTable) release(i int32) {
	t.table.release(i)
	t.slab[i].reset()
}

// addStage records ev as a stage of p.
func (s *Spanner) addStage(p *packet, ev *Event, name string) {
	t := ev.TimeUnixNano
	if ev.Kind == KindExit {
		for k := len(p.stack) - 1; k >= 0; k-- {
			st := &p.stages[p.stack[k]]
			if st.name != name {
				continue
			}
			// Stages opened inside it whose exit was missed cannot outlive it.
			for _, inner := range p.stack[k+1:] {
				p.stages[inner].end = max(t, p.stages[inner].start)
			}
			st.end = max(t, st.start)
			st.retval, st.hasRetval, st.retPtr = ev.Retval, !ev.Stage.Void, ev.Stage.Pointer
			if ev.Tuple.Valid() {
				st.tuple = ev.Tuple
			}
			if ev.Netfilter.Valid {
				// nf_hook_slow knows its verdict only on return.
				st.nf = ev.Netfilter
			}
			p.stack = p.stack[:k]
			return
		}
	}
	if len(p.stages) >= s.cfg.stages {
		// At the limit, an unmatched exit is most likely the end of an enter that was
		// already counted as truncated.
		if ev.Kind != KindExit {
			s.stats.stagesTruncated.Add(1)
		}
		return
	}
	parent := int32(-1)
	if n := len(p.stack); n > 0 {
		parent = p.stack[n-1]
	}
	// Some hooks cannot see the device or namespace (0 and ""): they are where the
	// previous hook saw the skb, not a change.
	ifindex, netns, ifname := ev.Ifindex, ev.Netns, ev.Ifname
	if n := len(p.stages); n > 0 {
		prev := &p.stages[n-1]
		if netns == 0 {
			netns = prev.netns
		}
		if ifindex == 0 && ifname == "" {
			ifindex, ifname = prev.ifindex, prev.ifname
		}
	}
	p.stages = append(p.stages, stage{
		name:      name,
		start:     t,
		end:       t,
		parent:    parent,
		ifindex:   ifindex,
		netns:     netns,
		ifname:    ifname,
		tuple:     ev.Tuple,
		nf:        ev.Netfilter,
		nfHook:    ev.Stage.NFHook,
		retval:    ev.Retval,
		hasRetval: ev.Kind == KindExit && !ev.Stage.Void,
		retPtr:    ev.Stage.Pointer,
		drop:      ev.Stage.Free && ev.Drop,
	})
	if ev.Kind == KindEnter {
		p.stack = append(p.stack, int32(len(p.stages)-1))
	}
}

// markNFT puts the nft table and chain of p's drop on the innermost open netfilter hook
// stage: the free happened inside it.
func (p *packet) markNFT(nft NFT) {
	for k := len(p.stack) - 1; k >= 0; k-- {
		if st := &p.stages[p.stack[k]]; st.nfHook {
			st.nft = nft
			return
		}
	}
}

// device is a network device: ifindexes repeat across namespaces. ifindex 0 is none.
type device struct{ ifindex, netns uint32 }

// passed is where p keeps the device it last passed ev's hook on; nil at hooks other
// than the Pass ones.
func (p *packet) passed(ev *Event) *device {
	switch ev.Stage.Pass {
	case PassQueue:
		return &p.queued
	case PassReceive:
		return &p.received
	}
	return nil
}

// notePass records the device ev passed its hook on, at the Pass hooks.
func (p *packet) notePass(ev *Event) {
	if d := p.passed(ev); d != nil {
		*d = device{ev.Ifindex, ev.Netns}
	}
}

// tcpIdentity are the TCP flags no hook on the way changes (ECE and CWR may be
// rewritten); with seq and ack they tell one segment from the next.
const tcpIdentity = 0x3f

// isNewSKB reports whether ev, at the address of the open packet p, must belong to a
// new skb at a reused address, p having been freed where no tracepoint saw it: its IP
// version or protocol differs, or its TCP segment does (NAT rewrites addresses and
// ports, never these), or p was already delivered to a socket and ev is neither a free
// nor another copy, or ev passes a Pass hook on the device p last passed it on.
func isNewSKB(p *packet, ev *Event) bool {
	if ev.Kind == KindExit {
		return false
	}
	if p.delivered && !ev.Stage.Free && !ev.Stage.Deliver {
		return true
	}
	if d := p.passed(ev); d != nil && d.ifindex != 0 && *d == (device{ev.Ifindex, ev.Netns}) {
		return true
	}
	if !ev.Tuple.Valid() || !p.tuple.Valid() {
		return false
	}
	if ev.Tuple.Proto != p.tuple.Proto || ev.Tuple.Src.Is4() != p.tuple.Src.Is4() {
		return true
	}
	if p.tuple.Proto != protoTCP {
		return false
	}
	return ev.TCP.Seq != p.tcp.Seq || ev.TCP.Ack != p.tcp.Ack || (ev.TCP.Flags^p.tcp.Flags)&tcpIdentity != 0
}

// closesStage reports whether ev is the exit of one of p's open stages.
func closesStage(p *packet, ev *Event, name string) bool {
	if ev.Kind != KindExit {
		return false
	}
	for _, k := range p.stack {
		if p.stages[k].name == name {
			return true
		}
	}
	return false
}

// endPacket ends the packet in slot i at time end, hands it to the export policy when
// it belongs to a flow, and frees the slot. A packet already freed keeps the cause of
// its free.
func (s *Spanner) endPacket(i int32, cause endCause, end int64) {
	p := &s.packets.slab[i]
	switch {
	case p.drop:
		cause = endDropped
	case p.freed:
		cause = endFreed
	}
	p.cause = cause
	p.end = max(end, p.start)
	for _, k := range p.stack {
		p.stages[k].end = max(p.end, p.stages[k].start)
	}
	p.stack = p.stack[:0]
	if p.win < 0 {
		s.stats.packetsNoFlow.Add(1)
		s.stats.eventsNoFlow.Add(p.events)
	} else {
		s.packetDone(p)
	}
	s.stats.packetsEnded[cause].Add(1)
	s.stats.packetsOpen.Add(decrement)
	s.packets.release(i)
}

// evictPacket makes room for a new packet by ending the least recently seen one.
func (s *Spanner) evictPacket() {
	if !s.warnedPackets {
		s.warnedPackets = true
		s.log.Warn("packet table full, evicting least recently seen packets", "limit", s.cfg.packets)
	}
	i := s.packets.lru.tail
	s.endPacket(i, endEvicted, s.packets.slab[i].last)
}
