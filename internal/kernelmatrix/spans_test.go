package kernelmatrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/internal/demoapp"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/sink"
)

var (
	client = netip.MustParseAddr("198.18.0.1")
	server = netip.MustParseAddr("198.18.0.2")
	stages = map[string]*spanner.Stage{}
)

func stage(name string) *spanner.Stage {
	if s, ok := stages[name]; ok {
		return s
	}
	s := &spanner.Stage{Name: name, Free: name == "skb:kfree_skb" || name == "skb:consume_skb", Clone: name == "skb_clone",
		Retransmit: name == retransmitStage}
	stages[name] = s
	return s
}

// recorder feeds the real spanner and JSON sink, as pktspan --output json does.
type recorder struct {
	sp  *spanner.Spanner
	out bytes.Buffer
	t   int64
}

func newRecorder() *recorder {
	r := &recorder{t: 1_700_000_000_000_000_000}
	r.sp = spanner.New(sink.NewJSON(&r.out))
	return r
}

func (r *recorder) ev(skb uint64, port uint16, kind spanner.Kind, name string, mod func(*spanner.Event)) {
	r.t += 1000
	ev := spanner.Event{
		TimeUnixNano: r.t, SKB: skb, Stage: stage(name), Kind: kind,
		Tuple: spanner.Tuple{Src: client, Dst: server, SrcPort: 40000, DstPort: port, Proto: 6},
		TCP:   spanner.TCP{Flags: 0x02, Seq: uint32(skb)},
	}
	if mod != nil {
		mod(&ev)
	}
	r.sp.HandleEvent(&ev)
}

func verdict(v int32) func(*spanner.Event) {
	return func(ev *spanner.Event) {
		ev.Netfilter = spanner.Netfilter{Hook: 1, PF: 2, Verdict: v, Valid: true}
	}
}

func (r *recorder) spans() *Spans {
	r.sp.Flush(r.t + 1)
	s, err := ReadSpans(&r.out)
	if err != nil {
		panic(err)
	}
	return s
}

func nfDrop(ev *spanner.Event) {
	ev.Drop, ev.DropReason, ev.Location = true, "NETFILTER_DROP", "nft_do_chain+0x46f"
}

// journey records a delivered packet, an nft drop and a UDP NO_SOCKET drop; broken
// names what to get wrong.
func journey(broken string) *Spans {
	r := newRecorder()
	nfVerdict := int32(1)
	if broken == "verdict" {
		nfVerdict = 0
	}
	r.ev(1, netns.ReplyPort, spanner.KindEnter, "ip_rcv_core", nil)
	r.ev(1, netns.ReplyPort, spanner.KindExit, "ip_rcv_core", nil)
	r.ev(1, netns.ReplyPort, spanner.KindEnter, "ip_local_deliver", nil)
	r.ev(1, netns.ReplyPort, spanner.KindEnter, "nf_hook_slow", nil)
	r.ev(1, netns.ReplyPort, spanner.KindExit, "nf_hook_slow", verdict(nfVerdict))
	if broken == "nesting" {
		r.ev(1, netns.ReplyPort, spanner.KindExit, "ip_local_deliver", nil)
	}
	r.ev(1, netns.ReplyPort, spanner.KindEnter, "tcp_v4_rcv", nil)
	r.ev(1, netns.ReplyPort, spanner.KindExit, "tcp_v4_rcv", nil)
	if broken != "nesting" {
		r.ev(1, netns.ReplyPort, spanner.KindExit, "ip_local_deliver", nil)
	}
	r.ev(1, netns.ReplyPort, spanner.KindInstant, "skb:consume_skb", nil)

	r.ev(2, netns.DroppedPort, spanner.KindEnter, "nf_hook_slow", nil)
	r.ev(2, netns.DroppedPort, spanner.KindInstant, "skb:kfree_skb", nfDrop)
	r.ev(2, netns.DroppedPort, spanner.KindExit, "nf_hook_slow", verdict(0))

	if broken != "udp" {
		r.ev(3, netns.ClosedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
			ev.Tuple.Proto, ev.TCP = 17, spanner.TCP{}
			ev.Drop, ev.DropReason = true, "NO_SOCKET"
		})
	}
	return r.spans()
}

