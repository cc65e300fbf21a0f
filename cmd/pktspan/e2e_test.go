//go:build e2e

// Tier 2 of docs/DESIGN.md: the built pktspan binary, run as a user runs it, on the real
// kernel, following real traffic between two network namespaces, exporting to a real
// Jaeger; every assertion is on traces read back through Jaeger's /api/v3/traces.
// Needs root; `make e2e` (part of `make test`) builds Jaeger first.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/jaeger"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

const (
	replyPort   = netns.ReplyPort
	droppedPort = netns.DroppedPort
	closedPort  = netns.ClosedPort
)

var serverAddr = netns.LabServer

// world is what every test here shares: the binary, Jaeger and the two hosts.
type world struct {
	bin    string
	jaeger *jaeger.Jaeger
	lab    *netns.Lab
}

// requireRoot fails the test unless it runs as root: it is never skipped.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end tests load eBPF probes and create network namespaces: run them as root (sudo make e2e)")
	}
}

func setup(t *testing.T) *world {
	t.Helper()
	requireRoot(t)
	w := &world{bin: buildPktspan(t, t.TempDir())}
	ctx := context.Background()
	j, err := jaeger.Start(ctx)
	if err != nil {
		t.Fatalf("starting Jaeger (run `make jaeger` first): %v", err)
	}
	t.Cleanup(func() { _ = j.Stop() })
	w.jaeger = j

	lab, err := netns.NewLab(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	w.lab = lab
	return w
}

// instance is one running pktspan process.
type instance struct {
	proc    *pktspanproc.Proc
	service string
	stderr  bytes.Buffer
	stdout  bytes.Buffer
}

// start runs pktspan exporting to Jaeger under a service name of its own, and waits
// for its ready file: every probe is attached then.
func (w *world) start(t *testing.T, service string, args ...string) *instance {
	t.Helper()
	return w.startEnv(t, service, nil, args...)
}

// startEnv is start with variables added to pktspan's environment.
func (w *world) startEnv(t *testing.T, service string, env []string, args ...string) *instance {
	t.Helper()
	in := &instance{service: service}
	cmd := exec.Command(w.bin, append([]string{
		"--otlp-endpoint", w.jaeger.OTLPEndpoint(), "--otlp-insecure",
		"--service-name", service, "--output", "console", "--otlp-batch-delay", "200ms",
	}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &in.stdout, &in.stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, in.stderr.String())
	}
	in.proc = p
	t.Cleanup(func() { _ = p.Stop(os.Kill, time.Second) })
	return in
}

// stop sends SIGINT, as Ctrl-C does, and requires a clean exit (status 0).
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if err := in.proc.Stop(os.Interrupt, 30*time.Second); err != nil {
		t.Fatalf("pktspan %s: %v; stderr:\n%s", in.service, err, in.stderr.String())
	}
	if !strings.Contains(in.stderr.String(), "final stats") {
		t.Errorf("pktspan %s printed no final stats line; stderr:\n%s", in.service, in.stderr.String())
	}
}

