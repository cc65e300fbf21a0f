//go:build e2e

// Flows, NAT, trace boundaries and export policies, end to end: the built binary on the
// real kernel, real connections between namespaces, traces read back from Jaeger.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/netns"
)

// A connection through a router doing DNAT and masquerade is one trace: its root names
// the tuple the client used, and the stages where the router rewrote a packet say what
// it was before and after.
func TestNATConnectionIsOneTraceWithBothSidesOfTheTranslation(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nat := newNATLab(ctx, t)

	run := w.run(t, "nat", []string{"--filter-addr", netns.NATClient.Masked().String(), "--filter-addr", netns.NATServer.Masked().String()},
		func(ctx context.Context) error { return nat.Request(ctx, []byte("through the router")) })

	client, public := netns.NATClient.Addr().String(), netns.NATRouterPublic.Addr().String()
	inside, server := netns.NATRouterInside.Addr().String(), netns.NATServer.Addr().String()
	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool { return s.root("tcp", netns.NATPublicPort) != nil })
	roots := spans.rootsFor("tcp", netns.NATPublicPort)
	if len(roots) != 1 {
		t.Fatalf("%d root spans for the connection to %s:%d, want 1; spans: %s", len(roots), public, netns.NATPublicPort, spans)
	}
	root := roots[0]
	if got := attr(root, "source.address") + " > " + attr(root, "destination.address") + ":" + attr(root, "destination.port"); got != client+" > "+public+":80" {
		t.Errorf("root names %s, want the client's original tuple %s > %s:80", got, client, public)
	}
	for _, sp := range spans.rootsFor("tcp", netns.ReplyPort) {
		t.Errorf("a second trace for the translated side: root %x %s:%s > %s:%s", sp.TraceId,
			attr(sp, "source.address"), attr(sp, "source.port"), attr(sp, "destination.address"), attr(sp, "destination.port"))
	}

	tid := string(root.TraceId)
	fromClient, fromServer := 0, 0
	var requestNAT, replyNAT bool
	for _, sp := range spans.all {
		if string(sp.TraceId) != tid {
			continue
		}
		if sp.Name == "packet" {
			switch attr(sp, "source.address") {
			case client:
				fromClient++
			case server, public:
				fromServer++
			}
		}
		pre, post := attr(sp, "pktspan.nat.pre"), attr(sp, "pktspan.nat.post")
		if sp.Name == "packet" || pre == "" {
			continue
		}
		t.Logf("stage %s: nat %s → %s", sp.Name, pre, post)
		if strings.HasPrefix(pre, client+":") && strings.HasSuffix(pre, " > "+public+":80") &&
			strings.HasPrefix(post, inside+":") && strings.HasSuffix(post, " > "+server+":8080") {
			requestNAT = true
		}
		if strings.HasPrefix(pre, server+":8080 > "+inside+":") && strings.HasPrefix(post, public+":80 > "+client+":") {
			replyNAT = true
		}
	}
	if fromClient == 0 || fromServer == 0 {
		t.Errorf("the trace holds %d packets from the client and %d from the server, want both; spans: %s", fromClient, fromServer, spans)
	}
	if !requestNAT {
		t.Errorf("no stage shows the request translated from %s > %s:80 to %s > %s:8080; spans: %s", client, public, inside, server, spans)
	}
	if !replyNAT {
		t.Errorf("no stage shows the reply translated from %s:8080 > %s to %s:80 > %s; spans: %s", server, inside, public, client, spans)
	}
}