// mentions reports whether one of errs says want.
func mentions(errs []error, want string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return true
		}
	}
	return false
}

func TestCheckFunctionSpansAcceptsTheKernelsCallTree(t *testing.T) {
	if errs := CheckFunctionSpans(journey(""), netns.ReplyPort, netns.DroppedPort, netns.ClosedPort); len(errs) > 0 {
		t.Errorf("a correct run was rejected: %v", errs)
	}
}

func TestCheckFunctionSpansRejectsADroppingVerdictBadNestingAndAMissingUDPDrop(t *testing.T) {
	cases := map[string]string{
		"verdict": "verdict \"DROP\", want ACCEPT",
		"nesting": "tcp_v4_rcv's parent is packet, want the ip_local_deliver stage",
		"udp":     "NO_SOCKET",
	}
	for broken, want := range cases {
		if errs := CheckFunctionSpans(journey(broken), netns.ReplyPort, netns.DroppedPort, netns.ClosedPort); !mentions(errs, want) {
			t.Errorf("%s: want an error containing %q, got %v", broken, want, errs)
		}
	}
}

// tapped records a packet leaving the client and the clone a packet tap took of it.
func tapped(clone bool) *Spans {
	r := newRecorder()
	r.ev(1, netns.ReplyPort, spanner.KindInstant, "net:net_dev_queue", nil)
	if clone {
		r.ev(2, netns.ReplyPort, spanner.KindInstant, "skb_clone", func(ev *spanner.Event) { ev.Parent = 1 })
		r.ev(2, netns.ReplyPort, spanner.KindInstant, "skb:skb_copy_datagram_iovec", nil)
		r.ev(2, netns.ReplyPort, spanner.KindInstant, "skb:consume_skb", nil)
	}
	r.ev(1, netns.ReplyPort, spanner.KindInstant, "net:net_dev_xmit", nil)
	r.ev(1, netns.ReplyPort, spanner.KindInstant, "skb:consume_skb", nil)
	return r.spans()
}

func TestCheckClonesFindsAPacketBornInSkbClone(t *testing.T) {
	if errs := CheckClones(tapped(true)); len(errs) > 0 {
		t.Errorf("a tapped run was rejected: %v", errs)
	}
	if errs := CheckClones(tapped(false)); len(errs) != 1 || !strings.Contains(errs[0].Error(), "skb_clone") {
		t.Errorf("a run without clones: %v", errs)
	}
}

// retransmitted records the lab's SYN to the dropped port, dropped twice (the second
// time as a retransmission unless broken says "retransmit", with the kernel's
// tcp:tcp_retransmit_skb unless it says "stage"), and the UDP datagram to the closed
// port with the server's ICMP port unreachable (none when broken says "icmp").
func retransmitted(broken string) *Spans {
	r := newRecorder()
	synAt := func(skb uint64) func(*spanner.Event) {
		return func(ev *spanner.Event) {
			ev.TCP.Seq, ev.Len, ev.Ifname = 4711, 60, "veth1a"
			if skb == 5 && broken == "retransmit" {
				ev.TCP.Seq = 4712
			}
		}
	}
	for _, skb := range []uint64{4, 5} {
		r.ev(skb, netns.DroppedPort, spanner.KindInstant, "net:net_dev_queue", synAt(skb))
		if skb == 5 && broken != "stage" {
			r.ev(99, netns.DroppedPort, spanner.KindInstant, retransmitStage, synAt(skb))
		}
		r.ev(skb, netns.DroppedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) { synAt(skb)(ev); nfDrop(ev) })
	}
	udp := func(ev *spanner.Event) { ev.Tuple.Proto, ev.TCP = 17, spanner.TCP{} }
	r.ev(6, netns.ClosedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
		udp(ev)
		ev.Drop, ev.DropReason = true, "NO_SOCKET"
	})
	if broken != "icmp" {
		r.ev(7, 0, spanner.KindInstant, "skb:consume_skb", func(ev *spanner.Event) {
			quoted := ev.Tuple
			quoted.DstPort = netns.ClosedPort
			quoted.Proto = 17
			ev.Tuple = spanner.Tuple{Src: server, Dst: client, Proto: 1}
			ev.TCP, ev.ICMP, ev.Quoted = spanner.TCP{}, spanner.ICMP{Type: 3, Code: 3}, quoted
		})
	}
	return r.spans()
}

