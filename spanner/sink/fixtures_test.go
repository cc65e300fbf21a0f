package sink

import (
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner"
)

// t0 is 2023-11-14 22:13:20 UTC, a fixed instant for golden output.
var t0 = time.Unix(1700000000, 0).UnixNano()

func us(n int64) int64 { return t0 + n*int64(time.Microsecond) }

var (
	traceA = spanner.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
	traceB = spanner.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	rootID = spanner.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

func sid(n byte) spanner.SpanID { return spanner.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, n} }

// stageOf returns a maker of pkt's stage spans: children of pkt in its trace.
func stageOf(pkt spanner.Span) func(n byte, name string, start, end int64, attrs ...attribute.KeyValue) spanner.Span {
	return func(n byte, name string, start, end int64, attrs ...attribute.KeyValue) spanner.Span {
		return spanner.Span{
			TraceID: pkt.TraceID, SpanID: sid(n), ParentID: pkt.SpanID, Name: name, Role: spanner.RoleStage, Kind: spanner.SpanKindInternal,
			StartUnixNano: us(start), EndUnixNano: us(end), Attrs: attrs, RandomTraceID: pkt.RandomTraceID,
		}
	}
}

func tupleAttrs(flags string) []attribute.KeyValue {
	kvs := []attribute.KeyValue{
		attribute.String("network.transport", "tcp"),
		attribute.String("network.type", "ipv4"),
		attribute.String("source.address", "10.0.0.1"),
		attribute.Int("source.port", 40000),
		attribute.String("destination.address", "10.0.0.2"),
		attribute.Int("destination.port", 80),
	}
	if flags != "" {
		kvs = append(kvs, attribute.String("pktspan.tcp.flags", flags))
	}
	return kvs
}

// rootGroup is a closed flow window linked to the window before it, carrying every
// attribute type.
func rootGroup() []spanner.Span {
	attrs := append(tupleAttrs(""),
		attribute.Bool("pktspan.flow.closed_by_fin", true),
		attribute.Float64("pktspan.test.ratio", 0.25),
		attribute.BoolSlice("pktspan.test.bools", []bool{true, false}),
		attribute.Int64Slice("pktspan.test.ints", []int64{-1, 0, 1 << 40}),
		attribute.Float64Slice("pktspan.test.floats", []float64{1.5, -2}),
		attribute.StringSlice("pktspan.test.strings", []string{"a", "b\"c"}),
		attribute.Int("pktspan.packets", 2),
		attribute.String("pktspan.flow.close", "fin"),
	)
	return []spanner.Span{{
		TraceID:       traceA,
		SpanID:        rootID,
		Name:          "flow tcp",
		Role:          spanner.RoleFlow,
		Kind:          spanner.SpanKindInternal,
		StartUnixNano: us(0),
		EndUnixNano:   us(1500000),
		Attrs:         attrs,
		Links: []spanner.Link{{
			TraceID:       traceB,
			SpanID:        sid(0x99),
			Attrs:         []attribute.KeyValue{attribute.String("pktspan.link", "previous_window")},
			RandomTraceID: true,
			Role:          spanner.RoleFlow,
		}},
	}}
}

// tcpGroup is an accepted SYN from its receive to its delivery to the socket.
func tcpGroup() []spanner.Span {
	pkt := spanner.Span{
		TraceID: traceA, SpanID: sid(1), ParentID: rootID, Name: "packet", Role: spanner.RolePacket, Kind: spanner.SpanKindInternal,
		StartUnixNano: us(0), EndUnixNano: us(42),
		Attrs: append(tupleAttrs("SYN"),
			attribute.String("network.interface.name", "veth0"),
			attribute.Int("pktspan.ifindex", 7),
			attribute.Int64("pktspan.netns", 4026532281),
			attribute.String("pktspan.skb.address", "0xffff888004a1c200"),
			attribute.Int("pktspan.skb.len", 60),
			attribute.Int("pktspan.skb.mark", 0),
			attribute.Int64("pktspan.tcp.seq", 3735928559),
			attribute.Int64("pktspan.tcp.ack", 0),
		),
	}
	stage := stageOf(pkt)
	return []spanner.Span{
		pkt,
		stage(2, "net:netif_receive_skb", 0, 0),
		stage(3, "ip_rcv_core", 1, 3, attribute.Int64("pktspan.retval", 0)),
		stage(4, "nf_hook_slow", 4, 9,
			attribute.String("pktspan.netfilter.hook", "PREROUTING"),
			attribute.String("pktspan.netfilter.pf", "ipv4"),
			attribute.String("pktspan.netfilter.verdict", "ACCEPT"),
			attribute.Int64("pktspan.retval", 1)),
		stage(5, "ip_local_deliver", 10, 30,
			attribute.String("network.interface.name", "lo"),
			attribute.Int64("pktspan.netns", 4026531840)),
		stage(6, "tcp_v4_rcv", 31, 40, attribute.Int64("pktspan.retval", 0)),
		stage(7, "skb:consume_skb", 42, 42),
	}
}

