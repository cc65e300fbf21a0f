//go:build e2e

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/kernelmatrix"
	"github.com/pktspan/pktspan/internal/netns"
)

// The healthy HTTP flows: the server keeps connections alive on one port (the client
// closes first) and closes them after each response on the other.
const (
	httpKeepAlivePort   = 8081
	httpServerClosePort = 8082
)

// dropLab is the lab, the NAT lab with HTTP servers on both sides, and the traffic of
// README's "What counts as a drop": healthy HTTP and three real drops.
type dropLab struct {
	w   *world
	nat *netns.NATLab
}

func newDropLab(t *testing.T, w *world) *dropLab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nat := newNATLab(ctx, t)
	// The router forwards the HTTP ports to the server as it does port 80.
	rules := fmt.Sprintf("table ip pktspan_http {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n"+
		"  ip daddr %s tcp dport { %d, %d } dnat to %s\n }\n}\n", netns.NATRouterPublic.Addr(), httpKeepAlivePort, httpServerClosePort, netns.NATServer.Addr())
	if err := nat.Router.Nft(ctx, rules); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		ns   *netns.NS
		addr netip.Addr
	}{{w.lab.Server, serverAddr.Addr()}, {nat.Server, netns.NATServer.Addr()}} {
		for port, closeAfter := range map[uint16]bool{httpKeepAlivePort: false, httpServerClosePort: true} {
			srv, err := netns.HTTPServe(s.ns, s.addr, port, closeAfter)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
		}
	}
	return &dropLab{w: w, nat: nat}
}

// traffic is three kept-alive requests and three on connections the server closes,
// directly and through the NAT, then an nft drop, a datagram to a closed port and one
// the router has no route for.
func (l *dropLab) traffic(ctx context.Context) error {
	lab := l.w.lab
	var errs []error
	for _, dst := range []struct {
		ns   *netns.NS
		addr netip.Addr
	}{{lab.Client, serverAddr.Addr()}, {l.nat.Client, netns.NATRouterPublic.Addr()}} {
		errs = append(errs,
			netns.HTTPGets(ctx, dst.ns, dst.addr, httpKeepAlivePort, 3),
			netns.HTTPGets(ctx, dst.ns, dst.addr, httpServerClosePort, 3))
	}
	return errors.Join(append(errs,
		netns.TCPConnectExpectTimeout(ctx, lab.Client, serverAddr.Addr(), droppedPort, time.Second),
		netns.UDPSend(ctx, lab.Client, serverAddr.Addr(), closedPort, []byte("anyone?")),
		netns.UDPSend(ctx, l.nat.Client, netns.NATUnrouted, kernelmatrix.PortNoRoute, []byte("nowhere")))...)
}

// realDrops says whether spans hold the three drops traffic makes.
func realDrops(s *traceSet) bool {
	return s.dropped(droppedPort, "NETFILTER_DROP") != nil && s.dropped(closedPort, "NO_SOCKET") != nil &&
		s.dropped(kernelmatrix.PortNoRoute, "IP_INNOROUTES") != nil
}

// With default flags, healthy HTTP (kept alive, closed by either side, directly and
// through NAT) has no Error packet span, though this kernel frees some of its packets
// with drop reasons; the nft drop, the closed UDP port and the missing route still are
// Errors, and the stats line counts the normal ends.
func TestHealthyHTTPHasNoErrorPacketsAndRealDropsStillAre(t *testing.T) {
	w := setup(t)
	l := newDropLab(t, w)
	run := w.run(t, "healthy", []string{"--filter-addr", "198.18.0.0/15"}, l.traffic)

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool {
		return realDrops(s) && len(s.rootsFor("tcp", httpKeepAlivePort)) >= 2 && len(s.rootsFor("tcp", httpServerClosePort)) >= 6
	})
	healthy := 0
	for _, port := range []int{httpKeepAlivePort, httpServerClosePort} {
		for _, p := range spans.packets(port) {
			healthy++
			if p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("healthy HTTP packet %s:%s > %s:%s [%s] is an Error: %s at %s", attr(p, "source.address"), attr(p, "source.port"),
					attr(p, "destination.address"), attr(p, "destination.port"), attr(p, "pktspan.tcp.flags"),
					p.GetStatus().GetMessage(), attr(p, "pktspan.drop.location"))
			}
		}
	}
	if healthy < 40 {
		t.Errorf("only %d packet spans of the HTTP flows reached Jaeger", healthy)
	}
	normal := statValue(t, run.stderr.String(), "frees_normal")
	t.Logf("%d healthy HTTP packet spans, none an Error; frees_normal=%d", healthy, normal)
	if normal == 0 {
		t.Errorf("final stats count no normal ends, though the HTTP flows had some:\n%s", run.stderr.String())
	}
	for _, line := range strings.Split(run.stdout.String(), "\n") {
		if strings.Contains(line, " DROP ") &&
			(strings.Contains(line, fmt.Sprintf(":%d ", httpKeepAlivePort)) || strings.Contains(line, fmt.Sprintf(":%d ", httpServerClosePort))) {
			t.Errorf("the console shows a healthy HTTP packet as a drop: %s", line)
		}
	}
}

// --export-mode drops (in user space) and --drops-only (in the kernel) export the flows
// with a real drop and nothing of the healthy HTTP flows.
func TestDropModesExportOnlyFlowsWithARealDrop(t *testing.T) {
	w := setup(t)
	l := newDropLab(t, w)
	for _, mode := range [][]string{{"--export-mode", "drops"}, {"--drops-only"}} {
		t.Run(strings.TrimPrefix(mode[0], "--"), func(t *testing.T) {
			run := w.run(t, strings.TrimPrefix(mode[0], "--"), append([]string{"--filter-addr", "198.18.0.0/15"}, mode...), l.traffic)
			spans := w.waitFor(t, run.service, run.since, realDrops)
			// Jaeger has what it will get once the drops are there: the exporter sends
			// in order, and pktspan has stopped.
			for _, port := range []int{httpKeepAlivePort, httpServerClosePort} {
				if got := spans.packets(port); len(got) > 0 {
					p := got[0]
					t.Errorf("%d packet spans of the healthy HTTP flows on port %d were exported, such as %s:%s > %s:%s [%s] %s %s",
						len(got), port, attr(p, "source.address"), attr(p, "source.port"), attr(p, "destination.address"),
						attr(p, "destination.port"), attr(p, "pktspan.tcp.flags"), attr(p, "pktspan.free.reason"), p.GetStatus().GetMessage())
				}
			}
			if n := statValue(t, run.stderr.String(), "frees_normal"); n == 0 {
				t.Errorf("final stats count no normal ends, though the HTTP flows had some:\n%s", run.stderr.String())
			}
		})
	}
}