// Two pktspan instances, one per host (here: per namespace), each seeing only its own
// side, send one connection's spans into one trace: the trace ID comes from the flow.
func TestTwoHostsPutOneConnectionIntoOneTrace(t *testing.T) {
	w := setup(t)
	since := time.Now().Add(-time.Second)
	service := fmt.Sprintf("pktspan-e2e-hosts-%d", time.Now().UnixNano())
	hosts := map[string]string{"e2e-client-host": w.lab.Client.Path(), "e2e-server-host": w.lab.Server.Path()}
	var ins []*instance
	for host, ns := range hosts {
		ins = append(ins, w.startEnv(t, service, []string{"OTEL_RESOURCE_ATTRIBUTES=host.name=" + host},
			"--filter-netns", ns, "--trace-close-grace", "500ms"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := netns.TCPRequest(ctx, w.lab.Client, serverAddr.Addr(), replyPort, []byte("one trace, two hosts")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, in := range ins {
		in.stop(t)
	}

	spans := w.waitFor(t, service, since, func(s *traceSet) bool { return len(s.rootsFor("tcp", replyPort)) >= 2 })
	roots := spans.rootsFor("tcp", replyPort)
	rootHosts := map[string]bool{}
	for _, r := range roots {
		rootHosts[spans.host[r]] = true
		if string(r.TraceId) != string(roots[0].TraceId) {
			t.Errorf("root from %s is in trace %x, the one from %s in %x: want one trace", spans.host[r], r.TraceId, spans.host[roots[0]], roots[0].TraceId)
		}
	}
	if len(roots) != 2 || len(rootHosts) != 2 {
		t.Errorf("%d roots from hosts %v, want one from each of the two hosts", len(roots), rootHosts)
	}
	spanHosts := map[string]int{}
	for _, p := range spans.packets(replyPort) {
		if string(p.TraceId) != string(roots[0].TraceId) {
			t.Errorf("packet span %x from %s is in trace %x, want %x", p.SpanId, spans.host[p], p.TraceId, roots[0].TraceId)
		}
		spanHosts[spans.host[p]]++
	}
	for host := range hosts {
		if spanHosts[host] == 0 {
			t.Errorf("no packet span from %s in the trace; packets by host: %v", host, spanHosts)
		}
	}
	t.Logf("trace %x: packet spans by host %v", roots[0].TraceId, spanHosts)
}

// A connection of thousands of packets is split into traces of at most
// --trace-max-packets packets, each root linking to the one before; its GSO skbs say
// how many wire packets they stand for.
func TestLongFlowBecomesLinkedTracesWithinTheLimit(t *testing.T) {
	w := setup(t)
	const maxPackets = 200
	var echoed int
	run := w.run(t, "long", []string{"--filter-port", fmt.Sprint(replyPort), "--output", "none", "--trace-max-packets", fmt.Sprint(maxPackets)},
		func(ctx context.Context) (err error) {
			echoed, err = netns.TCPStream(ctx, w.lab.Client, serverAddr.Addr(), replyPort, 1500, 100, 200*time.Microsecond)
			return err
		})
	t.Logf("echoed %d bytes", echoed)

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool { return len(s.rootsFor("tcp", replyPort)) >= 5 })
	// The stream is the connection with the most windows (a stray one to the port would
	// be another client port).
	byPort := map[string][]*tracepb.Span{}
	var roots []*tracepb.Span
	for _, r := range spans.rootsFor("tcp", replyPort) {
		p := attr(r, "source.port")
		byPort[p] = append(byPort[p], r)
		if len(byPort[p]) > len(roots) {
			roots = byPort[p]
		}
	}
	byID := map[string]*tracepb.Span{}
	total := 0
	for _, r := range roots {
		byID[string(r.TraceId)+string(r.SpanId)] = r
		n, _ := strconv.Atoi(attr(r, "pktspan.flow.packets"))
		total += n
		if n > maxPackets {
			t.Errorf("trace %x: pktspan.flow.packets = %d, over the limit %d", r.TraceId, n, maxPackets)
		}
		if got := len(spans.packetsIn(string(r.TraceId))); got > maxPackets {
			t.Errorf("trace %x holds %d packet spans, over the limit %d", r.TraceId, got, maxPackets)
		}
	}
	if len(byID) != len(roots) {
		t.Errorf("%d roots but %d distinct trace/span IDs", len(roots), len(byID))
	}
	unlinked := 0
	for _, r := range roots {
		if len(r.Links) == 0 {
			unlinked++
			continue
		}
		l := r.Links[0]
		prev := byID[string(l.TraceId)+string(l.SpanId)]
		if prev == nil {
			t.Errorf("root %x links to %x/%x, which is not a root of this flow", r.TraceId, l.TraceId, l.SpanId)
		} else if prev.StartTimeUnixNano > r.StartTimeUnixNano {
			t.Errorf("root %x links to %x, which starts later", r.TraceId, prev.TraceId)
		}
	}
	if unlinked != 1 {
		t.Errorf("%d roots have no link to an earlier window, want exactly the first", unlinked)
	}
	// The echo goes back in large writes, which TCP sends as GSO skbs over veth.
	most := 0
	for _, p := range spans.packets(replyPort) {
		n, _ := strconv.Atoi(attr(p, "pktspan.skb.segments"))
		most = max(most, n)
	}
	if most < 2 {
		t.Errorf("no packet span of the echo stands for more than one wire packet (largest pktspan.skb.segments: %d)", most)
	}
	t.Logf("%d traces, %d packets in all, largest GSO skb %d segments", len(roots), total, most)
}

// In drops mode only flow windows holding a drop leave pktspan, with the packets that
// went before the drop; the other flows (a datagram to a listening UDP socket) are
// counted as not exported.
func TestDropsModeExportsOnlyFlowsWithADropAndThePathToIt(t *testing.T) {
	w := setup(t)
	const udpPort = 5353
	var conn net.PacketConn
	if err := w.lab.Server.Do(func() (err error) {
		conn, err = net.ListenPacket("udp", netip.AddrPortFrom(serverAddr.Addr(), udpPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := w.run(t, "dropsmode", []string{"--filter-addr", serverAddr.Masked().String(), "--export-mode", "drops"}, func(ctx context.Context) error {
		if err := netns.UDPSend(ctx, w.lab.Client, serverAddr.Addr(), udpPort, []byte("no drop")); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := conn.ReadFrom(make([]byte, 64)); err != nil {
			return fmt.Errorf("the datagram did not arrive: %w", err)
		}
		return errors.Join(netns.TCPConnectExpectTimeout(ctx, w.lab.Client, serverAddr.Addr(), droppedPort, 0), w.lab.TrafficDataDrop(ctx))
	})

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool {
		return s.dropped(netns.DataDropPort, "NETFILTER_DROP") != nil && s.dropped(droppedPort, "NETFILTER_DROP") != nil &&
			s.root("tcp", netns.DataDropPort) != nil
	})
	for _, sp := range spans.all {
		if attr(sp, "network.transport") == "udp" {
			t.Errorf("the flow to UDP port %d has no drop, but its span %s was exported", udpPort, sp.Name)
		}
	}
	// The most packets from before a drop that one window of the data-drop flow shows:
	// the handshake comes before the dropped segment.
	most := 0
	for _, drop := range spans.packets(netns.DataDropPort) {
		if drop.GetStatus().GetMessage() != "NETFILTER_DROP" {
			continue
		}
		before := 0
		for _, p := range spans.packetsIn(string(drop.TraceId)) {
			if p.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR && p.StartTimeUnixNano < drop.StartTimeUnixNano {
				before++
			}
		}
		most = max(most, before)
	}
	if most < 2 {
		t.Errorf("no window of the flow to port %d shows the packets before its dropped segment (most: %d, want the handshake); spans: %s",
			netns.DataDropPort, most, spans)
	}
	if n := statValue(t, run.stderr.String(), "spans_no_drop"); n == 0 {
		t.Errorf("final stats count no span left out for lack of a drop:\n%s", run.stderr.String())
	}
}

// With --drops-only the kernel sends only skbs that end in a drop: every packet span
// that reaches Jaeger is an error and carries the stages before its drop, and no
// delivered or consumed skb gets out of the kernel.
func TestDropsOnlyKeepsEverythingButDropsInTheKernel(t *testing.T) {
	w := setup(t)
	run := w.run(t, "dropsonly", []string{"--filter-addr", serverAddr.Masked().String(), "--drops-only"}, func(ctx context.Context) error {
		return errors.Join(w.lab.Traffic(ctx), w.lab.TrafficDataDrop(ctx))
	})

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool {
		return s.dropped(netns.DataDropPort, "NETFILTER_DROP") != nil && s.dropped(droppedPort, "NETFILTER_DROP") != nil &&
			s.dropped(closedPort, "NO_SOCKET") != nil
	})
	for _, p := range spans.all {
		if p.Name == "packet" && p.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("packet span %s:%s > %s:%s [%s] reached user space without a drop", attr(p, "source.address"), attr(p, "source.port"),
				attr(p, "destination.address"), attr(p, "destination.port"), attr(p, "pktspan.tcp.flags"))
		}
	}
	for _, sp := range spans.all {
		if sp.Name == "skb:consume_skb" || sp.Name == "skb:skb_copy_datagram_iovec" {
			t.Errorf("a packet delivered or consumed reached user space: stage %s", sp.Name)
		}
	}
	drop := spans.dropped(netns.DataDropPort, "NETFILTER_DROP")
	if !spans.hasChild(drop, "net:netif_receive_skb") || !spans.hasChild(drop, "skb:kfree_skb") {
		t.Errorf("the dropped segment lacks the stages before its drop; children: %v", names(spans.children(drop)))
	}
	// The healthy packets' events went into the trail and no further.
	kept, sent := statValue(t, run.stderr.String(), "trail_events"), statValue(t, run.stderr.String(), "trail_sent")
	if sent == 0 || kept <= sent {
		t.Errorf("final stats: %d events kept in the kernel's trail, %d sent with drops; want some sent and more kept than sent:\n%s",
			kept, sent, run.stderr.String())
	}
}

// --normal-free-reasons makes the named reasons frees: with NETFILTER_DROP named, the
// kernel discards the nft-dropped SYNs' events under --drops-only like any normal free,
// while the UDP datagram to a closed port (NO_SOCKET) is still a drop.
func TestNormalFreeReasonsAreNotDropsEvenInTheKernel(t *testing.T) {
	w := setup(t)
	run := w.run(t, "normalfree", []string{"--filter-addr", serverAddr.Masked().String(), "--drops-only",
		"--normal-free-reasons", "NETFILTER_DROP"}, w.lab.Traffic)

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool { return s.dropped(closedPort, "NO_SOCKET") != nil })
	if got := spans.packets(droppedPort); len(got) > 0 {
		t.Errorf("%d packet spans of the nft-dropped port %d were exported; NETFILTER_DROP was to be a normal free", len(got), droppedPort)
	}
	if want := "(normal frees, not drops: NETFILTER_DROP)"; !strings.Contains(run.stderr.String(), want) {
		t.Errorf("the start-up summary does not say %q:\n%s", want, run.stderr.String())
	}
}

// --filter-mark follows only skbs whose mark matches: an nft rule marks the client's
// requests to the echo port, and nothing else is exported.
func TestMarkFilterFollowsOnlyMarkedPackets(t *testing.T) {
	w := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rules := fmt.Sprintf("table ip pktspan_mark {\n chain out {\n  type route hook output priority mangle; policy accept;\n  tcp dport %d meta mark set 0x2a\n }\n}\n", replyPort)
	if err := w.lab.Client.Nft(ctx, rules); err != nil {
		t.Fatal(err)
	}
	run := w.run(t, "mark", []string{"--filter-mark", "0x2a/0xff"}, w.lab.Traffic)

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool { return s.root("tcp", replyPort) != nil })
	marked := 0
	for _, p := range spans.all {
		if p.Name != "packet" {
			continue
		}
		if attr(p, "pktspan.skb.mark") != "42" {
			t.Errorf("packet span %s:%s > %s:%s has mark %q, want 42", attr(p, "source.address"), attr(p, "source.port"),
				attr(p, "destination.address"), attr(p, "destination.port"), attr(p, "pktspan.skb.mark"))
		}
		marked++
	}
	if marked == 0 {
		t.Errorf("no marked packet exported; spans: %s", spans)
	}
	for _, port := range []int{droppedPort, closedPort} {
		if got := spans.packets(port); len(got) > 0 {
			t.Errorf("%d packet spans to the unmarked port %d were exported", len(got), port)
		}
	}
}

// session is one pktspan run around some traffic.
type session struct {
	*instance
	since time.Time // for Jaeger queries: a little before it started
}

// run starts pktspan with args under a service name of its own (pktspan-e2e-NAME-…),
// makes the traffic once every probe is attached, lets the flows' windows close
// (FIN + a 500 ms grace) and stops pktspan, requiring a clean exit.
func (w *world) run(t *testing.T, name string, args []string, traffic func(ctx context.Context) error) *session {
	t.Helper()
	s := &session{since: time.Now().Add(-time.Second)}
	s.instance = w.start(t, fmt.Sprintf("pktspan-e2e-%s-%d", name, time.Now().UnixNano()), append(args, "--trace-close-grace", "500ms")...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := traffic(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s.stop(t)
	t.Logf("pktspan stderr:\n%s", s.stderr.String())
	return s
}

func (s *traceSet) packetsIn(traceID string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, sp := range s.all {
		if sp.Name == "packet" && string(sp.TraceId) == traceID {
			out = append(out, sp)
		}
	}
	return out
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, sp := range spans {
		out = append(out, sp.Name)
	}
	return out
}

// statValue reads counter key from pktspan's final stats line.
func statValue(t *testing.T, stderr, key string) uint64 {
	t.Helper()
	i := strings.LastIndex(stderr, "final stats")
	if i < 0 {
		t.Fatalf("no final stats line:\n%s", stderr)
	}
	m := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `=(\d+)`).FindStringSubmatch(stderr[i:])
	if m == nil {
		t.Fatalf("final stats line has no %s:\n%s", key, stderr[i:])
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// newNATLab builds the NAT lab (client, router, server), removed when the test ends.
func newNATLab(ctx context.Context, t *testing.T) *netns.NATLab {
	t.Helper()
	nat, err := netns.NewNATLab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nat.Close() })
	return nat
}
