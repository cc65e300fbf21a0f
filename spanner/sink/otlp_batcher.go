package sink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pktspan/pktspan/spanner"
)

// batchExporter is what the batcher sends batches through: the OTLP exporter, or a
// fake in tests.
type batchExporter interface {
	// headroom is the room export needs in front of a batch's spans to frame them.
	headroom() int
	// export sends b, and must neither keep b nor touch it after returning. It is
	// called from one goroutine at a time, and must return soon once ctx is cancelled.
	export(ctx context.Context, b *wireBatch) error
}

// wireBatch is one batch being filled: the encoded spans, each a ScopeSpans.spans
// field, after the exporter's headroom left free for it.
type wireBatch struct {
	buf   []byte
	spans int
}

// freeBatches bounds the sent batches kept for reuse; more come back only after the
// queue was full, and those the garbage collector takes.
const freeBatches = 4

type batcherConfig struct {
	queueSize  int // spans
	batchSize  int // spans
	batchDelay time.Duration
	endpoint   string // names the destination in log lines
	log        *slog.Logger
}

// batcher encodes spans into batches of a bounded size, queues them and sends them
// through a batchExporter from one goroutine: full batches at once, partial ones
// after a delay. A full queue drops the batch and counts its spans; nothing waits.
type batcher struct {
	exp       batchExporter
	endpoint  string
	log       *slog.Logger
	batchSize int
	head      int

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
	dropped  atomic.Uint64
}

// newBatcher starts the flushing and sending goroutines; shutdown stops them.
// cfg's sizes and delay must be positive.
func newBatcher(exp batchExporter, cfg batcherConfig) *batcher {
	sendCtx, cancelSend := context.WithCancel(context.Background())
	b := &batcher{
		exp:        exp,
		endpoint:   cfg.endpoint,
		log:        cfg.log,
		batchSize:  cfg.batchSize,
		head:       exp.headroom(),
		queue:      make(chan *wireBatch, max(1, cfg.queueSize/cfg.batchSize)),
		free:       make(chan *wireBatch, freeBatches),
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
// batch. A full batch is queued without waiting; when the queue is full the batch is
// dropped and counted.
func (b *batcher) add(group []spanner.Span) {
	if len(group) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.dropped.Add(uint64(len(group)))
		return
	}
	for i := range group {
		b.batch.buf = appendSpan(b.batch.buf, &group[i])
		if b.batch.spans++; b.batch.spans >= b.batchSize {
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
		w = &wireBatch{}
	}
	w.buf = append(w.buf[:0], make([]byte, b.head)...)
	w.spans = 0
	return w
}

// enqueueLocked hands the current batch to the sender, or drops it when the queue is
// full. b.mu must be held.
func (b *batcher) enqueueLocked() {
	select {
	case b.queue <- b.batch:
		b.batch = b.newBatch()
	default:
		n := uint64(b.batch.spans)
		b.dropped.Add(n)
		b.queueDrops += n
		b.batch.buf = b.batch.buf[:b.head]
		b.batch.spans = 0
		if now := time.Now(); now.Sub(b.lastQueueLog) >= errLogInterval {
			b.log.Warn(fmt.Sprintf("otlp queue full, dropping spans: export to %s is slower than the packet rate (raise otlp.queue_size or filter more)", b.endpoint),
				"dropped", b.queueDrops)
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
		if b.sendCtx.Err() != nil {
			b.dropped.Add(uint64(w.spans))
			continue
		}
		b.send(w)
		select {
		case b.free <- w:
		default:
		}
	}
}

// send exports one batch and counts its spans; failures are logged at most once per
// errLogInterval, with how many were left out.
func (b *batcher) send(w *wireBatch) {
	err := b.exp.export(b.sendCtx, w)
	if err == nil {
		b.exported.Add(uint64(w.spans))
		if b.failing {
			b.log.Info(fmt.Sprintf("otlp export to %s recovered", b.endpoint))
			b.failing = false
			b.lastErrLog = time.Time{}
		}
		return
	}
	b.dropped.Add(uint64(w.spans))
	b.lastErr = err
	if b.sendCtx.Err() != nil {
		// Shutdown ran out of time and cancelled the export; it reports the loss.
		return
	}
	b.failing = true
	if now := time.Now(); now.Sub(b.lastErrLog) >= errLogInterval {
		args := []any{"dropped", w.spans}
		if b.suppressed > 0 {
			args = append(args, "similar_errors_suppressed", b.suppressed)
		}
		b.log.Error(fmt.Sprintf("otlp export to %s failed: %v%s", b.endpoint, err, exportHint(err)), args...)
		b.lastErrLog = now
		b.suppressed = 0
	} else {
		b.suppressed++
	}
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
			b.dropped.Add(uint64(rest.spans))
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
