package sink

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/pktspan/pktspan/spanner"
)

// fakeExporter records the span names of every batch it is given, then, when block is
// set, waits for block to close or ctx to end. errs are returned by the first exports,
// one each.
type fakeExporter struct {
	t     *testing.T
	head  int
	block chan struct{}
	calls chan struct{} // one value per export, sent once the batch is recorded

	mu      sync.Mutex
	errs    []error
	batches [][]string
}

func newFakeExporter(t *testing.T) *fakeExporter {
	return &fakeExporter{t: t, head: 5, calls: make(chan struct{}, 64)}
}

func (f *fakeExporter) headroom() int { return f.head }

func (f *fakeExporter) export(ctx context.Context, b *wireBatch) error {
	if len(b.buf) < f.head || !bytes.Equal(b.buf[:f.head], make([]byte, f.head)) {
		f.t.Errorf("batch does not leave the %d bytes asked for free in front: %x", f.head, b.buf[:min(len(b.buf), f.head)])
	}
	var ss tracepb.ScopeSpans
	if err := proto.Unmarshal(b.buf[f.head:], &ss); err != nil {
		f.t.Errorf("batch does not decode as spans: %v", err)
	}
	if len(ss.Spans) != b.spans {
		f.t.Errorf("batch holds %d spans, counts %d", len(ss.Spans), b.spans)
	}
	names := make([]string, len(ss.Spans))
	for i, s := range ss.Spans {
		names[i] = s.Name
	}
	f.mu.Lock()
	f.batches = append(f.batches, names)
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	f.mu.Unlock()
	f.calls <- struct{}{}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// waitCalls waits for n more exports to begin.
func (f *fakeExporter) waitCalls(n int) {
	f.t.Helper()
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case <-f.calls:
		case <-timeout:
			f.t.Fatalf("batcher did not export within 5s")
		}
	}
}

func (f *fakeExporter) gotBatches() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

func newTestBatcher(exp batchExporter, queueSize, batchSize int, delay time.Duration, log *slog.Logger) *batcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newBatcher(exp, batcherConfig{
		queueSize: queueSize, batchSize: batchSize, batchBytes: batchBytes, batchDelay: delay, endpoint: "fake:4317", log: log,
	})
}

func names(spans []spanner.Span) []string {
	out := make([]string, len(spans))
	for i := range spans {
		out[i] = spans[i].Name
	}
	return out
}

func checkBatches(t *testing.T, got [][]string, want ...[]spanner.Span) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d batches %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if w := names(want[i]); strings.Join(got[i], ",") != strings.Join(w, ",") {
			t.Errorf("batch %d = %q, want %q", i, got[i], w)
		}
	}
}

func shutdownBatcher(t *testing.T, b *batcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if first, err := b.shutdown(ctx); !first || err != nil {
		t.Fatalf("shutdown = %v, %v; want the first, without error", first, err)
	}
}

func TestBatcherDropsAndCountsBatchesWhenQueueIsFull(t *testing.T) {
	exp := newFakeExporter(t)
	exp.block = make(chan struct{})
	// A queue of one batch of two spans.
	b := newTestBatcher(exp, 2, 2, time.Hour, nil)
	group := tcpGroup()
	b.add(group[0:2])
	exp.waitCalls(1) // the sender holds this batch
	b.add(group[2:4])
	b.add(group[4:6]) // the queue holds the batch before: this one is dropped
	if st := b.stats(); st != (spanner.SinkStats{Dropped: 2}) {
		t.Errorf("stats = %+v with a full queue, want 2 dropped", st)
	}
	close(exp.block)
	shutdownBatcher(t, b)
	if st := b.stats(); st != (spanner.SinkStats{Exported: 4, Dropped: 2}) {
		t.Errorf("stats = %+v after shutdown, want 4 exported, 2 dropped", st)
	}
	checkBatches(t, exp.gotBatches(), group[0:2], group[2:4])
}

