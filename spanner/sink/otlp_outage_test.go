package sink

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// serveOn serves c on addr (a port used before) and returns the stop function.
func serveOn(t *testing.T, c *collector, addr string) func() {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the old listener's port may take a moment to be free again
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	return srv.Stop
}

// A collector down for a while costs only what the queue cannot hold: batches that
// failed are retried, export resumes within 2s of the collector's return, and every
// span produced is either exported or counted as dropped.
func TestOTLPResumesWithin2sOfTheCollectorsReturnAndLosesOnlyWhatTheQueueCannotHold(t *testing.T) {
	clearOTELEnv(t)
	c := &collector{calls: make(chan struct{}, 1)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	stop := serveOn(t, c, addr)

	group := tcpGroup() // 7 spans
	const queue = 70    // ten groups
	o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithInsecure(true),
		WithQueueSize(queue), WithBatchSize(7), WithBatchDelay(20*time.Millisecond), WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	produced := 0
	export := func(n int) {
		for range n {
			o.Export(group)
			produced += len(group)
		}
	}
	export(1)
	<-c.calls
	stop() // the outage
	outage := time.Now()
	for time.Since(outage) < 3*time.Second {
		export(1)
		time.Sleep(50 * time.Millisecond)
	}
	before := len(c.spans())
	back := time.Now()
	stop = serveOn(t, c, addr)
	defer stop()
	for len(c.spans()) == before && time.Since(back) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(back); d > 2*time.Second {
		t.Errorf("export resumed %s after the collector came back, want within 2s", d.Round(time.Millisecond))
	}
	shutdown(t, o, 5*time.Second)
	st := o.Stats()
	if int(st.Exported+st.Dropped) != produced {
		t.Errorf("exported %d + dropped %d != produced %d", st.Exported, st.Dropped, produced)
	}
	// The queue, the batch being retried and the one being filled survive the outage.
	if got := len(c.spans()) - before; got < queue {
		t.Errorf("%d spans exported after the outage, want at least the queue's %d", got, queue)
	}
	causes := o.DropCauses()
	if causes[0].Cause != "queue_full" || causes[0].Spans != st.Dropped {
		t.Errorf("drops %+v: want all %d counted as queue_full", causes, st.Dropped)
	}
}

// gRPC's own reconnect backoff (a second, growing to two minutes) would delay export
// long after the collector's return; the sink's (100 ms, growing to a second) holds
// whatever compression is set, although each otlptracegrpc.WithDialOption call
// replaces the options of the one before.
func TestOTLPReconnectsAtTheSinksPaceWhateverTheCompression(t *testing.T) {
	clearOTELEnv(t)
	for _, compression := range []string{"", "gzip", "snappy", "none"} {
		t.Run("compression="+compression, func(t *testing.T) {
			t.Parallel()
			// Accepts each connection and closes it before the HTTP/2 preface: every
			// attempt fails, and each is counted.
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			var attempts atomic.Int32
			go func() {
				for {
					c, err := lis.Accept()
					if err != nil {
						return
					}
					attempts.Add(1)
					c.Close()
				}
			}()
			o, err := NewOTLP(context.Background(), WithEndpoint(lis.Addr().String()), WithInsecure(true),
				WithCompression(compression), WithBatchSize(7), WithBatchDelay(20*time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_ = o.Shutdown(ctx) // the spans cannot go: nothing to check
			}()
			o.Export(tcpGroup())
			// In 2.5 s, the sink's backoff makes 6 attempts or more (jitter included);
			// gRPC's default makes 3.
			time.Sleep(2500 * time.Millisecond)
			if n := attempts.Load(); n < 5 {
				t.Errorf("%d connection attempts in 2.5s: the reconnect backoff is gRPC's default, not the sink's", n)
			}
		})
	}
}