// dropGroup is an ICMP echo dropped by an nftables rule in INPUT: not TCP, so its trace
// ID is random.
func dropGroup() []spanner.Span {
	pkt := spanner.Span{
		TraceID: traceB, SpanID: sid(0x11), ParentID: sid(0x10), Name: "packet", Role: spanner.RolePacket, Kind: spanner.SpanKindInternal,
		StartUnixNano: us(100), EndUnixNano: us(120), RandomTraceID: true,
		Attrs: []attribute.KeyValue{
			attribute.String("network.transport", "icmp"),
			attribute.String("network.type", "ipv4"),
			attribute.String("source.address", "10.0.0.1"),
			attribute.String("destination.address", "10.0.0.2"),
			attribute.String("network.interface.name", "eth0"),
			attribute.Int64("pktspan.netns", 4026531840),
			attribute.String("pktspan.skb.address", "0xffff888012345600"),
			attribute.Int("pktspan.skb.len", 84),
			attribute.String("pktspan.drop.reason", "NETFILTER_DROP"),
			attribute.String("pktspan.drop.location", "nft_do_chain+0x1f3"),
			attribute.String("error.type", "NETFILTER_DROP"),
		},
		Status:            spanner.StatusError,
		StatusDescription: "NETFILTER_DROP",
		Events: []spanner.SpanEvent{{
			Name:         "drop",
			TimeUnixNano: us(120),
			Attrs: []attribute.KeyValue{
				attribute.String("pktspan.drop.reason", "NETFILTER_DROP"),
				attribute.String("pktspan.drop.location", "nft_do_chain+0x1f3"),
			},
		}},
	}
	stage := stageOf(pkt)
	return []spanner.Span{
		pkt,
		stage(0x12, "net:netif_receive_skb", 100, 100),
		stage(0x13, "nf_hook_slow", 105, 118,
			attribute.String("pktspan.netfilter.hook", "INPUT"),
			attribute.String("pktspan.netfilter.pf", "ipv4"),
			attribute.String("pktspan.netfilter.verdict", "DROP"),
			attribute.Int64("pktspan.retval", -1)),
		stage(0x14, "skb:kfree_skb", 120, 120),
	}
}

// normalFreeGroup is an ACK the TCP state machine took and the kernel freed with a drop
// reason: a normal end, not a drop.
func normalFreeGroup() []spanner.Span {
	pkt := spanner.Span{
		TraceID: traceB, SpanID: sid(0x21), ParentID: sid(0x20), Name: "packet", Role: spanner.RolePacket, Kind: spanner.SpanKindInternal,
		StartUnixNano: us(100), EndUnixNano: us(110), RandomTraceID: true,
		Attrs: []attribute.KeyValue{
			attribute.String("network.transport", "tcp"),
			attribute.String("network.type", "ipv4"),
			attribute.String("source.address", "10.0.0.1"),
			attribute.Int("source.port", 43210),
			attribute.String("destination.address", "10.0.0.2"),
			attribute.Int("destination.port", 80),
			attribute.String("network.interface.name", "eth0"),
			attribute.Int64("pktspan.netns", 4026531840),
			attribute.String("pktspan.skb.address", "0xffff888012345700"),
			attribute.Int("pktspan.skb.len", 52),
			attribute.String("pktspan.tcp.flags", "ACK"),
			attribute.String("pktspan.free.reason", "NOT_SPECIFIED"),
			attribute.String("pktspan.free.location", "tcp_rcv_state_process+0x3a1"),
		},
	}
	stage := stageOf(pkt)
	return []spanner.Span{
		pkt,
		stage(0x22, "net:netif_receive_skb", 100, 100),
		stage(0x23, "skb:kfree_skb", 110, 110),
	}
}

// stackedDropGroup is dropGroup under --stack, with a function backend: its drop event
// carries the kernel stack, its nf_hook_slow stage the nft table and chain.
func stackedDropGroup() []spanner.Span {
	g := dropGroup()
	g[2].Attrs = append(g[2].Attrs[:len(g[2].Attrs):len(g[2].Attrs)],
		attribute.String("pktspan.netfilter.table", "filter"), attribute.String("pktspan.netfilter.chain", "input"))
	ev := g[0].Events[0]
	ev.Attrs = append(ev.Attrs[:len(ev.Attrs):len(ev.Attrs)], attribute.String("pktspan.drop.stack",
		"sk_skb_reason_drop+0x5e\nnft_do_chain+0x1f3\nnft_do_chain_ipv4+0x6c\nnf_hook_slow+0x44\nip_local_deliver+0xd9"))
	g[0].Events = []spanner.SpanEvent{ev}
	return g
}

