package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pktspan/pktspan/spanner"
)

// batchExporter is what the batcher sends batches through: the OTLP exporter, or a
// fake in tests.
type batchExporter interface {
	// headroom is the room export needs in front of a batch's spans to frame them.
	headroom() int
	// export sends b. It must not write b's spans, and may read them after it returns
	// only under a hold it releases. It is called from one goroutine at a time, again
	// with the same b when retrying, and must return soon once ctx is cancelled.
	export(ctx context.Context, b *wireBatch) error
}

// wireBatch is one batch being filled: the encoded spans, each a ScopeSpans.spans
// field, after the exporter's headroom left free for it.
type wireBatch struct {
	buf   []byte
	spans int
	// req is the request the exporter framed around buf, once for every try, and rsLen
	// the length of the ResourceSpans that ends it.
	req   []byte
	rsLen int
	// refs counts who may still read buf: the batcher until it has sent the batch, and
	// gRPC until it has written each request. At zero the batch is reused.
	refs atomic.Int32
	free chan<- *wireBatch
}

// hold keeps the batch from reuse until a matching release.
func (w *wireBatch) hold() { w.refs.Add(1) }

// release lets go of the batch; the last one hands it back for reuse.
func (w *wireBatch) release() {
	if w.refs.Add(-1) == 0 {
		select {
		case w.free <- w:
		default:
		}
	}
}

// A batch whose export failed for a reason that may pass (the collector down,
// overloaded, too slow) is sent again after retryFirst, the wait doubling up to
// retryMax, for as long as it takes: meanwhile the queue keeps taking batches and drops
// (and counts) only what it cannot hold, as the OpenTelemetry Collector's sending queue
// does. retryMax keeps the delay between the collector's return and the next export
// short: gRPC reconnects within about 1.2 s (its backoff capped at 1 s, with jitter),
// and a retry while the connection is down fails at once, so retrying often costs
// nothing and keeps the resume within 2 s.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 250 * time.Millisecond
)

// DropCount is how many spans a sink dropped for one cause.
type DropCount struct {
	Cause string
	Spans uint64
}

type batcherConfig struct {
	queueSize  int // spans
	batchSize  int // spans
	batchBytes int // encoded spans, at most, in one request
	batchDelay time.Duration
	endpoint   string // names the destination in log lines
	log        *slog.Logger
}

// batcher encodes spans into batches of a bounded size, queues them and sends them
// through a batchExporter from one goroutine: full batches at once, partial ones
// after a delay. A full queue drops the batch and counts its spans; nothing waits.
type batcher struct {
	exp        batchExporter
	endpoint   string
	log        *slog.Logger
	batchSize  int
	batchBytes int
	head       int
	// fullLen is the length of the last full batch, to size new batches by: growing a
	// buffer of hundreds of kilobytes from nothing copies it several times over.
	fullLen int

	mu           sync.Mutex
	batch        *wireBatch
	closed       bool
	lastQueueLog time.Time
	queueDrops   uint64 // spans dropped on a full queue since lastQueueLog

	queue      chan *wireBatch
	free       chan *wireBatch // sent batches, for reuse
	stopFlush  chan struct{}
	flushDone  chan struct{}
	sendDone   chan struct{}
	sendCtx    context.Context
	cancelSend context.CancelFunc

	// Owned by the sender goroutine.
	lastErrLog time.Time
	lastErr    error
	suppressed int
	failing    bool

	exported atomic.Uint64
	dropped  atomic.Uint64 // the sum of the causes below
	// By cause: the queue was full; the collector refused the batch for good (an invalid
	// request, credentials); still unsent when Shutdown's time ran out, or offered after it.
	queueFull atomic.Uint64
	rejected  atomic.Uint64
	unsent    atomic.Uint64
	queued    atomic.Int64 // spans in the queue and in the batch being sent
	sendErr   atomic.Pointer[error]
}

// inFlightBatches is how many batches live outside the queue besides the free ones:
// the one being filled, the one being sent and the one gRPC may still be writing. A
// batch is allocated only when none is free, so at most the queue's batches and these
// ever exist, and the free list holds every one that comes back: while the sender
// drains a backlog faster than the producer refills it, a shorter list would hand
// batches of hundreds of kilobytes to the garbage collector only for the producer to
// allocate them again.
const inFlightBatches = 3

