// Package attrkey is pktspan's attribute vocabulary: every key a span, an event or the
// resource carries, in one place that the spanner, its sinks and the netns namer share.
// OpenTelemetry semantic conventions name a key where one exists, else it has the
// pktspan. prefix; docs/DESIGN.md and the README say which spans carry which keys.
package attrkey

import "go.opentelemetry.io/otel/attribute"

// The flow's and the packet's addresses (root and packet spans).
const (
	NetworkTransport   = attribute.Key("network.transport")
	NetworkType        = attribute.Key("network.type")
	SourceAddress      = attribute.Key("source.address")
	SourcePort         = attribute.Key("source.port")
	DestinationAddress = attribute.Key("destination.address")
	DestinationPort    = attribute.Key("destination.port")
)

// Where the skb was: on the packet span, and on a stage where it moved.
const (
	NetworkInterfaceName = attribute.Key("network.interface.name")
	Ifindex              = attribute.Key("pktspan.ifindex")
	Netns                = attribute.Key("pktspan.netns")
)

// The owner of the netns the skb was in, as a NetnsNamer tells it: on the packet span,
// and on a stage where the netns changes. NetnsName is `host`, an ip netns name, a
// container's name or a pod's namespace/name. Semantic conventions have no key for a
// Compose service (docker-compose's com.docker.compose.service label), hence
// pktspan.compose.service.
const (
	ContainerID          = attribute.Key("container.id")
	ContainerName        = attribute.Key("container.name")
	ContainerRuntimeName = attribute.Key("container.runtime.name")
	K8sPodName           = attribute.Key("k8s.pod.name")
	K8sPodUID            = attribute.Key("k8s.pod.uid")
	K8sNamespaceName     = attribute.Key("k8s.namespace.name")
	NetnsName            = attribute.Key("pktspan.netns.name")
	ComposeService       = attribute.Key("pktspan.compose.service")
)

// The skb and its TCP header (packet span).
const (
	SKBAddress    = attribute.Key("pktspan.skb.address")
	SKBLen        = attribute.Key("pktspan.skb.len")
	SKBMark       = attribute.Key("pktspan.skb.mark")
	SKBSegments   = attribute.Key("pktspan.skb.segments")
	SKBCloneOf    = attribute.Key("pktspan.skb.clone_of")
	TCPFlags      = attribute.Key("pktspan.tcp.flags")
	TCPSeq        = attribute.Key("pktspan.tcp.seq")
	TCPAck        = attribute.Key("pktspan.tcp.ack")
	TCPRetransmit = attribute.Key("pktspan.tcp.retransmit")
	ICMPType      = attribute.Key("pktspan.icmp.type")
	ICMPCode      = attribute.Key("pktspan.icmp.code")
	PacketEnd     = attribute.Key("pktspan.packet.end")
)

// A translated tuple, `a:p > b:q` before and after (packet span, and the stage where NAT
// rewrote it).
const (
	NATPre  = attribute.Key("pktspan.nat.pre")
	NATPost = attribute.Key("pktspan.nat.post")
)

// A drop: on the packet span (ErrorType too), on its drop event and on the freeing stage.
const (
	DropReason   = attribute.Key("pktspan.drop.reason")
	DropLocation = attribute.Key("pktspan.drop.location")
	DropStack    = attribute.Key("pktspan.drop.stack")
	ErrorType    = attribute.Key("error.type")
)

// A normal end with a drop reason (bookkeeping, not a loss: README, "What counts as a
// drop"): on the packet span.
const (
	FreeReason   = attribute.Key("pktspan.free.reason")
	FreeLocation = attribute.Key("pktspan.free.location")
)

// What a stage's function decided: netfilter on the nf_hook_slow stage, the return value
// on any function's.
const (
	NetfilterHook    = attribute.Key("pktspan.netfilter.hook")
	NetfilterPF      = attribute.Key("pktspan.netfilter.pf")
	NetfilterVerdict = attribute.Key("pktspan.netfilter.verdict")
	NetfilterTable   = attribute.Key("pktspan.netfilter.table")
	NetfilterChain   = attribute.Key("pktspan.netfilter.chain")
	NetfilterRule    = attribute.Key("pktspan.netfilter.rule")
	Retval           = attribute.Key("pktspan.retval")
)

// A flow window (root span).
const (
	FlowPackets = attribute.Key("pktspan.flow.packets")
	FlowClose   = attribute.Key("pktspan.flow.close")
)

// A request's exchange (--correlate http): its connection as this host's end sees it,
// the request's first sequence number, what its packets were, and why it was exported.
const (
	NetworkLocalAddress   = attribute.Key("network.local.address")
	NetworkLocalPort      = attribute.Key("network.local.port")
	NetworkPeerAddress    = attribute.Key("network.peer.address")
	NetworkPeerPort       = attribute.Key("network.peer.port")
	ExchangeSeq           = attribute.Key("pktspan.exchange.seq")
	ExchangePackets       = attribute.Key("pktspan.exchange.packets")
	ExchangeBytes         = attribute.Key("pktspan.exchange.bytes")
	ExchangeRetransmits   = attribute.Key("pktspan.exchange.retransmits")
	ExchangeDrops         = attribute.Key("pktspan.exchange.drops")
	ExchangePacketsCapped = attribute.Key("pktspan.exchange.packets_capped")
	ExchangeEnd           = attribute.Key("pktspan.exchange.end")
)

// The resource every span shares.
const (
	HostName    = attribute.Key("host.name")
	ServiceName = attribute.Key("service.name")
	K8sNodeName = attribute.Key("k8s.node.name")
)
