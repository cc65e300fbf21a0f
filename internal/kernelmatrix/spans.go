// Package kernelmatrix proves pktspan's function backends on real distribution kernels:
// internal/cmd/matrix-scenario runs inside a VM booted by internal/vm, and the checks here
// read the spans it brought out (pktspan's JSON lines).
package kernelmatrix

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/pktspan/pktspan/internal/netns"
)

// The NAT lab's ends as the checks see them: the client asks the router's public
// address and port, the server answers from its own behind the router.
var (
	NATPublic = netip.AddrPortFrom(netns.NATRouterPublic.Addr(), netns.NATPublicPort)
	NATServer = netip.AddrPortFrom(netns.NATServer.Addr(), netns.ReplyPort)
)

// Span is one line of pktspan's JSON output.
type Span struct {
	TraceID     string         `json:"trace_id"`
	SpanID      string         `json:"span_id"`
	ParentID    string         `json:"parent_span_id"`
	Name        string         `json:"name"`
	Start       int64          `json:"start_unix_nano"`
	Duration    int64          `json:"duration_ns"`
	Attrs       map[string]any `json:"attributes"`
	Status      string         `json:"status"`
	Description string         `json:"status_description"`
	Links       []Link         `json:"links"`
}

// Link is one of a span's links.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// Attr renders an attribute as text ("" when absent).
func (s *Span) Attr(key string) string {
	v, ok := s.Attrs[key]
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

// Spans indexes one run's spans.
type Spans struct {
	All      []*Span
	children map[string][]*Span
}

// ReadSpans parses JSON lines.
func ReadSpans(r io.Reader) (*Spans, error) {
	s := &Spans{children: map[string][]*Span{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var sp Span
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber() // attributes print as pktspan wrote them, not as floats
		if err := d.Decode(&sp); err != nil {
			return nil, fmt.Errorf("parsing span %q: %w", sc.Text(), err)
		}
		s.All = append(s.All, &sp)
		s.children[sp.ParentID] = append(s.children[sp.ParentID], &sp)
	}
	return s, sc.Err()
}

// Children returns p's children in start order.
func (s *Spans) Children(p *Span) []*Span {
	c := append([]*Span(nil), s.children[p.SpanID]...)
	sort.SliceStable(c, func(i, j int) bool { return c[i].Start < c[j].Start })
	return c
}

// Packets returns the packet spans to or from port.
func (s *Spans) Packets(port int) []*Span {
	var out []*Span
	p := fmt.Sprint(port)
	for _, sp := range s.All {
		if sp.Name == "packet" && (sp.Attr("destination.port") == p || sp.Attr("source.port") == p) {
			out = append(out, sp)
		}
	}
	return out
}

// Find returns the first descendant of p named name, depth first.
func (s *Spans) Find(p *Span, name string) *Span {
	return s.find(p, func(c *Span) bool { return c.Name == name })
}

// CheckNftDrop checks that the packet an nft rule dropped (to droppedPort) names the
// nft table and chain of the rule, on its packet span and on the nf_hook_slow stage
// (INPUT) it was dropped in: function backends read them at nft_do_chain's return.
func CheckNftDrop(s *Spans, droppedPort int, table, chain string) []error {
	var errs []error
	for _, p := range s.Packets(droppedPort) {
		if p.Status != "error" || p.Description != "NETFILTER_DROP" {
			continue
		}
		nf := s.findHook(p, "INPUT")
		for _, sp := range []*Span{p, nf} {
			if sp == nil {
				errs = append(errs, fmt.Errorf("the nft-dropped packet has no nf_hook_slow stage at the INPUT hook"))
				continue
			}
			if t, c := sp.Attr("pktspan.netfilter.table"), sp.Attr("pktspan.netfilter.chain"); t != table || c != chain {
				errs = append(errs, fmt.Errorf("the nft drop's %s span names table %q chain %q, want %q %q", sp.Name, t, c, table, chain))
			}
		}
		return errs
	}
	return []error{fmt.Errorf("no packet to port %d is an error span with NETFILTER_DROP", droppedPort)}
}

// findHook returns p's nf_hook_slow stage at the given netfilter hook: a packet passes
// several (the client's POSTROUTING, the server's INPUT).
func (s *Spans) findHook(p *Span, hook string) *Span {
	return s.find(p, func(c *Span) bool {
		return c.Name == "nf_hook_slow" && c.Attr("pktspan.netfilter.hook") == hook
	})
}

// find returns the first descendant of p that match accepts, depth first.
func (s *Spans) find(p *Span, match func(*Span) bool) *Span {
	for _, c := range s.Children(p) {
		if match(c) {
			return c
		}
		if f := s.find(c, match); f != nil {
			return f
		}
	}
	return nil
}

// Parent returns the span whose ID is sp's parent, or nil.
func (s *Spans) Parent(sp *Span) *Span {
	for _, c := range s.All {
		if c.SpanID == sp.ParentID {
			return c
		}
	}
	return nil
}

// Tree renders p and its descendants: name, duration, attributes.
func (s *Spans) Tree(p *Span) string {
	var b strings.Builder
	s.tree(&b, p, 0)
	return b.String()
}

func (s *Spans) tree(b *strings.Builder, p *Span, depth int) {
	keys := make([]string, 0, len(p.Attrs))
	for k := range p.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var attrs []string
	for _, k := range keys {
		attrs = append(attrs, k+"="+p.Attr(k))
	}
	status := ""
	if p.Status == "error" {
		status = " ERROR " + p.Description
	}
	fmt.Fprintf(b, "%s%s %dns%s %s\n", strings.Repeat("  ", depth), p.Name, p.Duration, status, strings.Join(attrs, " "))
	for _, c := range s.Children(p) {
		s.tree(b, c, depth+1)
	}
}

// CheckFunctionSpans checks what issue 3 asks of one backend's run: packet spans of the
// request/reply flow with ip_rcv_core, nf_hook_slow (ACCEPT) and tcp_v4_rcv stages of
// non-zero duration, tcp_v4_rcv nested in ip_local_deliver; the nft-dropped packet with
// NETFILTER_DROP and an nf_hook_slow stage whose verdict is DROP; UDP to a closed port
// dropped with NO_SOCKET.
func CheckFunctionSpans(s *Spans, replyPort, droppedPort, closedPort int) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var good *Span
	for _, p := range s.Packets(replyPort) {
		if p.Attr("destination.port") != fmt.Sprint(replyPort) {
			continue
		}
		rcv, nf, tcp := s.Find(p, "ip_rcv_core"), s.findHook(p, "INPUT"), s.Find(p, "tcp_v4_rcv")
		if rcv == nil || nf == nil || tcp == nil {
			continue
		}
		good = p
		for _, st := range []*Span{rcv, nf, tcp} {
			if st.Duration <= 0 {
				fail("%s stage of packet %s lasts %dns, want > 0", st.Name, p.SpanID, st.Duration)
			}
		}
		if v := nf.Attr("pktspan.netfilter.verdict"); v != "ACCEPT" {
			fail("nf_hook_slow on a delivered packet has verdict %q, want ACCEPT", v)
		}
		if parent := s.Parent(tcp); parent == nil || parent.Name != "ip_local_deliver" {
			fail("tcp_v4_rcv's parent is %v, want the ip_local_deliver stage it runs inside", nameOf(parent))
		}
		break
	}
	if good == nil {
		fail("no packet to port %d has ip_rcv_core, nf_hook_slow (INPUT) and tcp_v4_rcv stages", replyPort)
	}

	var dropped *Span
	for _, p := range s.Packets(droppedPort) {
		if p.Status == "error" && p.Description == "NETFILTER_DROP" {
			dropped = p
			break
		}
	}
	switch {
	case dropped == nil:
		fail("no packet to port %d is an error span with NETFILTER_DROP", droppedPort)
	default:
		nf := s.findHook(dropped, "INPUT")
		if nf == nil {
			fail("the nft-dropped packet has no nf_hook_slow stage at the INPUT hook")
		} else if v := nf.Attr("pktspan.netfilter.verdict"); v != "DROP" {
			fail("nf_hook_slow on the nft-dropped packet has verdict %q, want DROP", v)
		}
		if loc := dropped.Attr("pktspan.drop.location"); !strings.HasPrefix(loc, "nft_do_chain") {
			fail("the nft drop's location is %q, want nft_do_chain+0x…", loc)
		}
	}

	udp := false
	for _, p := range s.Packets(closedPort) {
		udp = udp || (p.Status == "error" && p.Description == "NO_SOCKET")
	}
	if !udp {
		fail("no packet to UDP port %d is an error span with NO_SOCKET", closedPort)
	}
	return errs
}

func nameOf(s *Span) string {
	if s == nil {
		return "nothing"
	}
	return s.Name
}

// CheckClones checks that the clone of a followed skb is followed from its birth: a
// packet span whose first stage is skb_clone (the scenario's packet tap makes the kernel
// clone the client's packets). When the packet names its original
// (pktspan.skb.clone_of), that must be another packet span's pktspan.skb.address.
func CheckClones(s *Spans) []error {
	addrs := map[string]bool{}
	for _, sp := range s.All {
		if sp.Name == "packet" {
			addrs[sp.Attr("pktspan.skb.address")] = true
		}
	}
	var errs []error
	found := false
	for _, p := range s.All {
		if p.Name != "packet" {
			continue
		}
		c := s.Children(p)
		if len(c) == 0 || c[0].Name != "skb_clone" {
			continue
		}
		found = true
		if of := p.Attr("pktspan.skb.clone_of"); of != "" && (!addrs[of] || of == p.Attr("pktspan.skb.address")) {
			errs = append(errs, fmt.Errorf("clone %s names %s as its original, which is no other packet of the run",
				p.Attr("pktspan.skb.address"), of))
		}
	}
	if !found {
		errs = append(errs, errors.New("no packet span starts with an skb_clone stage, though a packet tap cloned the client's packets"))
	}
	return errs
}

// retransmitStage is the kernel's word that it sent a segment again.
const retransmitStage = "tcp:tcp_retransmit_skb"

// CheckRetransmitAndICMP checks what the lab's retransmitted SYN and its closed UDP port
// make: the SYN the nft rule drops is sent again after a second, as a packet span with
// its real headers marked pktspan.tcp.retransmit and linked to the first SYN's (same
// sequence number), with the kernel's tcp:tcp_retransmit_skb as a stage that no other
// packet span has; the ICMP port unreachable answering the UDP datagram is a packet
// span in that datagram's trace, with its type and code.
func CheckRetransmitAndICMP(s *Spans, droppedPort, closedPort int) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	byID := map[string]*Span{}
	for _, sp := range s.All {
		byID[sp.TraceID+"/"+sp.SpanID] = sp
	}
	var again *Span
	for _, p := range s.Packets(droppedPort) {
		if p.Attr("pktspan.tcp.seq") == "0" || p.Attr("pktspan.skb.len") == "0" {
			fail("packet %s to port %d has zeroed headers (seq %s, len %s)", p.SpanID, droppedPort, p.Attr("pktspan.tcp.seq"), p.Attr("pktspan.skb.len"))
		}
		if p.Attr("pktspan.tcp.retransmit") == "true" && again == nil {
			again = p
		} else if s.Find(p, retransmitStage) != nil {
			fail("packet %s to port %d has a %s stage but is no recognised retransmission", p.SpanID, droppedPort, retransmitStage)
		}
	}
	switch {
	case again == nil:
		fail("no packet to port %d is marked pktspan.tcp.retransmit, though the dropped SYN was sent again", droppedPort)
	case len(again.Links) != 1:
		fail("the retransmitted SYN has %d links, want 1 to the first SYN", len(again.Links))
	default:
		first := byID[again.Links[0].TraceID+"/"+again.Links[0].SpanID]
		switch {
		case first == nil:
			fail("the retransmitted SYN links to %s, which is no span of the run", again.Links[0].SpanID)
		case first.Attr("pktspan.tcp.seq") != again.Attr("pktspan.tcp.seq") || first.Attr("pktspan.tcp.flags") != "SYN" ||
			again.Attr("pktspan.tcp.flags") != "SYN" || first.Attr("source.port") != again.Attr("source.port"):
			fail("the retransmitted SYN (seq %s, flags %s) links to a packet that is not its first sighting (seq %s, flags %s)",
				again.Attr("pktspan.tcp.seq"), again.Attr("pktspan.tcp.flags"), first.Attr("pktspan.tcp.seq"), first.Attr("pktspan.tcp.flags"))
		}
		if s.Find(again, retransmitStage) == nil {
			fail("the retransmitted SYN has no %s stage", retransmitStage)
		}
		// With function probes a sent packet is first seen before it has a device: the
		// stage where it reached one names it.
		if again.Attr("network.interface.name") == "" && s.find(again, func(c *Span) bool { return c.Attr("network.interface.name") != "" }) == nil {
			fail("neither the retransmitted SYN nor any of its stages names an interface")
		}
	}

	udpTraces := map[string]bool{}
	for _, p := range s.Packets(closedPort) {
		if p.Attr("network.transport") == "udp" {
			udpTraces[p.TraceID] = true
		}
	}
	icmp := false
	for _, p := range s.All {
		if p.Name == "packet" && p.Attr("network.transport") == "icmp" && udpTraces[p.TraceID] {
			icmp = true
			if p.Attr("pktspan.icmp.type") != "3" || p.Attr("pktspan.icmp.code") != "3" {
				fail("the ICMP packet in the UDP flow's trace has type %s code %s, want 3/3 (port unreachable)",
					p.Attr("pktspan.icmp.type"), p.Attr("pktspan.icmp.code"))
			}
		}
	}
	if !icmp {
		fail("no ICMP packet span is in the trace of the UDP datagram to port %d", closedPort)
	}
	return errs
}