func TestCheckRetransmitAndICMPAcceptsALinkedSYNAndAnICMPErrorInTheUDPTrace(t *testing.T) {
	if errs := CheckRetransmitAndICMP(retransmitted(""), netns.DroppedPort, netns.ClosedPort); len(errs) > 0 {
		t.Errorf("a correct run was rejected: %v", errs)
	}
}

func TestCheckRetransmitAndICMPRejectsAnUnmarkedRepeatAMissingStageAndAMissingICMPError(t *testing.T) {
	cases := map[string]string{
		"retransmit": "is marked pktspan.tcp.retransmit",
		"stage":      "has no " + retransmitStage,
		"icmp":       "no ICMP packet span",
	}
	for broken, want := range cases {
		if errs := CheckRetransmitAndICMP(retransmitted(broken), netns.DroppedPort, netns.ClosedPort); !mentions(errs, want) {
			t.Errorf("%s: want an error containing %q, got %v", broken, want, errs)
		}
	}
}

// spansFrom parses JSON lines written by hand, for what the spanner never writes.
func spansFrom(t *testing.T, lines ...string) *Spans {
	t.Helper()
	s, err := ReadSpans(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckClonesRejectsACloneOfNoKnownPacket(t *testing.T) {
	s := spansFrom(t,
		`{"trace_id":"t1","span_id":"p1","name":"packet","attributes":{"pktspan.skb.address":"0x1"}}`,
		`{"trace_id":"t1","span_id":"p2","name":"packet","attributes":{"pktspan.skb.address":"0x2","pktspan.skb.clone_of":"0x3"}}`,
		`{"trace_id":"t1","span_id":"s1","parent_span_id":"p2","name":"skb_clone"}`,
	)
	if errs := CheckClones(s); len(errs) != 1 || !strings.Contains(errs[0].Error(), "names 0x3") {
		t.Errorf("a clone of an unknown packet: %v", errs)
	}
}

func TestCheckConntrackWantsRepliesBehindNATInTheRequestsTrace(t *testing.T) {
	request := `{"trace_id":"t1","span_id":"p1","name":"packet","attributes":{"destination.address":"198.18.1.2","destination.port":80}}`
	reply := func(trace string) string {
		return `{"trace_id":"` + trace + `","span_id":"p2","name":"packet","attributes":{"source.address":"198.18.2.2","source.port":8080}}`
	}
	if errs := CheckConntrack(spansFrom(t, request, reply("t1")), NATPublic, NATServer); len(errs) > 0 {
		t.Errorf("one trace through the NAT was rejected: %v", errs)
	}
	if errs := CheckConntrack(spansFrom(t, request, reply("t2")), NATPublic, NATServer); len(errs) != 1 || !strings.Contains(errs[0].Error(), "shares a trace") {
		t.Errorf("replies in a trace of their own: %v", errs)
	}
	if errs := CheckConntrack(spansFrom(t, reply("t2")), NATPublic, NATServer); len(errs) != 1 || !strings.Contains(errs[0].Error(), "not followed") {
		t.Errorf("no request: %v", errs)
	}
}

// dropsOnly records what a --drops-only run brings out: the nft-dropped packet with the
// events held before its drop and the nf_hook_slow exit after it, the UDP NO_SOCKET
// drop; broken names what to get wrong.
func dropsOnly(broken string) *Spans {
	r := newRecorder()
	if broken == "delivered" {
		r.ev(1, netns.ReplyPort, spanner.KindInstant, "net:netif_receive_skb", nil)
		r.ev(1, netns.ReplyPort, spanner.KindInstant, "skb:consume_skb", nil)
	}
	if broken != "held" {
		r.ev(2, netns.DroppedPort, spanner.KindEnter, "ip_rcv_core", nil)
		r.ev(2, netns.DroppedPort, spanner.KindExit, "ip_rcv_core", nil)
	}
	r.ev(2, netns.DroppedPort, spanner.KindEnter, "nf_hook_slow", nil)
	r.ev(2, netns.DroppedPort, spanner.KindInstant, "skb:kfree_skb", nfDrop)
	if broken != "exit" {
		r.ev(2, netns.DroppedPort, spanner.KindExit, "nf_hook_slow", verdict(0))
	}
	r.ev(3, netns.ClosedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
		ev.Tuple.Proto, ev.TCP = 17, spanner.TCP{}
		ev.Drop, ev.DropReason = true, "NO_SOCKET"
	})
	return r.spans()
}

func TestCheckDropsOnlyAcceptsDropsWithWhatCameBeforeAndAfter(t *testing.T) {
	if errs := CheckDropsOnly(dropsOnly(""), netns.DroppedPort, netns.ClosedPort); len(errs) > 0 {
		t.Errorf("a correct drops-only run was rejected: %v", errs)
	}
}

func TestCheckDropsOnlyRejectsDeliveredPacketsAndLostEvents(t *testing.T) {
	cases := map[string]string{
		"delivered": "is not a drop",
		"held":      "lacks the ip_rcv_core stage",
		"exit":      "verdict DROP",
	}
	for broken, want := range cases {
		if errs := CheckDropsOnly(dropsOnly(broken), netns.DroppedPort, netns.ClosedPort); !mentions(errs, want) {
			t.Errorf("%s: want an error containing %q, got %v", broken, want, errs)
		}
	}
}

func TestCheckVLANWantsBothWaysOnTheFollowedLinkOnly(t *testing.T) {
	client, server := netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("198.18.0.6")
	packet := func(src, dst string) string {
		return `{"trace_id":"t1","span_id":"` + src + dst + `","name":"packet","attributes":{"source.address":"` + src + `","destination.address":"` + dst + `"}}`
	}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"both ways", []string{packet("198.18.0.5", "198.18.0.6"), packet("198.18.0.6", "198.18.0.5")}, nil},
		{"no reply", []string{packet("198.18.0.5", "198.18.0.6")}, []string{"no reply"}},
		{"other vlan", []string{packet("198.18.0.5", "198.18.0.6"), packet("198.18.0.6", "198.18.0.5"), packet("198.18.0.9", "198.18.0.10")},
			[]string{"198.18.0.9 > 198.18.0.10 is on another link"}},
		{"link-local on the vlan", []string{packet("198.18.0.5", "198.18.0.6"), packet("198.18.0.6", "198.18.0.5"), packet("fe80::1", "ff02::16")}, nil},
		{"nothing", nil, []string{"no request", "no reply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := CheckVLAN(spansFrom(t, tt.lines...), client, server, netip.MustParseAddr("198.18.0.9"), netip.MustParseAddr("198.18.0.10"))
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %d", errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %q, want it to say %q", errs[i], w)
				}
			}
		})
	}
}