func TestBatcherExportsEachBatchOnceFull(t *testing.T) {
	exp := newFakeExporter(t)
	b := newTestBatcher(exp, 100, 3, time.Hour, nil)
	group := tcpGroup() // 7 spans
	b.add(group)
	exp.waitCalls(2) // no delay ticks in an hour: only the batch size sends
	checkBatches(t, exp.gotBatches(), group[0:3], group[3:6])
	shutdownBatcher(t, b)
	checkBatches(t, exp.gotBatches(), group[0:3], group[3:6], group[6:])
	if st := b.stats(); st != (spanner.SinkStats{Exported: 7}) {
		t.Errorf("stats = %+v, want 7 exported", st)
	}
}

// Spans too large for batch_size of them to fit a receiver's message limit.
func TestBatcherSendsABatchOnceItsBytesReachTheCapBeforeItsSpanCount(t *testing.T) {
	exp := newFakeExporter(t)
	group := tcpGroup() // 7 spans
	one := len(appendSpan(nil, &group[0]))
	b := newBatcher(exp, batcherConfig{
		queueSize: 100, batchSize: 100, batchBytes: 2 * one, batchDelay: time.Hour,
		endpoint: "fake:4317", log: slog.New(slog.DiscardHandler),
	})
	b.add(group[:1])
	b.add(group[:1])
	exp.waitCalls(1)
	checkBatches(t, exp.gotBatches(), []spanner.Span{group[0], group[0]})
	shutdownBatcher(t, b)
}

func TestBatcherExportsPartialBatchAfterDelay(t *testing.T) {
	exp := newFakeExporter(t)
	b := newTestBatcher(exp, 1000, 1000, 20*time.Millisecond, nil)
	group := tcpGroup()
	b.add(group)
	exp.waitCalls(1) // far from full: only the delay sends
	checkBatches(t, exp.gotBatches(), group)
	shutdownBatcher(t, b)
	checkBatches(t, exp.gotBatches(), group)
	if st := b.stats(); st != (spanner.SinkStats{Exported: 7}) {
		t.Errorf("stats = %+v, want 7 exported", st)
	}
}

func TestBatcherShutdownExportsPartialBatchAndLaterSpansAreDropped(t *testing.T) {
	exp := newFakeExporter(t)
	b := newTestBatcher(exp, 1000, 1000, time.Hour, nil)
	group := tcpGroup()
	b.add(group)
	shutdownBatcher(t, b)
	checkBatches(t, exp.gotBatches(), group)
	if first, err := b.shutdown(context.Background()); first || err != nil {
		t.Errorf("second shutdown = %v, %v; want a no-op", first, err)
	}
	b.add(group)
	if st := b.stats(); st != (spanner.SinkStats{Exported: 7, Dropped: 7}) {
		t.Errorf("stats = %+v, want 7 exported, and the 7 added after shutdown dropped", st)
	}
}

func TestBatcherShutdownGivesUpWhenContextEnds(t *testing.T) {
	exp := newFakeExporter(t)
	exp.block = make(chan struct{}) // never closed: exports end with their context
	// A queue of one batch of seven spans.
	b := newTestBatcher(exp, 7, 7, time.Hour, nil)
	group := tcpGroup()
	b.add(group)
	exp.waitCalls(1) // the sender holds this batch
	b.add(group)     // queued
	b.add(group[:3]) // the current batch, which Shutdown cannot queue
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	first, err := b.shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s with a 100ms deadline", d)
	}
	if !first || err == nil || !strings.Contains(err.Error(), "17 spans unsent") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown = %v, %v; want 17 spans unsent for the deadline", first, err)
	}
	if st := b.stats(); st != (spanner.SinkStats{Dropped: 17}) {
		t.Errorf("stats = %+v, want all 17 dropped", st)
	}
}

