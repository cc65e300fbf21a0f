package sink

import (
	"context"
	"net"
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