// newBatcher starts the flushing and sending goroutines; shutdown stops them.
// cfg's sizes and delay must be positive.
func newBatcher(exp batchExporter, cfg batcherConfig) *batcher {
	sendCtx, cancelSend := context.WithCancel(context.Background())
	queueBatches := max(1, cfg.queueSize/cfg.batchSize)
	b := &batcher{
		exp:        exp,
		endpoint:   cfg.endpoint,
		log:        cfg.log,
		batchSize:  cfg.batchSize,
		batchBytes: cfg.batchBytes,
		head:       exp.headroom(),
		queue:      make(chan *wireBatch, queueBatches),
		free:       make(chan *wireBatch, queueBatches+inFlightBatches),
		stopFlush:  make(chan struct{}),
		flushDone:  make(chan struct{}),
		sendDone:   make(chan struct{}),
		sendCtx:    sendCtx,
		cancelSend: cancelSend,
	}
	b.batch = b.newBatch()
	go b.flushLoop(cfg.batchDelay)
	go b.sendLoop()
	return b
}

// add encodes the group at once (the caller reuses its buffers) into the current
// batch. A full batch (batchSize spans, or batchBytes of them) is queued without
// waiting; when the queue is full the batch is dropped and counted.
func (b *batcher) add(group []spanner.Span) {
	if len(group) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.drop(&b.unsent, len(group))
		return
	}
	for i := range group {
		b.batch.buf = appendSpan(b.batch.buf, &group[i])
		if b.batch.spans++; b.batch.spans >= b.batchSize || len(b.batch.buf)-b.head >= b.batchBytes {
			b.fullLen = len(b.batch.buf)
			b.enqueueLocked()
		}
	}
}

// newBatch returns an empty batch, reusing a sent one when there is one.
func (b *batcher) newBatch() *wireBatch {
	var w *wireBatch
	select {
	case w = <-b.free:
	default:
		// Room for a full batch, and an eighth more as batches differ.
		w = &wireBatch{free: b.free, buf: make([]byte, 0, b.fullLen+b.fullLen/8)}
	}
	w.buf = append(w.buf[:0], make([]byte, b.head)...)
	w.spans = 0
	w.req = nil
	w.refs.Store(1)
	return w
}

// enqueueLocked hands the current batch to the sender, or drops it when the queue is
// full. b.mu must be held.
func (b *batcher) enqueueLocked() {
	n := b.batch.spans
	b.queued.Add(int64(n))
	select {
	case b.queue <- b.batch:
		b.batch = b.newBatch()
	default:
		b.queued.Add(-int64(n))
		b.drop(&b.queueFull, n)
		b.queueDrops += uint64(n)
		b.batch.buf = b.batch.buf[:b.head]
		b.batch.spans = 0
		if now := time.Now(); now.Sub(b.lastQueueLog) >= errLogInterval {
			// The cause is the collector's when exports are failing, else the rate.
			if errp := b.sendErr.Load(); errp != nil {
				b.log.Warn(fmt.Sprintf("otlp queue full, dropping spans: export to %s is failing and retried: %v%s", b.endpoint, *errp, exportHint(*errp)),
					"dropped", b.queueDrops)
			} else {
				b.log.Warn(fmt.Sprintf("otlp queue full, dropping spans: export to %s is slower than the packet rate (raise otlp.queue_size or filter more)", b.endpoint),
					"dropped", b.queueDrops)
			}
			b.lastQueueLog = now
			b.queueDrops = 0
		}
	}
}

// flushLoop sends partial batches so quiet periods still reach the collector.
func (b *batcher) flushLoop(delay time.Duration) {
	defer close(b.flushDone)
	t := time.NewTicker(delay)
	defer t.Stop()
	for {
		select {
		case <-b.stopFlush:
			return
		case <-t.C:
			b.mu.Lock()
			if !b.closed && b.batch.spans > 0 {
				b.enqueueLocked()
			}
			b.mu.Unlock()
		}
	}
}

// sendLoop exports queued batches one at a time until the queue is closed.
func (b *batcher) sendLoop() {
	defer close(b.sendDone)
	for w := range b.queue {
		b.send(w)
		b.queued.Add(-int64(w.spans))
		w.release()
	}
}