func TestLabTrafficBecomesFlowTracesAndDropSpansInJaeger(t *testing.T) {
	w := setup(t)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	since := time.Now().Add(-time.Second)

	all := w.start(t, "pktspan-e2e-all-"+run, "--filter-addr", serverAddr.Masked().String())
	port := w.start(t, "pktspan-e2e-port-"+run, "--filter-port", fmt.Sprint(replyPort))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.lab.Traffic(ctx); err != nil {
		t.Fatal(err)
	}
	// Let the TCP flow's window close (FIN + grace) while pktspan runs, so the root span
	// is the one a normal run exports, not the one a stop flushes.
	time.Sleep(3 * time.Second)
	all.stop(t)
	port.stop(t)
	t.Logf("pktspan stderr:\n%s", all.stderr.String())
	t.Logf("pktspan console output (first lines):\n%s", head(all.stdout.String(), 40))

	spans := w.waitFor(t, all.service, since, func(s *traceSet) bool {
		return s.dropped(droppedPort, "NETFILTER_DROP") != nil && s.dropped(closedPort, "NO_SOCKET") != nil && s.root("tcp", replyPort) != nil &&
			s.retransmitted(droppedPort) != nil && s.icmpErrorsOf(closedPort) != nil
	})

	t.Run("tcp request and reply are one trace with both directions and stage spans", func(t *testing.T) {
		root := spans.root("tcp", replyPort)
		if root == nil {
			t.Fatalf("no `flow tcp` root span for port %d; spans: %s", replyPort, spans)
		}
		if n := len(spans.rootsFor("tcp", replyPort)); n != 1 {
			t.Errorf("flow to port %d has %d root spans, want 1 trace", replyPort, n)
		}
		tid := string(root.TraceId)
		var toServer, toClient int
		for _, p := range spans.packets(replyPort) {
			if string(p.TraceId) != tid {
				t.Errorf("packet span %x of the flow is in trace %x, want the root's %x", p.SpanId, p.TraceId, root.TraceId)
			}
			if string(p.ParentSpanId) != string(root.SpanId) {
				t.Errorf("packet span %x has parent %x, want the root %x", p.SpanId, p.ParentSpanId, root.SpanId)
			}
			if len(spans.children(p)) == 0 {
				t.Errorf("packet span %x has no stage spans", p.SpanId)
			}
			switch {
			case attr(p, "destination.port") == fmt.Sprint(replyPort):
				toServer++
			case attr(p, "source.port") == fmt.Sprint(replyPort):
				toClient++
			}
		}
		if toServer == 0 || toClient == 0 {
			t.Errorf("flow to port %d: %d packets to the server, %d to the client; want both directions", replyPort, toServer, toClient)
		}
		names := spans.stageNames(tid)
		for _, want := range []string{"net:net_dev_queue", "net:netif_receive_skb", "skb:skb_copy_datagram_iovec"} {
			if !names[want] {
				t.Errorf("trace has no %s stage; stages seen: %v", want, names)
			}
		}
	})

	t.Run("nft-dropped SYN is an error span with NETFILTER_DROP at nft_do_chain", func(t *testing.T) {
		p := spans.dropped(droppedPort, "NETFILTER_DROP")
		if p == nil {
			t.Fatalf("no packet span to port %d with status NETFILTER_DROP; spans: %s", droppedPort, spans)
		}
		if got := attr(p, "error.type"); got != "NETFILTER_DROP" {
			t.Errorf("error.type = %q, want NETFILTER_DROP", got)
		}
		if got := attr(p, "pktspan.drop.location"); !strings.HasPrefix(got, "nft_do_chain") {
			t.Errorf("pktspan.drop.location = %q, want nft_do_chain+0x…", got)
		}
		if !hasEvent(p, "drop") {
			t.Errorf("dropped packet span has no `drop` event")
		}
	})

	t.Run("udp to a closed port is an error span with NO_SOCKET", func(t *testing.T) {
		p := spans.dropped(closedPort, "NO_SOCKET")
		if p == nil {
			t.Fatalf("no packet span to port %d with status NO_SOCKET; spans: %s", closedPort, spans)
		}
		if got := attr(p, "network.transport"); got != "udp" {
			t.Errorf("network.transport = %q, want udp", got)
		}
	})

	// The connect to the dropped port waits 1.5 s: TCP sends its SYN again after 1 s.
	t.Run("retransmitted SYN is a packet span with real headers linked to the first", func(t *testing.T) {
		again := spans.retransmitted(droppedPort)
		if again == nil {
			t.Fatalf("no packet span to port %d with pktspan.tcp.retransmit=true; spans: %s", droppedPort, spans)
		}
		links := again.GetLinks()
		if len(links) != 1 {
			t.Fatalf("retransmitted SYN has %d links, want 1 to the first SYN", len(links))
		}
		first := spans.byID(links[0].TraceId, links[0].SpanId)
		if first == nil {
			t.Fatalf("the retransmitted SYN links to span %x, not among the exported spans: %s", links[0].SpanId, spans)
		}
		if attr(first, "pktspan.tcp.retransmit") != "" {
			t.Errorf("the first SYN is marked as a retransmission")
		}
		// The kernel's own word, tcp:tcp_retransmit_skb, is a stage of the copy it sent
		// again, never of the first SYN nor a packet span of its own.
		hasRetransmitStage := func(p *tracepb.Span) bool {
			return slices.ContainsFunc(spans.children(p), func(c *tracepb.Span) bool { return c.Name == "tcp:tcp_retransmit_skb" })
		}
		if !hasRetransmitStage(again) {
			t.Errorf("the retransmitted SYN has no tcp:tcp_retransmit_skb stage")
		}
		if hasRetransmitStage(first) {
			t.Errorf("the first SYN has a tcp:tcp_retransmit_skb stage")
		}
		for name, p := range map[string]*tracepb.Span{"first": first, "retransmitted": again} {
			if got := attr(p, "pktspan.tcp.flags"); got != "SYN" {
				t.Errorf("%s SYN: pktspan.tcp.flags = %q, want SYN", name, got)
			}
			if attr(p, "pktspan.tcp.seq") == "0" || attr(p, "pktspan.skb.len") == "0" || attr(p, "network.interface.name") == "" {
				t.Errorf("%s SYN has zeroed headers: seq %s, len %s, interface %q", name,
					attr(p, "pktspan.tcp.seq"), attr(p, "pktspan.skb.len"), attr(p, "network.interface.name"))
			}
			if p.GetStatus().GetMessage() != "NETFILTER_DROP" {
				t.Errorf("%s SYN: status %q, want NETFILTER_DROP", name, p.GetStatus().GetMessage())
			}
		}
		if attr(first, "pktspan.tcp.seq") != attr(again, "pktspan.tcp.seq") || attr(first, "source.port") != attr(again, "source.port") {
			t.Errorf("the retransmission (seq %s, port %s) repeats another segment (seq %s, port %s)",
				attr(again, "pktspan.tcp.seq"), attr(again, "source.port"), attr(first, "pktspan.tcp.seq"), attr(first, "source.port"))
		}
		for _, p := range spans.packets(droppedPort) {
			if attr(p, "pktspan.tcp.seq") == "0" {
				t.Errorf("packet span %x to port %d has seq 0 (an orphan of the retransmit queue)", p.SpanId, droppedPort)
			}
		}
	})

	t.Run("ICMP port unreachable is a packet span in the UDP flow's trace", func(t *testing.T) {
		root := spans.root("udp", closedPort)
		if root == nil {
			t.Fatalf("no `flow udp` root span for port %d; spans: %s", closedPort, spans)
		}
		icmp := spans.icmpErrorsOf(closedPort)
		if icmp == nil {
			t.Fatalf("no ICMP packet span in the trace of the UDP flow to port %d; spans: %s", closedPort, spans)
		}
		if string(icmp.ParentSpanId) != string(root.SpanId) {
			t.Errorf("ICMP packet span has parent %x, want the UDP flow's root %x", icmp.ParentSpanId, root.SpanId)
		}
		if typ, code := attr(icmp, "pktspan.icmp.type"), attr(icmp, "pktspan.icmp.code"); typ != "3" || code != "3" {
			t.Errorf("ICMP packet span: type %s code %s, want 3/3 (port unreachable)", typ, code)
		}
		if got := attr(icmp, "source.address"); got != serverAddr.Addr().String() {
			t.Errorf("ICMP packet span from %s, want from the server %s", got, serverAddr.Addr())
		}
	})

	t.Run("a packet delivered to its socket has status unset", func(t *testing.T) {
		delivered := 0
		for _, p := range spans.packets(replyPort) {
			if !spans.hasChild(p, "skb:skb_copy_datagram_iovec") {
				continue
			}
			delivered++
			if p.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("delivered packet span %x has status %v %q", p.SpanId, p.GetStatus().GetCode(), p.GetStatus().GetMessage())
			}
		}
		if delivered == 0 {
			t.Errorf("no packet of the flow to port %d reached its socket; spans: %s", replyPort, spans)
		}
	})

	t.Run("port filter keeps other flows out", func(t *testing.T) {
		got := w.waitFor(t, port.service, since, func(s *traceSet) bool { return s.root("tcp", replyPort) != nil })
		for _, p := range got.all {
			if p.Name != "packet" && !strings.HasPrefix(p.Name, "flow ") {
				continue
			}
			if attr(p, "source.port") != fmt.Sprint(replyPort) && attr(p, "destination.port") != fmt.Sprint(replyPort) {
				t.Errorf("--filter-port %d exported %s %s:%s > %s:%s", replyPort, p.Name,
					attr(p, "source.address"), attr(p, "source.port"), attr(p, "destination.address"), attr(p, "destination.port"))
			}
		}
	})
}

