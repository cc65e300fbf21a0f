//go:build e2e

package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/jaeger"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

const (
	// outageUDPPort is where the steady traffic goes: a socket in the server reads it.
	outageUDPPort = 9100
	// outageRate is the datagrams per second the client sends, in bursts every 10 ms.
	outageRate = 1000
	// The queue is small so that a 30 s outage overflows it many times over: the drops
	// are then counted for real, and memory that grew with the outage instead of the
	// queue would stand out from the bound.
	outageQueue = 4096
	outageBatch = 256
	// maxSpanBytes bounds one encoded span of this traffic (a UDP packet span or one of
	// its stage spans: a few hundred bytes each).
	maxSpanBytes = 1024
)

// A collector killed for 30 s under steady traffic and started again on the same port
// costs only what the queue cannot hold: pktspan stays up, its memory stays within what
// the queue holds, export resumes within 2 s of the collector's return, and every span
// made is either sent or counted as dropped by cause.
func TestCollectorKilledFor30sCostsOnlyWhatTheQueueCannotHoldAndExportResumesWithin2s(t *testing.T) {
	requireRoot(t)
	bin := buildPktspan(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, err := jaeger.Start(ctx)
	if err != nil {
		t.Fatalf("starting Jaeger (run `make jaeger` first): %v", err)
	}
	t.Cleanup(func() { _ = first.Stop() })
	endpoint := first.OTLPEndpoint()

	pair, err := netns.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pair.Close() })
	server := netns.LabServer.Addr()
	udpServe(t, pair.Server, server)

	const service = "outage"
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--output", "none", "--otlp-endpoint", endpoint, "--otlp-insecure",
		"--service-name", service, "--filter-addr", server.String(), "--filter-port", strconv.Itoa(outageUDPPort),
		"--stats-interval", "1s", "--otlp-queue-size", strconv.Itoa(outageQueue),
		"--otlp-batch-size", strconv.Itoa(outageBatch), "--otlp-batch-delay", "200ms")
	cmd.Env = cleanEnviron()
	cmd.Stderr = &stderr
	p, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = p.Stop(os.Kill, time.Second) })
	pid := cmd.Process.Pid

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	defer stopTraffic()
	var sent atomic.Int64
	trafficDone := make(chan error, 1)
	go func() { trafficDone <- steadyUDP(trafficCtx, pair.Client, server, &sent) }()

	since := time.Now().Add(-time.Second)
	if _, err := first.WaitForSpans(ctx, service, since, func(td *tracepb.TracesData) bool { return len(jaeger.Spans(td)) > 0 }); err != nil {
		t.Fatalf("no spans reached the first Jaeger: %v\n%s", err, stderr.String())
	}
	time.Sleep(2 * time.Second) // the spanner's tables and the sender settle at the rate
	before := rssKiB(t, pid)

	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	// Held at most: the queue, the batch being retried, the one filling and the sent
	// ones kept for reuse; twice that, as the garbage collector lets the heap grow to
	// twice what is live; and 8 MiB for what gRPC and the runtime allocate meanwhile.
	bound := before + (2*(outageQueue+6*outageBatch)*maxSpanBytes)>>10 + 8<<10
	peak := before
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		select {
		case <-p.Exited():
			t.Fatalf("pktspan exited during the outage:\n%s", stderr.String())
		case <-time.After(500 * time.Millisecond):
		}
		peak = max(peak, rssKiB(t, pid))
	}

	second, err := jaeger.Start(ctx, jaeger.WithOTLPEndpoint(endpoint))
	if err != nil {
		t.Fatalf("starting Jaeger again on %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = second.Stop() })
	back := time.Now()
	resumed := firstSpanAfter(ctx, t, second, service, since, back)
	if resumed > 2*time.Second {
		t.Errorf("export resumed %s after the collector came back, want within 2s", resumed.Round(time.Millisecond))
	}

	time.Sleep(2 * time.Second) // traffic and export go on after the outage
	stopTraffic()
	if err := <-trafficDone; err != nil {
		t.Fatal(err)
	}
	peak = max(peak, rssKiB(t, pid))
	hwm := statusKiB(t, pid, "VmHWM")
	if err := p.Stop(os.Interrupt, 30*time.Second); err != nil {
		t.Fatalf("pktspan did not stop cleanly: %v\n%s", err, stderr.String())
	}
	if peak > bound || hwm > bound {
		t.Errorf("RSS %d KiB before the outage, at most %d KiB after it (high-water mark %d KiB): over the queue's bound of %d KiB",
			before, peak, hwm, bound)
	}

	out := stderr.String()
	spans, exported, dropped := statValue(t, out, "spans"), statValue(t, out, "otlp_exported"), statValue(t, out, "otlp_dropped")
	full, rejected, unsent := statValue(t, out, "otlp_dropped_queue_full"), statValue(t, out, "otlp_dropped_rejected"), statValue(t, out, "otlp_dropped_unsent")
	if exported+dropped != spans || full+rejected+unsent != dropped {
		t.Errorf("spans %d != exported %d + dropped %d (queue_full %d, rejected %d, unsent %d)", spans, exported, dropped, full, rejected, unsent)
	}
	// 30 s at the rate is many times the queue: a run dropping nothing did not count them.
	if full == 0 {
		t.Errorf("no span counted as dropped on a full queue through a 30 s outage; final stats:\n%s", out)
	}
	t.Logf("%d datagrams; %d spans made, %d exported, %d dropped (queue_full %d, rejected %d, unsent %d): %.1f%% lost; "+
		"export resumed %s after the collector's return; RSS %d KiB before the outage, peak %d KiB, high-water mark %d KiB, bound %d KiB",
		sent.Load(), spans, exported, dropped, full, rejected, unsent, 100*float64(dropped)/float64(max(spans, 1)),
		resumed.Round(time.Millisecond), before, peak, hwm, bound)
}

// firstSpanAfter polls j, started empty at back, every 50 ms (finer than WaitForSpans, as
// the delay is what is measured) until a span of service is in it, and returns when
// that was.
func firstSpanAfter(ctx context.Context, t *testing.T, j *jaeger.Jaeger, service string, since, back time.Time) time.Duration {
	t.Helper()
	for time.Since(back) < 10*time.Second {
		td, err := j.Traces(ctx, service, since)
		if err != nil {
			t.Fatal(err)
		}
		if len(jaeger.Spans(td)) > 0 {
			return time.Since(back)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no spans reached the restarted Jaeger within 10s")
	return 0
}

// udpServe reads and discards datagrams to addr:outageUDPPort in ns until the test ends,
// so that they end as consumed, not dropped for want of a socket.
func udpServe(t *testing.T, ns *netns.NS, addr netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(addr, outageUDPPort).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
}

// steadyUDP sends outageRate datagrams a second from ns to addr:outageUDPPort, over one
// socket (one flow), until ctx ends.
func steadyUDP(ctx context.Context, ns *netns.NS, addr netip.Addr, sent *atomic.Int64) error {
	const every = 10 * time.Millisecond
	err := netns.Dial(ctx, ns, "udp", addr, outageUDPPort, func(c net.Conn) error {
		tick := time.NewTicker(every)
		defer tick.Stop()
		payload := []byte("steady")
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			for range outageRate * every / time.Second {
				if _, err := c.Write(payload); err != nil {
					return err
				}
				sent.Add(1)
			}
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
