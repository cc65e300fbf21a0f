//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/demoapp"
	"github.com/pktspan/pktspan/internal/jaeger"
	"github.com/pktspan/pktspan/internal/netns"
)

const (
	demoPort      = netns.DemoPort
	blackHolePort = netns.BlackHolePort
	lossyPort     = netns.LossyPort
)

// demoApps runs examples/demoapp's client and server, exporting to the test's Jaeger.
type demoApps struct {
	bin string
	env []string
	run string // suffix of the service names, unique to the test run
}

func newDemoApps(t *testing.T, w *world, run string) *demoApps {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := demoapp.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &demoApps{bin: bin, run: run, env: append(os.Environ(),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+w.jaeger.OTLPEndpoint(), "OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=200")}
}

// server starts the demo server listening at addr:port inside ns, until the test ends.
func (d *demoApps) server(t *testing.T, ns *netns.NS, addr netip.Addr, port int) {
	t.Helper()
	stop, err := demoapp.StartServer(context.Background(), d.bin, ns, netip.AddrPortFrom(addr, uint16(port)), d.env,
		"--service-name", "demo-server-"+d.run)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// client runs the demo client from inside ns to completion and returns its report.
func (d *demoApps) client(t *testing.T, ns *netns.NS, url string, args ...string) []demoapp.Request {
	t.Helper()
	rs, err := demoapp.RunClient(context.Background(), d.bin, ns, url, filepath.Join(t.TempDir(), "report.jsonl"), d.env,
		append([]string{"--service-name", "demo-client-" + d.run}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// appTrace is one application trace as Jaeger returned it.
type appTrace struct {
	spans []jaeger.Span
}

// exchanges are the trace's exchange spans exported by service.
func (a *appTrace) exchanges(service string) []jaeger.Span {
	var out []jaeger.Span
	for _, sp := range a.spans {
		if name, _ := sp.ResourceAttr("service.name"); name == service && sp.GetName() == "tcp exchange" {
			out = append(out, sp)
		}
	}
	return out
}

// childrenOf are the spans whose parent is sp.
func (a *appTrace) childrenOf(sp jaeger.Span) []jaeger.Span {
	var out []jaeger.Span
	for _, c := range a.spans {
		if bytes.Equal(c.GetParentSpanId(), sp.GetSpanId()) {
			out = append(out, c)
		}
	}
	return out
}

func (a *appTrace) byName(service, name string) *jaeger.Span {
	for i, sp := range a.spans {
		if s, _ := sp.ResourceAttr("service.name"); s == service && sp.GetName() == name {
			return &a.spans[i]
		}
	}
	return nil
}

func (a *appTrace) String() string {
	var b strings.Builder
	for _, sp := range a.spans {
		svc, _ := sp.ResourceAttr("service.name")
		fmt.Fprintf(&b, "  %s %s span=%s parent=%x status=%s", svc, sp.GetName(), sp.SpanIDHex(), sp.GetParentSpanId(), sp.GetStatus().GetCode())
		for _, k := range []string{"pktspan.tcp.seq", "pktspan.tcp.ack", "pktspan.tcp.flags", "pktspan.exchange.seq", "pktspan.exchange.packets", "pktspan.drop.reason"} {
			if v, ok := sp.Attr(k); ok {
				fmt.Fprintf(&b, " %s=%s", k, v)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// waitTrace polls Jaeger for the trace until ok accepts it.
func (w *world) waitTrace(t *testing.T, traceID string, wait time.Duration, ok func(*appTrace) bool) *appTrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	td, err := w.jaeger.WaitForTrace(ctx, traceID, func(td *tracepb.TracesData) bool { return ok(&appTrace{jaeger.Spans(td)}) })
	a := &appTrace{jaeger.Spans(td)}
	if err != nil {
		t.Fatalf("trace %s in Jaeger: %v\nspans so far:\n%s", traceID, err, a)
	}
	return a
}

// hasExchangesOf reports whether the trace holds, for each service, an exchange under
// the client span with at least one packet span under it.
func hasExchangesOf(clientSpan string, services ...string) func(*appTrace) bool {
	return func(a *appTrace) bool {
		for _, svc := range services {
			found := false
			for _, x := range a.exchanges(svc) {
				found = found || hex.EncodeToString(x.GetParentSpanId()) == clientSpan && len(a.childrenOf(x)) > 0
			}
			if !found {
				return false
			}
		}
		return true
	}
}

// attrInt reads an integer attribute of sp, failing the test when it is missing.
func attrInt(t *testing.T, sp jaeger.Span, key string) uint32 {
	t.Helper()
	v, ok := sp.Attr(key)
	if !ok {
		t.Fatalf("%s span %s has no %s", sp.GetName(), sp.SpanIDHex(), key)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return uint32(n)
}

// checkRanges checks that the packets of each exchange of service lie in the sequence
// range of its request: a packet going the request's way starts at or after the
// request's first byte and before the next request's on the connection; one going back
// acknowledges some of the request and nothing past the next one's first byte. next
// maps an exchange's connection and first byte to the next request's first byte (0
// when it was the connection's last).
func checkRanges(t *testing.T, traces []*appTrace, service string) {
	t.Helper()
	type xinfo struct {
		seq    uint32
		client string
		x      jaeger.Span
		tr     *appTrace
	}
	byConn := map[string][]xinfo{}
	for _, tr := range traces {
		for _, x := range tr.exchanges(service) {
			local, _ := x.Attr("network.local.port")
			byConn[local] = append(byConn[local], xinfo{attrInt(t, x, "pktspan.exchange.seq"), local, x, tr})
		}
	}
	seen := map[string]string{} // packet span identity (skb and start) → its exchange
	for conn, xs := range byConn {
		slices.SortFunc(xs, func(a, b xinfo) int { return int(int32(a.seq - b.seq)) })
		for i, xi := range xs {
			var next uint32
			hasNext := i+1 < len(xs)
			if hasNext {
				next = xs[i+1].seq
			}
			for _, p := range xi.tr.childrenOf(xi.x) {
				if p.GetName() != "packet" {
					t.Errorf("exchange %s has a child %q, want only packet spans", xi.x.SpanIDHex(), p.GetName())
					continue
				}
				skb, _ := p.Attr("pktspan.skb.address")
				id := skb + "@" + strconv.FormatUint(p.GetStartTimeUnixNano(), 10)
				if other, dup := seen[id]; dup && other != xi.x.SpanIDHex() {
					t.Errorf("packet %s is under two exchanges, %s and %s", id, other, xi.x.SpanIDHex())
				}
				seen[id] = xi.x.SpanIDHex()
				sport, _ := p.Attr("source.port")
				seq, ack := attrInt(t, p, "pktspan.tcp.seq"), attrInt(t, p, "pktspan.tcp.ack")
				if sport == conn {
					if d := int32(seq - xi.seq); d < 0 || hasNext && int32(seq-next) > 0 {
						t.Errorf("connection :%s: packet seq %d under the exchange of the request at %d (next at %d, %v)", conn, seq, xi.seq, next, hasNext)
					}
					continue
				}
				if d := int32(ack - xi.seq); d <= 0 || hasNext && int32(ack-next) > 0 {
					t.Errorf("connection :%s: reply acknowledging %d under the exchange of the request at %d (next at %d, %v)", conn, ack, xi.seq, next, hasNext)
				}
			}
		}
	}
}

// TestCorrelateHTTPPutsEachRequestsPacketsIntoTheAppsOwnTrace runs the otelhttp demo
// apps across the lab with two pktspans, one following the client's namespace and one
// the server's (the two ends of a request, as on two hosts), and reads the apps' traces
// back from Jaeger.
func TestCorrelateHTTPPutsEachRequestsPacketsIntoTheAppsOwnTrace(t *testing.T) {
	w := setup(t)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := serverAddr.Addr()
	if err := w.lab.Server.Nft(ctx, netns.BlackHoleRules(blackHolePort)); err != nil {
		t.Fatal(err)
	}
	if err := w.lab.Client.Nft(ctx, netns.LossyRules(lossyPort)); err != nil {
		t.Fatal(err)
	}
	apps := newDemoApps(t, w, run)
	for _, port := range []int{demoPort, blackHolePort, lossyPort} {
		apps.server(t, w.lab.Server, srv, port)
	}
	ports := fmt.Sprintf("%d,%d,%d", demoPort, blackHolePort, lossyPort)
	common := []string{"--correlate", "http", "--correlate-linger", "500ms", "--filter-port", ports,
		"--trace-max-duration", "8s", "--output", "none"}
	clientSvc, serverSvc := "pktspan-corr-client-"+run, "pktspan-corr-server-"+run
	client := w.start(t, clientSvc, append(common, "--filter-netns", w.lab.Client.Path())...)
	server := w.start(t, serverSvc, append(common, "--filter-netns", w.lab.Server.Path(),
		"--correlate-trust", netip.PrefixFrom(srv, 30).Masked().String())...)
	base := "http://" + net.JoinHostPort(srv.String(), strconv.Itoa(demoPort))

	t.Run("each request of a kept-alive connection has one exchange per traced namespace under its client span", func(t *testing.T) {
		rs := apps.client(t, w.lab.Client, base+"/bytes?n=20000", "--requests", "5", "--connections", "1")
		var traces []*appTrace
		for i, r := range rs {
			if r.Status != 200 || !r.Sampled {
				t.Fatalf("request %d: %+v, want a sampled 200", i, r)
			}
			tr := w.waitTrace(t, r.TraceID, 30*time.Second, hasExchangesOf(r.SpanID, clientSvc, serverSvc))
			for _, svc := range []string{clientSvc, serverSvc} {
				if n := len(tr.exchanges(svc)); n != 1 {
					t.Errorf("request %d: %d exchanges of %s, want 1:\n%s", i, n, svc, tr)
				}
			}
			if tr.byName("demo-client-"+run, "HTTP GET") == nil || tr.byName("demo-server-"+run, "GET") == nil {
				t.Errorf("request %d: the apps' own spans are missing:\n%s", i, tr)
			}
			traces = append(traces, tr)
		}
		if i := len(traces) - 1; i >= 0 {
			t.Logf("one request's trace as Jaeger returned it:\n%s", traces[i])
		}
		checkRanges(t, traces, clientSvc)
		checkRanges(t, traces, serverSvc)
	})

	t.Run("50 concurrent requests over 4 connections keep every packet in its own request", func(t *testing.T) {
		rs := apps.client(t, w.lab.Client, base+"/bytes?n=3000", "--requests", "50", "--concurrency", "50", "--connections", "4")
		var traces []*appTrace
		for i, r := range rs {
			if r.Status != 200 {
				t.Fatalf("request %d: %+v", i, r)
			}
			traces = append(traces, w.waitTrace(t, r.TraceID, 30*time.Second, hasExchangesOf(r.SpanID, clientSvc)))
		}
		checkRanges(t, traces, clientSvc)
	})

	t.Run("a reply segment dropped and sent again is an error packet and a retransmission in the request's trace", func(t *testing.T) {
		url := "http://" + net.JoinHostPort(srv.String(), strconv.Itoa(lossyPort)) + "/bytes?n=200000"
		rs := apps.client(t, w.lab.Client, url)
		if len(rs) != 1 || rs[0].Status != 200 {
			t.Fatalf("report %+v, want one 200", rs)
		}
		tr := w.waitTrace(t, rs[0].TraceID, 30*time.Second, func(a *appTrace) bool {
			dropped, retx := false, false
			for _, x := range a.exchanges(clientSvc) {
				for _, p := range a.childrenOf(x) {
					reason, _ := p.Attr("pktspan.drop.reason")
					r, _ := p.Attr("pktspan.tcp.retransmit")
					dropped = dropped || reason == "NETFILTER_DROP" && p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
					retx = retx || r == "true"
				}
			}
			return dropped && retx && a.byName("demo-client-"+run, "HTTP GET") != nil
		})
		t.Logf("the lossy request's trace as Jaeger returned it:\n%s", tr)
		if c := tr.byName("demo-client-"+run, "HTTP GET"); c.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("the client span is an error:\n%s", tr)
		}
		for _, x := range tr.exchanges(clientSvc) {
			if x.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("the exchange is an error though the drop was recovered:\n%s", tr)
			}
		}
	})

	t.Run("a request into a black hole makes its exchange an error", func(t *testing.T) {
		url := "http://" + net.JoinHostPort(srv.String(), strconv.Itoa(blackHolePort)) + "/"
		rs := apps.client(t, w.lab.Client, url, "--timeout", "2s")
		if len(rs) != 1 || rs[0].Error == "" {
			t.Fatalf("report %+v, want one failed request", rs)
		}
		tr := w.waitTrace(t, rs[0].TraceID, 40*time.Second, func(a *appTrace) bool {
			for _, x := range a.exchanges(clientSvc) {
				if x.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
					return true
				}
			}
			return false
		})
		for _, x := range tr.exchanges(clientSvc) {
			if msg := x.GetStatus().GetMessage(); msg != "NETFILTER_DROP" {
				t.Errorf("exchange status %q, want NETFILTER_DROP", msg)
			}
		}
	})

	t.Run("an unsampled client puts nothing of pktspan into its trace", func(t *testing.T) {
		rs := apps.client(t, w.lab.Client, base+"/", "--requests", "3", "--sampled=false")
		// What a sampled request shows within this time (linger 500ms, batches of 200ms).
		time.Sleep(4 * time.Second)
		for _, r := range rs {
			td, err := w.jaeger.Trace(ctx, r.TraceID)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(jaeger.Spans(td)); n != 0 {
				t.Errorf("unsampled trace %s has %d spans in Jaeger:\n%s", r.TraceID, n, &appTrace{jaeger.Spans(td)})
			}
		}
	})

	// Raw requests from the client namespace, each with its own traceparent text.
	lowercase := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	variants := []string{
		"traceparent:" + lowercase, // no space after the colon: valid
		strings.Repeat("x-pad: "+strings.Repeat("p", 100)+"\r\n", 10) + "traceparent: " + lowercase, // past 1024 bytes: truncated
		"traceparent: 00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",                      // upper-case hex
		"traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01",                      // zero trace ID
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",                      // zero parent ID
		"traceparent: " + lowercase + "\r\ntraceparent: " + lowercase,                               // twice
	}
	t.Run("header variants are accepted or rejected as W3C says", func(t *testing.T) {
		for _, v := range variants {
			req := "GET / HTTP/1.1\r\nHost: lab\r\n" + v + "\r\nConnection: close\r\n\r\n"
			if _, err := netns.TCPRequest(ctx, w.lab.Client, srv, demoPort, []byte(req)); err != nil {
				t.Fatal(err)
			}
		}
		w.waitTrace(t, "0af7651916cd43dd8448eb211c80319c", 30*time.Second, func(a *appTrace) bool {
			return len(a.exchanges(clientSvc)) == 1
		})
		// What cannot be read is counted: a TLS ClientHello's record and an HTTP/2
		// preface (the server answers neither as the client hopes; the bytes went out).
		hello := append([]byte{22, 3, 1, 0, 60, 1, 0, 0, 56, 3, 3}, make([]byte, 56)...)
		for _, b := range [][]byte{hello, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")} {
			_, _ = netns.TCPRequest(ctx, w.lab.Client, srv, demoPort, b)
		}
	})

	client.stop(t)
	server.stop(t)
	t.Logf("client-side pktspan stderr:\n%s", client.stderr.String())
	for key, want := range map[string]uint64{
		"requests_truncated": 1, "requests_malformed": 1, "requests_zero_id": 2, "requests_duplicate": 1,
	} {
		if got := statValue(t, client.stderr.String(), key); got != want {
			t.Errorf("client-side pktspan: %s=%d, want %d", key, got, want)
		}
	}
	for _, key := range []string{"tls_hellos", "http2_prefaces"} {
		if got := statValue(t, client.stderr.String(), key); got == 0 {
			t.Errorf("client-side pktspan: %s=0, want the one the test sent counted", key)
		}
	}
	if got := statValue(t, client.stderr.String(), "requests_unsampled"); got < 3 {
		t.Errorf("client-side pktspan: requests_unsampled=%d, want at least 3", got)
	}
	if got := statValue(t, server.stderr.String(), "requests_repeated"); got == 0 {
		t.Errorf("server-side pktspan saw no request both leaving the client and arriving at the server")
	}
}

// TestCorrelateHTTPThroughNATKeepsBothSidesInTheRequestsTrace sends the demo client's
// requests to the NAT lab's public address: the router rewrites both addresses, and the
// packets on both sides of it go under the request's exchange.
func TestCorrelateHTTPThroughNATKeepsBothSidesInTheRequestsTrace(t *testing.T) {
	w := setup(t)
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nat := newNATLab(ctx, t)
	public, inside := netns.NATRouterPublic.Addr(), netns.NATServer.Addr()
	if _, err := nat.Router.Exec(ctx, "nft", "add", "rule", "ip", "pktspan_nat", "pre", "ip", "daddr", public.String(),
		"tcp", "dport", strconv.Itoa(demoPort), "dnat", "to", net.JoinHostPort(inside.String(), strconv.Itoa(demoPort))); err != nil {
		t.Fatal(err)
	}
	apps := newDemoApps(t, w, run)
	apps.server(t, nat.Server, inside, demoPort)
	svc := "pktspan-corr-nat-" + run
	in := w.start(t, svc, "--correlate", "http", "--correlate-linger", "500ms", "--filter-port", strconv.Itoa(demoPort), "--output", "none")
	rs := apps.client(t, nat.Client, "http://"+net.JoinHostPort(public.String(), strconv.Itoa(demoPort))+"/bytes?n=20000", "--requests", "3")
	for i, r := range rs {
		if r.Status != 200 {
			t.Fatalf("request %d: %+v", i, r)
		}
		tr := w.waitTrace(t, r.TraceID, 30*time.Second, func(a *appTrace) bool {
			if !hasExchangesOf(r.SpanID, svc)(a) {
				return false
			}
			// A reply as the server sent it, before the router undid the NAT.
			for _, x := range a.exchanges(svc) {
				for _, p := range a.childrenOf(x) {
					if src, _ := p.Attr("source.address"); src == inside.String() {
						return true
					}
				}
			}
			return false
		})
		if n := len(tr.exchanges(svc)); n != 1 {
			t.Errorf("request %d: %d exchanges, want 1:\n%s", i, n, tr)
		}
	}
	in.stop(t)
}