// CheckConntrack checks that events carry their conntrack entry's original tuple: the
// NAT lab's router rewrites both addresses, so the server's replies (from server:8080
// to the router's inside address) share a trace with the client's requests to the
// router's public address only if the router's events told what the tuple was before
// translation.
func CheckConntrack(s *Spans, public, server netip.AddrPort) []error {
	requests := map[string]bool{}
	for _, p := range s.All {
		if p.Name == "packet" && p.Attr("destination.address") == public.Addr().String() &&
			p.Attr("destination.port") == fmt.Sprint(public.Port()) {
			requests[p.TraceID] = true
		}
	}
	if len(requests) == 0 {
		return []error{fmt.Errorf("no packet to %s: the NAT lab's traffic was not followed", public)}
	}
	replies := 0
	for _, p := range s.All {
		if p.Name == "packet" && p.Attr("source.address") == server.Addr().String() &&
			p.Attr("source.port") == fmt.Sprint(server.Port()) {
			replies++
			if requests[p.TraceID] {
				return nil
			}
		}
	}
	return []error{fmt.Errorf("none of the %d packets from %s (behind NAT) shares a trace with the %d trace(s) of requests to %s",
		replies, server, len(requests), public)}
}

// CheckDropsOnly checks a --drops-only run: every packet span ends in a drop; the
// nft-dropped packet carries the events held before its drop (ip_rcv_core) and the
// nf_hook_slow exit that came after the free inside it (verdict DROP); the UDP packet
// to the closed port is there with NO_SOCKET.
func CheckDropsOnly(s *Spans, droppedPort, closedPort int) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, p := range s.All {
		if p.Name == "packet" && p.Status != "error" {
			fail("packet %s (%s:%s > %s:%s) is not a drop, yet reached user space in drops-only mode:\n%s",
				p.Attr("pktspan.skb.address"), p.Attr("source.address"), p.Attr("source.port"),
				p.Attr("destination.address"), p.Attr("destination.port"), s.Tree(p))
		}
	}
	var dropped *Span
	for _, p := range s.Packets(droppedPort) {
		if p.Description == "NETFILTER_DROP" {
			dropped = p
			break
		}
	}
	if dropped == nil {
		fail("no packet to port %d is an error span with NETFILTER_DROP", droppedPort)
	} else {
		if s.Find(dropped, "ip_rcv_core") == nil {
			fail("the nft-dropped packet lacks the ip_rcv_core stage held before its drop:\n%s", s.Tree(dropped))
		}
		if nf := s.findHook(dropped, "INPUT"); nf == nil || nf.Attr("pktspan.netfilter.verdict") != "DROP" {
			fail("the nft-dropped packet lacks its nf_hook_slow INPUT stage with verdict DROP, which ends after the free:\n%s", s.Tree(dropped))
		}
	}
	udp := false
	for _, p := range s.Packets(closedPort) {
		udp = udp || p.Description == "NO_SOCKET"
	}
	if !udp {
		fail("no packet to UDP port %d is an error span with NO_SOCKET", closedPort)
	}
	return errs
}

