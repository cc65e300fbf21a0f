package kernelmatrix

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pktspan/pktspan/internal/netns"
)

// The ports of the survey's scenarios (matrix-scenario --survey), on the lab's server or
// behind the NAT lab's router.
const (
	PortClientCloses = 7001
	PortServerCloses = 7002
	PortKeepAlive    = 7003
	PortAbort        = 7004
	PortBulk         = 7005
	PortUDPEcho      = 7006
	PortClosedTCP    = 7007
	PortNoRoute      = 7008
	PortFullQueue    = 7009
	PortTTL          = 7010
	PortRPFilter     = 7011
)

// Scenario names one kind of traffic of the survey and whether its packets should all
// be delivered (healthy) or one of them is lost on purpose, with the reason every
// kernel of the survey gives that loss.
type Scenario struct {
	Name    string
	Healthy bool
	Reason  string
	// Races are drop reasons a healthy scenario may show when its timing falls so. A
	// client that aborts with an RST right after its request: the server's reply
	// arrives at a socket already closed (TCP_CLOSE) or gone (NO_SOCKET), and the kernel
	// rightly drops it; or the RST reaches a server socket still sending, and 6.1
	// discards it with no reason of its own (NOT_SPECIFIED in tcp_v4_do_rcv). A reply
	// dropped as NO_SOCKET makes the client's kernel answer it with a reset, which
	// finds only the listener (the first RST ended the server's socket), and the
	// listener refuses it: an RST,ACK as any segment with ACK set (TCP_FLAGS in
	// tcp_v4_do_rcv), a bare RST as a reset (TCP_RESET in tcp_rcv_state_process). The
	// 6.12 VM in CI showed both.
	Races []string
}

// closeRaces are the drops of a close in which both ends close once the echo is read:
// in a slow VM a late ACK may meet a socket already closed (TCP_CLOSE), or one no longer
// taking it, and be discarded with no reason of its own (NOT_SPECIFIED), as may the
// reset that answers it. The 6.12 VM in CI showed both ACKs of one bulk exchange's
// close; the 6.1 VM the client's last ACK through the NAT, discarded by the server's
// tcp_v4_do_rcv, and the reset to it, addressed to the router and not mapped back by
// conntrack, discarded by the router's tcp_v4_rcv.
var closeRaces = []string{"TCP_CLOSE", "NOT_SPECIFIED"}

var scenariosByPort = map[int]Scenario{
	PortClientCloses:  {Name: "tcp, client closes", Healthy: true},
	PortServerCloses:  {Name: "tcp, server closes", Healthy: true},
	PortKeepAlive:     {Name: "tcp keep-alive, 5 requests", Healthy: true},
	PortAbort:         {Name: "tcp, client aborts (RST)", Healthy: true, Races: []string{"TCP_CLOSE", "NO_SOCKET", "NOT_SPECIFIED", "TCP_FLAGS", "TCP_RESET"}},
	PortBulk:          {Name: "tcp, 512 KiB each way", Healthy: true, Races: closeRaces},
	PortUDPEcho:       {Name: "udp request/reply", Healthy: true},
	netns.ReplyPort:   {Name: "tcp through NAT", Healthy: true, Races: closeRaces},
	PortClosedTCP:     {Name: "drop: tcp to a closed port", Healthy: false, Reason: "NO_SOCKET"},
	netns.DroppedPort: {Name: "drop: nft rule", Healthy: false, Reason: "NETFILTER_DROP"},
	netns.ClosedPort:  {Name: "drop: udp to a closed port", Healthy: false, Reason: "NO_SOCKET"},
	PortNoRoute:       {Name: "drop: no route (router)", Healthy: false, Reason: "IP_INNOROUTES"},
	PortFullQueue:     {Name: "drop: full receive queue", Healthy: false, Reason: "SOCKET_RCVBUFF"},
	PortTTL:           {Name: "drop: TTL expired (router)", Healthy: false, Reason: "IP_INHDR"},
	PortRPFilter:      {Name: "drop: rp_filter (router)", Healthy: false, Reason: "IP_RPFILTER"},
}

