package sink

import (
	"encoding/hex"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/attrkey"
)

// stageKfreeSKB is the tracepoint that frees a dropped skb: its line shows the drop.
const stageKfreeSKB = "skb:kfree_skb"

const (
	ansiRed   = "\x1b[31m"
	ansiReset = "\x1b[0m"
	timeFmt   = "15:04:05.000000"
)

// Column widths; a longer value pushes the rest of its line right rather than being cut.
var consoleColumns = [...]struct {
	title string
	width int
}{
	{"TIME", 15}, {"SKB", 18}, {"NETNS", 10}, {"IFACE", 10}, {"TUPLE", 46}, {"STAGE", 22}, {"INFO", 0},
}

// ConsoleOption configures NewConsole.
type ConsoleOption func(*Console)

// WithColor forces red drop lines on or off instead of deciding by whether the writer
// is a terminal.
func WithColor(on bool) ConsoleOption {
	return func(c *Console) { c.color = on }
}

// WithLocation sets the time zone of the TIME column (default the local zone).
func WithLocation(loc *time.Location) ConsoleOption {
	return func(c *Console) { c.loc = loc }
}

// Console is a spanner.Sink printing one line per stage of each packet, in the manner of
// pwru and nettrace, and one line per closed flow:
//
//	TIME            SKB                NETNS      IFACE      TUPLE                                          STAGE                  INFO
//	22:13:20.000000 0xffff888004a1c200 4026532281 veth0      10.0.0.1:40000 > 10.0.0.2:80 tcp [SYN]         net:netif_receive_skb  trace=0af7651916cd43dd8448eb211c80319c
//	22:13:20.000004 0xffff888004a1c200 4026532281 veth0      10.0.0.1:40000 > 10.0.0.2:80 tcp [SYN]         nf_hook_slow           hook=PREROUTING pf=ipv4 verdict=ACCEPT ret=1 dur=5µs
//	22:13:20.000120 0xffff888012345600 4026531840 eth0       10.0.0.1 > 10.0.0.2 icmp                       skb:kfree_skb          DROP NETFILTER_DROP nft_do_chain+0x1f3
//
// The first line of a packet ends with its trace ID, ready to paste into Jaeger, after
// the skb it was cloned from (clone_of=) and the wire packets a GSO skb stands for
// (segs=) when they apply. From a stage where NAT rewrote the tuple on, TUPLE shows the
// translated one. A dropped packet's skb:kfree_skb line reads `DROP <reason>
// <location>`, in red on a terminal, followed under --stack by the drop's kernel stack,
// a frame per line. NETNS is the namespace's owner (pktspan.netns.name: host, an ip netns,
// a container, a pod as namespace/pod) where the netns namer knows it, else its inode. A
// flow's line says why its window closed.
type Console struct {
	lines // Shutdown reports the first write error; Stats counts spans printed and lost
	color bool
	loc   *time.Location

	headerDone bool // under mu
}

var _ spanner.Sink = (*Console)(nil)

// NewConsole prints to w. Drop lines are red when w is a terminal, unless WithColor says
// otherwise.
func NewConsole(w io.Writer, opts ...ConsoleOption) *Console {
	c := &Console{lines: lines{w: w, name: "console output"}, color: isTerminal(w), loc: time.Local}
	for _, o := range opts {
		o(c)
	}
	return c
}

// isTerminal reports whether w is a file on a terminal, so that piped output never gets
// escape codes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var termErr error
	if err := rc.Control(func(fd uintptr) {
		_, termErr = unix.IoctlGetTermios(int(fd), unix.TCGETS)
	}); err != nil {
		return false
	}
	return termErr == nil
}

// packetView is what a line shows, carried from the packet span and updated by stages
// that report a change (a new interface or namespace, a NAT-rewritten tuple).
type packetView struct {
	skb, iface              string
	netns, netnsName        string // the inode, and the owner's name where a netns namer knows it
	transport, src, srcPort string
	dst, dstPort, flags     string
	nat                     string // the tuple after the latest translation, `a:p > b:q`
}