// waitFor polls Jaeger until ok accepts the service's spans (or 60 s pass).
func (w *world) waitFor(t *testing.T, service string, since time.Time, ok func(*traceSet) bool) *traceSet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	td, err := w.jaeger.WaitForSpans(ctx, service, since, func(td *tracepb.TracesData) bool { return ok(newTraceSet(td, service)) })
	set := newTraceSet(td, service)
	if err != nil {
		t.Fatalf("waiting for %s's spans in Jaeger: %v\nspans so far: %s", service, err, set)
	}
	return set
}

// traceSet indexes the spans Jaeger returned.
type traceSet struct {
	all  []*tracepb.Span
	host map[*tracepb.Span]string // the host.name of each span's resource
}

// newTraceSet keeps the spans of one service: traces are shared by every pktspan that
// saw the same connection, since trace IDs derive from the flow.
func newTraceSet(td *tracepb.TracesData, service string) *traceSet {
	s := &traceSet{host: map[*tracepb.Span]string{}}
	for _, sp := range jaeger.Spans(td) {
		if name, _ := sp.ResourceAttr("service.name"); name != service {
			continue
		}
		s.all = append(s.all, sp.Span)
		s.host[sp.Span], _ = sp.ResourceAttr("host.name")
	}
	return s
}

func (s *traceSet) rootsFor(transport string, port int) []*tracepb.Span {
	var out []*tracepb.Span
	for _, sp := range s.all {
		if sp.Name == "flow "+transport && (attr(sp, "destination.port") == fmt.Sprint(port) || attr(sp, "source.port") == fmt.Sprint(port)) {
			out = append(out, sp)
		}
	}
	return out
}