// send exports one batch, retrying it while the failure may pass, and counts its
// spans; failures are logged at most once per errLogInterval.
func (b *batcher) send(w *wireBatch) {
	wait := retryFirst
	for {
		if b.sendCtx.Err() != nil {
			// Shutdown ran out of time; it reports the loss.
			b.drop(&b.unsent, w.spans)
			return
		}
		err := b.exp.export(b.sendCtx, w)
		if err == nil {
			b.exported.Add(uint64(w.spans))
			if b.failing {
				b.log.Info(fmt.Sprintf("otlp export to %s recovered", b.endpoint))
				b.failing = false
				b.lastErrLog = time.Time{}
				b.sendErr.Store(nil)
			}
			return
		}
		b.lastErr = err
		if b.sendCtx.Err() != nil {
			b.drop(&b.unsent, w.spans)
			return
		}
		b.failing = true
		b.sendErr.Store(&err)
		retry := retryable(err)
		b.logFailure(err, retry, w.spans)
		if !retry {
			b.drop(&b.rejected, w.spans)
			return
		}
		select {
		case <-time.After(wait):
		case <-b.sendCtx.Done():
		}
		wait = min(2*wait, retryMax)
	}
}

// logFailure logs a failed export at most once per errLogInterval.
func (b *batcher) logFailure(err error, retry bool, spans int) {
	now := time.Now()
	if now.Sub(b.lastErrLog) < errLogInterval {
		b.suppressed++
		return
	}
	args := []any{"spans", spans}
	if b.suppressed > 0 {
		args = append(args, "similar_errors_suppressed", b.suppressed)
	}
	if retry {
		b.log.Error(fmt.Sprintf("otlp export to %s failed, retrying while the queue holds: %v%s", b.endpoint, err, exportHint(err)), args...)
	} else {
		b.log.Error(fmt.Sprintf("otlp export to %s refused, batch dropped: %v%s", b.endpoint, err, exportHint(err)), args...)
	}
	b.lastErrLog = now
	b.suppressed = 0
}

// retryable tells a failure that may pass (as OTLP's specification lists them, and a
// request that timed out) from a refusal that will not.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted,
		codes.Aborted, codes.OutOfRange, codes.DataLoss:
		return true
	}
	return false
}

// drop counts n spans dropped for cause.
func (b *batcher) drop(cause *atomic.Uint64, n int) {
	cause.Add(uint64(n))
	b.dropped.Add(uint64(n))
}

// shutdown queues the current batch and sends what is queued until ctx ends; spans
// still unsent then are counted as dropped and reported in the error. first reports
// whether this call shut the batcher down: later calls do nothing.
func (b *batcher) shutdown(ctx context.Context) (first bool, err error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, nil
	}
	b.closed = true
	rest := b.batch
	b.batch = nil
	b.mu.Unlock()

	close(b.stopFlush)
	<-b.flushDone
	droppedBefore := b.dropped.Load()

	// Nothing else sends now (closed is set under b.mu), so this send may wait and the
	// queue may be closed.
	if rest.spans > 0 {
		select {
		case b.queue <- rest:
		case <-ctx.Done():
			b.drop(&b.unsent, rest.spans)
		}
	}
	close(b.queue)

	var cause error
	select {
	case <-b.sendDone:
		cause = b.lastErr // the sender has finished, so reading its field is safe
	case <-ctx.Done():
		b.cancelSend()
		<-b.sendDone
		cause = ctx.Err()
	}
	b.cancelSend()
	if n := b.dropped.Load() - droppedBefore; n > 0 {
		err = fmt.Errorf("otlp flush to %s: %d spans unsent", b.endpoint, n)
		if cause != nil {
			err = fmt.Errorf("%w: %w", err, cause)
		}
	}
	return true, err
}

// stats reports spans the exporter sent and spans dropped.
func (b *batcher) stats() spanner.SinkStats {
	return spanner.SinkStats{Exported: b.exported.Load(), Dropped: b.dropped.Load()}
}

// dropCauses reports the dropped spans by cause, in a fixed order.
func (b *batcher) dropCauses() []DropCount {
	return []DropCount{
		{"queue_full", b.queueFull.Load()},
		{"rejected", b.rejected.Load()},
		{"unsent", b.unsent.Load()},
	}
}

// pending is the spans not yet sent: queued, being sent, and in the current batch.
func (b *batcher) pending() int64 {
	b.mu.Lock()
	n := int64(0)
	if b.batch != nil {
		n = int64(b.batch.spans)
	}
	b.mu.Unlock()
	return n + b.queued.Load()
}