// A survey run passes when healthy traffic has no error and every drop scenario its
// reason; a healthy packet's error or a missing drop is named.
func TestCheckSurveyNamesHealthyErrorsAndMissingDrops(t *testing.T) {
	r := newRecorder()
	drops := map[int]string{}
	for port, sc := range scenariosByPort {
		if !sc.Healthy {
			drops[port] = sc.Reason
		}
	}
	skb := uint64(0x100)
	for port, reason := range drops {
		skb++
		r.ev(skb, uint16(port), spanner.KindInstant, "net:netif_receive_skb", nil)
		r.ev(skb, uint16(port), spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) { ev.Drop, ev.DropReason = true, reason })
	}
	r.ev(0x200, PortClientCloses, spanner.KindInstant, "net:netif_receive_skb", nil)
	r.ev(0x200, PortClientCloses, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
		ev.NormalFree, ev.DropReason = true, "QUEUE_PURGE"
	})
	r.sp.Flush(r.t + 1e9)
	spans, err := ReadSpans(&r.out)
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckSurvey(spans, "6.12", false); len(errs) > 0 {
		t.Errorf("a passing survey: %v", errs)
	}
	if errs := CheckSurvey(spans, "6.12", true); len(errs) != 1 || !strings.Contains(errs[0].Error(), "drops-only") {
		t.Errorf("a healthy packet in drops-only mode: %v, want it named", errs)
	}

	spans = surveyDrop(t, PortKeepAlive, "NOT_SPECIFIED")
	errs := CheckSurvey(spans, "6.12", false)
	if len(errs) != 1+len(drops) || !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), "keep-alive") }) {
		t.Errorf("a healthy error and no drops: %v", errs)
	}

	// 6.1 alone gives a needless retransmission the reason of a segment beyond the
	// window: only there is a healthy TCP_INVALID_SEQUENCE let pass.
	spans = surveyDrop(t, PortKeepAlive, ambiguousTCPReason)
	for kernel, want := range map[string]int{"6.1": len(drops), "6.12": 1 + len(drops)} {
		if errs := CheckSurvey(spans, kernel, false); len(errs) != want {
			t.Errorf("a healthy %s on %s: %d errors %v, want %d", ambiguousTCPReason, kernel, len(errs), errs, want)
		}
	}

	// A scenario's races are let pass in either mode, and only its own: the client
	// kernel's reset refused by the server's listener on the abort's port, a late ACK
	// at a closed socket on the bulk exchange's and through the NAT; each named on the
	// other ports.
	races := []struct {
		reason string
		errs   map[uint16]int // errors beyond the missing drops, per port
	}{
		{"TCP_FLAGS", map[uint16]int{PortAbort: 0, PortKeepAlive: 1, PortBulk: 1}},
		{"TCP_RESET", map[uint16]int{PortAbort: 0, PortKeepAlive: 1, PortBulk: 1}},
		{"TCP_CLOSE", map[uint16]int{PortBulk: 0, netns.ReplyPort: 0, PortKeepAlive: 1}},
		{"NOT_SPECIFIED", map[uint16]int{PortAbort: 0, PortBulk: 0, netns.ReplyPort: 0, PortKeepAlive: 1}},
	}
	for _, race := range races {
		for port, extra := range race.errs {
			spans := surveyDrop(t, port, race.reason)
			for _, dropsOnly := range []bool{false, true} {
				if errs := CheckSurvey(spans, "6.12", dropsOnly); len(errs) != extra+len(drops) {
					t.Errorf("%s on port %d, drops-only %v: %d errors %v, want %d", race.reason, port, dropsOnly, len(errs), errs, extra+len(drops))
				}
			}
		}
	}
}