// Export prints a group: a packet span with its stages, or a closed flow's root span.
func (c *Console) Export(group []spanner.Span) {
	if len(group) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = c.buf[:0]
	if !c.headerDone {
		c.appendHeader()
		c.headerDone = true
	}
	switch group[0].Role {
	case spanner.RolePacket:
		c.appendPacket(group)
	case spanner.RoleExchange:
		c.appendExchange(&group[0])
	default:
		for i := range group {
			c.appendFlow(&group[i])
		}
	}
	c.writeLocked(len(group))
}

func (c *Console) appendHeader() {
	cols := make([]string, len(consoleColumns))
	for i, col := range consoleColumns {
		cols[i] = col.title
	}
	c.appendRow(cols, false)
}

// appendRow pads every column but the last and ends the line.
func (c *Console) appendRow(cols []string, red bool) {
	if red {
		c.buf = append(c.buf, ansiRed...)
	}
	for i, v := range cols {
		if v == "" {
			v = "-"
		}
		c.buf = append(c.buf, v...)
		if i == len(cols)-1 {
			break
		}
		pad := consoleColumns[i].width - len(v)
		c.buf = append(c.buf, ' ')
		for ; pad > 0; pad-- {
			c.buf = append(c.buf, ' ')
		}
	}
	if red {
		c.buf = append(c.buf, ansiReset...)
	}
	c.buf = append(c.buf, '\n')
}

func (c *Console) appendPacket(group []spanner.Span) {
	pkt := &group[0]
	var v packetView
	v.update(pkt.Attrs)
	// The console stays on the host: it shows the kernel's address, as pwru does, where
	// the attributes may carry an opaque ID.
	if pkt.SKB != 0 {
		v.skb = "0x" + strconv.FormatUint(pkt.SKB, 16)
	}
	dropped := pkt.Status == spanner.StatusError
	stages := group[1:]
	if len(stages) == 0 {
		// A packet with no stage kept (limits) still gets its line.
		stages = group[:1]
	}
	dropShown := false
	for i := range stages {
		st := &stages[i]
		if st != pkt {
			v.update(st.Attrs)
			if post := attrString(st.Attrs, attrkey.NATPost); post != "" {
				v.nat = post
			}
		}
		var info strings.Builder
		drop := dropped && (st.Name == stageKfreeSKB || (i == len(stages)-1 && !dropShown))
		if drop {
			dropShown = true
			appendDrop(&info, pkt, st)
		} else if st.Name == stageKfreeSKB {
			appendNormalFree(&info, pkt)
		}
		appendStageInfo(&info, st)
		if i == 0 {
			if pkt.SKBCloneOf != 0 {
				addField(&info, "clone_of=0x"+strconv.FormatUint(pkt.SKBCloneOf, 16))
			} else if parent := attrString(pkt.Attrs, attrkey.SKBCloneOf); parent != "" {
				addField(&info, "clone_of="+parent)
			}
			if segs := attrString(pkt.Attrs, attrkey.SKBSegments); segs != "" && segs != "1" {
				addField(&info, "segs="+segs)
			}
			addField(&info, "trace="+hex.EncodeToString(pkt.TraceID[:]))
		}
		c.appendRow([]string{c.clock(st.StartUnixNano), v.skb, v.netnsColumn(), v.iface, v.tupleString(), st.Name, info.String()},
			drop && c.color)
		if drop {
			c.appendStack(dropStack(pkt))
		}
	}
}

// stackIndent puts a drop's stack frames under the SKB column, clear of the time.
var stackIndent = strings.Repeat(" ", consoleColumns[0].width+3)

// appendStack prints a drop's kernel stack (--stack) under its line, a frame per line,
// innermost first, red on a terminal as the drop line is.
func (c *Console) appendStack(stack string) {
	for frame := range strings.SplitSeq(stack, "\n") {
		if frame == "" {
			continue
		}
		if c.color {
			c.buf = append(c.buf, ansiRed...)
		}
		c.buf = append(c.buf, stackIndent...)
		c.buf = append(c.buf, frame...)
		if c.color {
			c.buf = append(c.buf, ansiReset...)
		}
		c.buf = append(c.buf, '\n')
	}
}