func TestBatcherRetriesABatchTheCollectorCouldNotTakeAndLogsTheCauseOnce(t *testing.T) {
	exp := newFakeExporter(t)
	down := status.Error(codes.Unavailable, "connection refused")
	exp.errs = []error{down, down}
	var logs syncBuffer
	b := newTestBatcher(exp, 100, 7, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	group := tcpGroup()
	for range 3 {
		b.add(group)
	}
	exp.waitCalls(5) // the first batch thrice, then the two others
	shutdownBatcher(t, b)
	if st := b.stats(); st != (spanner.SinkStats{Exported: 21}) {
		t.Errorf("stats = %+v, want all 21 spans exported after the retries", st)
	}
	if got := exp.gotBatches(); len(got) != 5 {
		t.Errorf("%d exports, want 5 (two failed, then the three batches)", len(got))
	}
	out := logs.String()
	// The second failure falls within errLogInterval of the first: one line for both.
	if n := strings.Count(out, "otlp export to fake:4317 failed, retrying while the queue holds: rpc error: code = Unavailable desc = connection refused (is the collector running?)"); n != 1 {
		t.Errorf("%d failure lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "otlp export to fake:4317 recovered") {
		t.Errorf("log lacks the recovery:\n%s", out)
	}
}

func TestBatcherDropsABatchTheCollectorRefusesAndCountsItsCause(t *testing.T) {
	exp := newFakeExporter(t)
	exp.errs = []error{status.Error(codes.InvalidArgument, "bad span")}
	var logs syncBuffer
	b := newTestBatcher(exp, 100, 7, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	b.add(tcpGroup())
	b.add(tcpGroup())
	exp.waitCalls(2)
	shutdownBatcher(t, b)
	if st := b.stats(); st != (spanner.SinkStats{Exported: 7, Dropped: 7}) {
		t.Errorf("stats = %+v, want one batch refused, one exported", st)
	}
	if got := b.dropCauses(); got[1] != (DropCount{"rejected", 7}) || got[0].Spans != 0 || got[2].Spans != 0 {
		t.Errorf("drop causes %+v, want 7 rejected only", got)
	}
	if !strings.Contains(logs.String(), "otlp export to fake:4317 refused, batch dropped: rpc error: code = InvalidArgument desc = bad span") {
		t.Errorf("log lacks the refusal:\n%s", logs.String())
	}
}

func TestBatcherQueueFullDuringAnOutageNamesTheOutageNotTheRate(t *testing.T) {
	exp := newFakeExporter(t)
	down := status.Error(codes.Unavailable, "connection refused")
	exp.errs = []error{down, down, down}
	var logs syncBuffer
	b := newTestBatcher(exp, 7, 7, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	b.add(tcpGroup())
	exp.waitCalls(2)  // the first export failed: the sender retries this batch
	b.add(tcpGroup()) // queued
	b.add(tcpGroup()) // no room
	if got := b.dropCauses()[0]; got != (DropCount{"queue_full", 7}) {
		t.Errorf("drop causes %+v, want 7 for a full queue", b.dropCauses())
	}
	if b.pending() != 14 {
		t.Errorf("pending %d, want the retried and the queued batch, 14 spans", b.pending())
	}
	out := logs.String()
	if !strings.Contains(out, "otlp queue full, dropping spans: export to fake:4317 is failing and retried: rpc error: code = Unavailable") ||
		strings.Contains(out, "slower than the packet rate") {
		t.Errorf("queue-full line does not name the outage:\n%s", out)
	}
	shutdownBatcher(t, b)
	if st := b.stats(); st.Exported+st.Dropped != 21 || st.Dropped != 7 {
		t.Errorf("stats = %+v, want 14 exported after the outage and 7 dropped", st)
	}
}

func TestBatcherKeepsForReuseEveryBatchADrainedBacklogReturns(t *testing.T) {
	exp := newFakeExporter(t)
	exp.block = make(chan struct{})
	// A queue of four batches of two spans.
	b := newTestBatcher(exp, 8, 2, time.Hour, nil)
	group := tcpGroup()[:2]
	b.add(group)
	exp.waitCalls(1) // the sender holds this batch
	for range 4 {
		b.add(group)
	}
	close(exp.block) // the sender drains the backlog while nothing is added
	exp.waitCalls(4)
	deadline := time.Now().Add(5 * time.Second)
	for len(b.free) < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(b.free); n != 5 {
		t.Errorf("%d of the 5 sent batches kept for reuse", n)
	}
	shutdownBatcher(t, b)
}