// surveyDrop is the spans of one packet received on port and dropped for reason.
func surveyDrop(t *testing.T, port uint16, reason string) *Spans {
	t.Helper()
	r := newRecorder()
	r.ev(0x400, port, spanner.KindInstant, "net:netif_receive_skb", nil)
	r.ev(0x400, port, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) { ev.Drop, ev.DropReason = true, reason })
	r.sp.Flush(r.t + 1e9)
	spans, err := ReadSpans(&r.out)
	if err != nil {
		t.Fatal(err)
	}
	return spans
}

func TestCheckCorrelationWantsExchangesUnderClientSpansAndARecoveredDrop(t *testing.T) {
	span := func(trace, id, parent, name string, attrs map[string]any, status, desc string) string {
		return fmt.Sprintf(`{"trace_id":%q,"span_id":%q,"parent_span_id":%q,"name":%q,"attributes":%s,"status":%q,"status_description":%q}`,
			trace, id, parent, name, mustJSON(attrs), status, desc)
	}
	happy := demoapp.Request{TraceID: "aa", SpanID: "c1"}
	lossy := demoapp.Request{TraceID: "bb", SpanID: "c2"}
	good := strings.Join([]string{
		span("aa", "x1", "c1", exchangeSpan, nil, "unset", ""),
		span("aa", "p1", "x1", "packet", nil, "unset", ""),
		span("bb", "x2", "c2", exchangeSpan, nil, "unset", ""),
		span("bb", "p2", "x2", "packet", nil, "error", "NETFILTER_DROP"),
		span("bb", "p3", "x2", "packet", map[string]any{"pktspan.tcp.retransmit": true}, "unset", ""),
	}, "\n")
	s, err := ReadSpans(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckCorrelation(s, []demoapp.Request{happy}, []demoapp.Request{lossy}); len(errs) != 0 {
		t.Errorf("a good run was rejected: %v", errs)
	}
	bad := strings.Join([]string{
		span("aa", "x1", "other", exchangeSpan, nil, "unset", ""), // not under the client span
		span("bb", "x2", "c2", exchangeSpan, nil, "error", "NETFILTER_DROP"),
		span("bb", "p2", "x2", "packet", nil, "error", "NETFILTER_DROP"),
	}, "\n")
	if s, err = ReadSpans(strings.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	errs := CheckCorrelation(s, []demoapp.Request{happy}, []demoapp.Request{lossy})
	for _, want := range []string{"no exchange under its client span", "the exchange is an error", "a retransmission: false"} {
		if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), want) }) {
			t.Errorf("no error says %q: %v", want, errs)
		}
	}
}