// dropStack is the stack on pkt's drop event, or "".
func dropStack(pkt *spanner.Span) string {
	for i := range pkt.Events {
		if s := attrString(pkt.Events[i].Attrs, attrkey.DropStack); s != "" {
			return s
		}
	}
	return ""
}

// appendDrop writes `DROP <reason> <location>`, preferring what the stage itself says.
func appendDrop(b *strings.Builder, pkt, st *spanner.Span) {
	reason := attrString(st.Attrs, attrkey.DropReason)
	if reason == "" {
		reason = attrString(pkt.Attrs, attrkey.DropReason)
	}
	if reason == "" {
		reason = pkt.StatusDescription
	}
	loc := attrString(st.Attrs, attrkey.DropLocation)
	if loc == "" {
		loc = attrString(pkt.Attrs, attrkey.DropLocation)
	}
	addField(b, "DROP")
	addField(b, reason)
	addField(b, loc)
}

// appendNormalFree writes `FREE <reason> <location>` for a normal end the kernel gave
// a drop reason (README, "What counts as a drop"): said, but not red.
func appendNormalFree(b *strings.Builder, pkt *spanner.Span) {
	if reason := attrString(pkt.Attrs, attrkey.FreeReason); reason != "" {
		addField(b, "FREE")
		addField(b, reason)
		addField(b, attrString(pkt.Attrs, attrkey.FreeLocation))
	}
}

func appendStageInfo(b *strings.Builder, st *spanner.Span) {
	if hook := attrString(st.Attrs, attrkey.NetfilterHook); hook != "" {
		addField(b, "hook="+hook)
	}
	if pf := attrString(st.Attrs, attrkey.NetfilterPF); pf != "" {
		addField(b, "pf="+pf)
	}
	if verdict := attrString(st.Attrs, attrkey.NetfilterVerdict); verdict != "" {
		addField(b, "verdict="+verdict)
	}
	if table := attrString(st.Attrs, attrkey.NetfilterTable); table != "" {
		addField(b, "table="+table)
	}
	if chain := attrString(st.Attrs, attrkey.NetfilterChain); chain != "" {
		addField(b, "chain="+chain)
	}
	if ret := attrString(st.Attrs, attrkey.Retval); ret != "" {
		addField(b, "ret="+ret)
	}
	if d := st.EndUnixNano - st.StartUnixNano; d > 0 {
		addField(b, "dur="+time.Duration(d).String())
	}
}