// CheckVLAN checks a run filtered to one VLAN whose link joins client and server: the
// ping over it was followed both ways, and no packet of the other links (addresses in
// others: the other VLAN's, the untagged link's) was. Other packets on the followed VLAN,
// such as IPv6 link-local MLD reports, may come too.
func CheckVLAN(s *Spans, client, server netip.Addr, others ...netip.Addr) []error {
	var errs []error
	ways := map[string]int{}
	for _, p := range s.All {
		if p.Name != "packet" {
			continue
		}
		src, dst := p.Attr("source.address"), p.Attr("destination.address")
		switch {
		case src == client.String() && dst == server.String():
			ways["request"]++
		case src == server.String() && dst == client.String():
			ways["reply"]++
		}
		for _, o := range others {
			if src == o.String() || dst == o.String() {
				errs = append(errs, fmt.Errorf("packet %s > %s is on another link than the followed VLAN's (%s, %s)", src, dst, client, server))
				break
			}
		}
	}
	for _, way := range []string{"request", "reply"} {
		if ways[way] == 0 {
			errs = append(errs, fmt.Errorf("no %s packet of the ping over the followed VLAN (%s, %s)", way, client, server))
		}
	}
	return errs
}

// CheckTCPPortExpression checks a run with the expression "tcp port PORT": every packet
// followed is TCP to or from port, both ways came, and a packet to port has the
// function stages tcp_v4_rcv and ip_rcv_core, hooks where the expression is evaluated
// on an skb without its Ethernet header or followed without evaluating it again.
func CheckTCPPortExpression(s *Spans, port int) []error {
	var errs []error
	ways := map[string]int{}
	staged := false
	p := fmt.Sprint(port)
	for _, sp := range s.All {
		if sp.Name != "packet" {
			continue
		}
		src, dst := sp.Attr("source.port"), sp.Attr("destination.port")
		if sp.Attr("network.transport") != "tcp" || (src != p && dst != p) {
			errs = append(errs, fmt.Errorf("packet %s %s:%s > %s:%s does not match tcp port %d", sp.Attr("network.transport"),
				sp.Attr("source.address"), src, sp.Attr("destination.address"), dst, port))
			continue
		}
		if dst == p {
			ways["to the port"]++
			staged = staged || (s.Find(sp, "tcp_v4_rcv") != nil && s.Find(sp, "ip_rcv_core") != nil)
		} else {
			ways["from the port"]++
		}
	}
	for _, way := range []string{"to the port", "from the port"} {
		if ways[way] == 0 {
			errs = append(errs, fmt.Errorf("no packet %s %d followed", way, port))
		}
	}
	if ways["to the port"] > 0 && !staged {
		errs = append(errs, fmt.Errorf("no packet to port %d has ip_rcv_core and tcp_v4_rcv stages", port))
	}
	return errs
}