func (s *traceSet) root(transport string, port int) *tracepb.Span {
	if r := s.rootsFor(transport, port); len(r) > 0 {
		return r[0]
	}
	return nil
}

func (s *traceSet) packets(port int) []*tracepb.Span {
	var out []*tracepb.Span
	for _, sp := range s.all {
		if sp.Name == "packet" && (attr(sp, "destination.port") == fmt.Sprint(port) || attr(sp, "source.port") == fmt.Sprint(port)) {
			out = append(out, sp)
		}
	}
	return out
}

func (s *traceSet) dropped(port int, reason string) *tracepb.Span {
	for _, p := range s.packets(port) {
		if p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR && p.GetStatus().GetMessage() == reason {
			return p
		}
	}
	return nil
}

// retransmitted is a packet span to port marked as a TCP retransmission.
func (s *traceSet) retransmitted(port int) *tracepb.Span {
	for _, p := range s.packets(port) {
		if attr(p, "pktspan.tcp.retransmit") == "true" {
			return p
		}
	}
	return nil
}

// icmpErrorsOf is an ICMP packet span in the trace of the UDP flow to port.
func (s *traceSet) icmpErrorsOf(port int) *tracepb.Span {
	root := s.root("udp", port)
	if root == nil {
		return nil
	}
	for _, sp := range s.all {
		if sp.Name == "packet" && string(sp.TraceId) == string(root.TraceId) && attr(sp, "network.transport") == "icmp" {
			return sp
		}
	}
	return nil
}