func addField(b *strings.Builder, s string) {
	if s == "" {
		return
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(s)
}

// appendFlow prints a root span when its flow window closes.
func (c *Console) appendFlow(s *spanner.Span) {
	var v packetView
	v.update(s.Attrs)
	var info strings.Builder
	if cause := attrString(s.Attrs, attrkey.FlowClose); cause != "" {
		addField(&info, "closed="+cause)
	} else {
		addField(&info, "closed")
	}
	if d := s.EndUnixNano - s.StartUnixNano; d > 0 {
		addField(&info, "dur="+time.Duration(d).String())
	}
	if s.Status == spanner.StatusError {
		addField(&info, "error="+s.StatusDescription)
	}
	addField(&info, "trace="+hex.EncodeToString(s.TraceID[:]))
	exchanges := 0
	for i := range s.Links {
		switch s.Links[i].Role {
		case spanner.RoleFlow:
			addField(&info, "prev="+hex.EncodeToString(s.Links[i].TraceID[:]))
		case spanner.RoleExchange:
			exchanges++
		}
	}
	if exchanges > 0 {
		addField(&info, "exchanges="+strconv.Itoa(exchanges))
	}
	c.appendRow([]string{c.clock(s.EndUnixNano), "", v.netnsColumn(), v.iface, v.tupleString(), s.Name, info.String()}, false)
}

// appendExchange prints a request's exchange (--correlate http): the connection as
// this host's end sees it, the application's trace and client span it went under, and
// what its packets were.
func (c *Console) appendExchange(s *spanner.Span) {
	var local, peer, localPort, peerPort string
	var info strings.Builder
	for _, kv := range s.Attrs {
		v := valueString(kv.Value)
		switch kv.Key {
		case attrkey.NetworkLocalAddress:
			local = v
		case attrkey.NetworkLocalPort:
			localPort = v
		case attrkey.NetworkPeerAddress:
			peer = v
		case attrkey.NetworkPeerPort:
			peerPort = v
		case attrkey.ExchangePackets:
			addField(&info, "packets="+v)
		case attrkey.ExchangeDrops:
			addField(&info, "drops="+v)
		case attrkey.ExchangeRetransmits:
			addField(&info, "retransmits="+v)
		}
	}
	if s.Status == spanner.StatusError {
		addField(&info, "error="+s.StatusDescription)
	}
	addField(&info, "trace="+hex.EncodeToString(s.TraceID[:]))
	addField(&info, "parent="+hex.EncodeToString(s.ParentID[:]))
	tuple := "tcp " + net.JoinHostPort(local, localPort) + " > " + net.JoinHostPort(peer, peerPort)
	c.appendRow([]string{c.clock(s.EndUnixNano), "", "", "", tuple, s.Name, info.String()}, s.Status == spanner.StatusError)
}

func (c *Console) clock(unixNano int64) string {
	return time.Unix(0, unixNano).In(c.loc).Format(timeFmt)
}

// update takes the values present in attrs and keeps the others. A stage names its
// namespace's owner only where the namespace changed: a name is kept until the inode
// changes.
func (v *packetView) update(attrs []attribute.KeyValue) {
	var netns, netnsName string
	for _, kv := range attrs {
		s := valueString(kv.Value)
		switch kv.Key {
		case attrkey.SKBAddress:
			if kv.Value.Type() == attribute.INT64 {
				s = "0x" + strconv.FormatUint(uint64(kv.Value.AsInt64()), 16)
			}
			v.skb = s
		case attrkey.Netns:
			netns = s
		case attrkey.NetnsName:
			netnsName = s
		case attrkey.NetworkInterfaceName:
			v.iface = s
		case attrkey.NetworkTransport:
			v.transport = s
		case attrkey.SourceAddress:
			v.src = s
		case attrkey.SourcePort:
			v.srcPort = s
		case attrkey.DestinationAddress:
			v.dst = s
		case attrkey.DestinationPort:
			v.dstPort = s
		case attrkey.TCPFlags:
			v.flags = s
		}
	}
	if netns != "" && netns != v.netns {
		v.netns, v.netnsName = netns, ""
	}
	if netnsName != "" {
		v.netnsName = netnsName
	}
}

// netnsColumn is the NETNS column: the namespace's name where known, else its inode.
func (v *packetView) netnsColumn() string {
	if v.netnsName != "" {
		return v.netnsName
	}
	return v.netns
}

// tupleString renders `10.0.0.1:40000 > 10.0.0.2:80 tcp [SYN]`, without ports for
// protocols that have none.
func (v *packetView) tupleString() string {
	if v.src == "" && v.dst == "" && v.nat == "" {
		return v.transport
	}
	var b strings.Builder
	if v.nat != "" {
		b.WriteString(v.nat)
	} else {
		b.WriteString(hostPort(v.src, v.srcPort))
		b.WriteString(" > ")
		b.WriteString(hostPort(v.dst, v.dstPort))
	}
	if v.transport != "" {
		b.WriteByte(' ')
		b.WriteString(v.transport)
	}
	if v.flags != "" && v.transport == "tcp" {
		b.WriteString(" [")
		b.WriteString(v.flags)
		b.WriteByte(']')
	}
	return b.String()
}

func hostPort(addr, port string) string {
	if addr == "" {
		addr = "?"
	}
	if port == "" || port == "0" {
		return addr
	}
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + port
	}
	return addr + ":" + port
}

func attrString(attrs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range attrs {
		if kv.Key == key {
			return valueString(kv.Value)
		}
	}
	return ""
}

func valueString(v attribute.Value) string {
	switch v.Type() {
	case attribute.STRING:
		return v.AsString()
	case attribute.INT64:
		return strconv.FormatInt(v.AsInt64(), 10)
	case attribute.EMPTY:
		return ""
	}
	return v.String()
}