// natCloneGroup is a clone of tcpGroup's skb (GSO, two wire packets) leaving through a
// masquerade: the POSTROUTING nf_hook_slow stage rewrote its source. Its packet span
// links to the packet span of the skb it was cloned from.
func natCloneGroup() []spanner.Span {
	pkt := spanner.Span{
		TraceID: traceA, SpanID: sid(0x21), ParentID: rootID, Name: "packet", Role: spanner.RolePacket, Kind: spanner.SpanKindInternal,
		StartUnixNano: us(200), EndUnixNano: us(230),
		Attrs: append(tupleAttrs("ACK"),
			attribute.String("pktspan.nat.pre", "10.0.0.1:40000 > 10.0.0.2:80"),
			attribute.String("pktspan.nat.post", "192.0.2.1:61000 > 10.0.0.2:80"),
			attribute.String("network.interface.name", "eth0"),
			attribute.Int("pktspan.ifindex", 2),
			attribute.Int64("pktspan.netns", 4026531840),
			attribute.String("pktspan.skb.address", "0xffff888004a1d000"),
			attribute.String("pktspan.skb.clone_of", "0xffff888004a1c200"),
			attribute.Int("pktspan.skb.len", 2948),
			attribute.Int("pktspan.skb.mark", 0),
			attribute.Int("pktspan.skb.segments", 2),
		),
		Links: []spanner.Link{{TraceID: traceA, SpanID: sid(1), Role: spanner.RolePacket}},
	}
	stage := stageOf(pkt)
	return []spanner.Span{
		pkt,
		stage(0x22, "skb_clone", 200, 200, attribute.Int64("pktspan.retval", -131387208134656)),
		stage(0x23, "nf_hook_slow", 205, 210,
			attribute.String("pktspan.nat.pre", "10.0.0.1:40000 > 10.0.0.2:80"),
			attribute.String("pktspan.nat.post", "192.0.2.1:61000 > 10.0.0.2:80"),
			attribute.String("pktspan.netfilter.hook", "POSTROUTING"),
			attribute.String("pktspan.netfilter.pf", "ipv4"),
			attribute.String("pktspan.netfilter.verdict", "ACCEPT"),
			attribute.Int64("pktspan.retval", 1)),
		stage(0x24, "net:net_dev_queue", 221, 221),
		stage(0x25, "net:net_dev_xmit", 225, 225),
		stage(0x26, "skb:consume_skb", 230, 230),
	}
}

// namedNetnsGroup is a request leaving a container for the host, then for a namespace
// no namer knows: the netns namer's attributes name the first two where they change.
func namedNetnsGroup() []spanner.Span {
	pkt := spanner.Span{
		TraceID: traceA, SpanID: sid(0x31), ParentID: rootID, Name: "packet", Role: spanner.RolePacket, Kind: spanner.SpanKindInternal,
		StartUnixNano: us(0), EndUnixNano: us(30),
		Attrs: append(tupleAttrs("SYN"),
			attribute.String("network.interface.name", "eth0"),
			attribute.Int("pktspan.ifindex", 2),
			attribute.Int64("pktspan.netns", 4026532300),
			attribute.String("pktspan.netns.name", "web"),
			attribute.String("container.name", "web"),
			attribute.String("pktspan.skb.address", "0xffff888004a1c300"),
		),
	}
	stage := stageOf(pkt)
	return []spanner.Span{
		pkt,
		stage(0x32, "net:net_dev_queue", 0, 0),
		stage(0x33, "net:netif_receive_skb", 5, 5,
			attribute.String("network.interface.name", "veth1a2b3c"),
			attribute.Int("pktspan.ifindex", 9),
			attribute.Int64("pktspan.netns", 4026531833),
			attribute.String("pktspan.netns.name", "host")),
		// The interface changes, the namespace does not: the name stays.
		stage(0x34, "net:net_dev_queue", 10, 10,
			attribute.String("network.interface.name", "docker0"),
			attribute.Int("pktspan.ifindex", 3),
			attribute.Int64("pktspan.netns", 4026531833)),
		stage(0x35, "net:netif_receive_skb", 20, 20,
			attribute.String("network.interface.name", "veth0"),
			attribute.Int("pktspan.ifindex", 7),
			attribute.Int64("pktspan.netns", 4026532281)),
		stage(0x36, "skb:consume_skb", 30, 30),
	}
}