func (s *traceSet) byID(traceID, spanID []byte) *tracepb.Span {
	for _, sp := range s.all {
		if string(sp.TraceId) == string(traceID) && string(sp.SpanId) == string(spanID) {
			return sp
		}
	}
	return nil
}

func (s *traceSet) children(parent *tracepb.Span) []*tracepb.Span {
	var out []*tracepb.Span
	for _, sp := range s.all {
		if string(sp.ParentSpanId) == string(parent.SpanId) && string(sp.TraceId) == string(parent.TraceId) {
			out = append(out, sp)
		}
	}
	return out
}

func (s *traceSet) hasChild(parent *tracepb.Span, name string) bool {
	for _, c := range s.children(parent) {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (s *traceSet) stageNames(traceID string) map[string]bool {
	names := map[string]bool{}
	for _, sp := range s.all {
		if string(sp.TraceId) == traceID && sp.Name != "packet" && !strings.HasPrefix(sp.Name, "flow ") {
			names[sp.Name] = true
		}
	}
	return names
}

func (s *traceSet) String() string {
	var b strings.Builder
	for _, sp := range s.all {
		fmt.Fprintf(&b, "\n  %x %s %s:%s>%s:%s %s %s", sp.TraceId, sp.Name, attr(sp, "source.address"), attr(sp, "source.port"),
			attr(sp, "destination.address"), attr(sp, "destination.port"), sp.GetStatus().GetCode(), sp.GetStatus().GetMessage())
	}
	return b.String()
}

func attr(sp *tracepb.Span, key string) string {
	v, _ := jaeger.AttrString(sp.GetAttributes(), key)
	return v
}

func hasEvent(sp *tracepb.Span, name string) bool {
	for _, e := range sp.GetEvents() {
		if e.Name == name {
			return true
		}
	}
	return false
}

func head(s string, lines int) string {
	parts := strings.SplitN(s, "\n", lines+1)
	if len(parts) > lines {
		parts = parts[:lines]
	}
	return strings.Join(parts, "\n")
}

// An unreachable collector is a user error pktspan survives: one clear line naming the
// endpoint and the likely cause, spans counted as dropped, and still a clean exit.
func TestUnreachableCollectorGivesOneClearLineAndACleanStop(t *testing.T) {
	w := setup(t)
	// Flags given later win: this endpoint replaces Jaeger's.
	in := w.start(t, "pktspan-e2e-unreachable", "--otlp-endpoint", "127.0.0.1:1", "--output", "none",
		"--otlp-batch-delay", "100ms", "--filter-addr", serverAddr.Masked().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := netns.TCPRequest(ctx, w.lab.Client, serverAddr.Addr(), replyPort, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	in.stop(t)
	stderr := in.stderr.String()
	for _, want := range []string{"otlp export to 127.0.0.1:1 failed", "(is the collector running?)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if statValue(t, stderr, "otlp_dropped") == 0 {
		t.Errorf("spans that could not be sent were not counted as dropped:\n%s", stderr)
	}
}

// Every compression pktspan offers is one Jaeger's OTLP receiver (the OpenTelemetry
// Collector's) takes: snappy is no OTLP exporter setting, so only a receiver proves it.
// gzip, the default, is what every other test here exports with.
func TestEveryCompressionReachesJaeger(t *testing.T) {
	w := setup(t)
	for _, compression := range []string{"snappy", "none"} {
		t.Run(compression, func(t *testing.T) {
			request := func(ctx context.Context) error {
				_, err := netns.TCPRequest(ctx, w.lab.Client, serverAddr.Addr(), replyPort, []byte("ping"))
				return err
			}
			run := w.run(t, "compression-"+compression, []string{"--filter-addr", serverAddr.Masked().String(),
				"--otlp-compression", compression}, request)
			w.waitFor(t, run.service, run.since, func(s *traceSet) bool { return len(s.packets(replyPort)) > 0 })
			if n := statValue(t, run.stderr.String(), "otlp_dropped"); n != 0 {
				t.Errorf("%d spans dropped:\n%s", n, run.stderr.String())
			}
		})
	}
}