func mustJSON(v map[string]any) string {
	if v == nil {
		return "{}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestCheckTCPPortExpressionWantsOnlyThePortBothWaysThroughTheFunctions(t *testing.T) {
	packet := func(id, proto string, sport, dport int) string {
		return fmt.Sprintf(`{"trace_id":"t1","span_id":"%s","name":"packet","attributes":{"network.transport":"%s","source.address":"198.18.0.1","destination.address":"198.18.0.2","source.port":%d,"destination.port":%d}}`,
			id, proto, sport, dport)
	}
	stage := func(parent, name string) string {
		return `{"trace_id":"t1","span_id":"` + parent + name + `","parent_span_id":"` + parent + `","name":"` + name + `"}`
	}
	staged := []string{packet("p1", "tcp", 40000, 8080), stage("p1", "ip_rcv_core"), stage("p1", "tcp_v4_rcv"), packet("p2", "tcp", 8080, 40000)}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"both ways with stages", staged, nil},
		{"another port", append(slices.Clone(staged), packet("p3", "tcp", 40000, 81)), []string{"does not match tcp port 8080"}},
		{"udp on the port", append(slices.Clone(staged), packet("p3", "udp", 40000, 8080)), []string{"udp 198.18.0.1:40000 > 198.18.0.2:8080 does not match"}},
		{"no stages", []string{packet("p1", "tcp", 40000, 8080), packet("p2", "tcp", 8080, 40000)}, []string{"no packet to port 8080 has ip_rcv_core and tcp_v4_rcv"}},
		{"one way", staged[:3], []string{"no packet from the port 8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := CheckTCPPortExpression(spansFrom(t, tt.lines...), 8080)
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %d", errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %q, want it to say %q", errs[i], w)
				}
			}
		})
	}
}