// scenarioOf says which scenario a packet span belongs to, by its ports, protocol and
// addresses.
func scenarioOf(p *Span) (Scenario, bool) {
	if p.Attr("network.transport") == "icmp" {
		return Scenario{Name: "icmp echo and error replies", Healthy: true}, true
	}
	for _, k := range []string{"destination.port", "source.port"} {
		var port int
		if _, err := fmt.Sscan(p.Attr(k), &port); err != nil {
			continue
		}
		if port == netns.NATPublicPort {
			port = netns.ReplyPort
		}
		sc, ok := scenariosByPort[port]
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(p.Attr("source.address"))
		if err == nil && a.Is6() {
			sc.Name += " (IPv6)"
		}
		if err == nil && sc.Name == scenariosByPort[PortUDPEcho].Name && strings.HasPrefix(a.String(), "198.18.") &&
			!netns.LabClient.Contains(a) && !netns.LabServer.Contains(a) {
			sc.Name += " through NAT"
		}
		return sc, true
	}
	return Scenario{}, false
}

// FreeTable lists, per scenario, how its packets were freed with a reason other than
// CONSUMED: the drop reason, the function that freed them, how many, and whether
// pktspan called it a drop (the packet span's Error status).
func FreeTable(s *Spans) string {
	type key struct {
		scenario string
		healthy  bool
		reason   string
		location string
		drop     bool
	}
	counts := map[key]int{}
	for _, p := range s.All {
		if p.Name != "packet" {
			continue
		}
		reason, loc := p.Attr("pktspan.drop.reason"), p.Attr("pktspan.drop.location")
		if reason == "" {
			reason, loc = p.Attr("pktspan.free.reason"), p.Attr("pktspan.free.location")
		}
		if reason == "" {
			continue
		}
		sc, ok := scenarioOf(p)
		if !ok {
			sc = Scenario{Name: "other"}
		}
		fn, _, _ := strings.Cut(loc, "+")
		counts[key{sc.Name, sc.Healthy, reason, fn, p.Status == "error"}]++
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.healthy != b.healthy {
			return a.healthy
		}
		if a.scenario != b.scenario {
			return a.scenario < b.scenario
		}
		if a.reason != b.reason {
			return a.reason < b.reason
		}
		return a.location < b.location
	})
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCENARIO\tREASON\tLOCATION\tPACKETS\tPKTSPAN SAYS")
	for _, k := range keys {
		verdict := "normal free"
		if k.drop {
			verdict = "drop"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", k.scenario, k.reason, k.location, counts[k], verdict)
	}
	w.Flush()
	return b.String()
}

// ambiguousTCPReason is 6.1's reason for a TCP segment outside the receive window,
// before it (a duplicate) or beyond it alike; ambiguousKernel is that series.
const (
	ambiguousTCPReason = "TCP_INVALID_SEQUENCE"
	ambiguousKernel    = "6.1"
)

// CheckSurvey checks a survey run on the kernel series given: no packet of a healthy
// scenario is an error, though kernels free some of them with drop reasons; every drop
// scenario has an error packet with the reason each kernel gives it. In drops-only
// mode, no packet of a healthy scenario reaches user space at all.
func CheckSurvey(s *Spans, kernel string, dropsOnly bool) []error {
	var errs []error
	healthy := 0
	found := map[string]bool{}
	for _, p := range s.All {
		if p.Name != "packet" {
			continue
		}
		sc, ok := scenarioOf(p)
		if !ok {
			continue
		}
		if sc.Healthy {
			healthy++
			// 6.1 names a needless retransmission arriving after its bytes did (a slow
			// VM provokes them) as it names a segment beyond the window: a drop, as the
			// reason cannot tell them apart, and none of the rule's business.
			if kernel == ambiguousKernel && p.Description == ambiguousTCPReason {
				continue
			}
			if slices.Contains(sc.Races, p.Description) {
				continue
			}
			if p.Status == "error" || dropsOnly {
				errs = append(errs, fmt.Errorf("%s: packet %s:%s > %s:%s [%s] is %s %s at %s", sc.Name, p.Attr("source.address"),
					p.Attr("source.port"), p.Attr("destination.address"), p.Attr("destination.port"), p.Attr("pktspan.tcp.flags"),
					map[bool]string{true: "exported in drops-only mode,", false: "an error"}[dropsOnly],
					p.Description+p.Attr("pktspan.free.reason"), p.Attr("pktspan.drop.location")+p.Attr("pktspan.free.location")))
			}
			continue
		}
		if p.Status == "error" && p.Description == sc.Reason {
			found[sc.Name] = true
		}
	}
	if healthy == 0 && !dropsOnly {
		errs = append(errs, fmt.Errorf("no packet of a healthy scenario was followed"))
	}
	for _, sc := range scenariosByPort {
		if !sc.Healthy && !found[sc.Name] {
			errs = append(errs, fmt.Errorf("%s: no packet is an error with %s", sc.Name, sc.Reason))
		}
	}
	return errs
}
