package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pktspan/pktspan/spanner"
)

const (
	defaultServiceName = "pktspan"
	defaultQueueSize   = 65536
	defaultBatchSize   = 1024
	defaultBatchDelay  = time.Second
	// instrumentationScope names the scope of every exported span.
	instrumentationScope = "pktspan"
	// errLogInterval bounds how often a failing collector or a full queue is logged, so
	// an outage gives a few clear lines instead of one per batch.
	errLogInterval = 10 * time.Second
)

// OTLPOption configures NewOTLP.
type OTLPOption func(*otlpConfig)

type otlpConfig struct {
	endpoint    string
	insecure    bool
	headers     map[string]string
	compression string
	timeout     time.Duration
	queueSize   int
	batchSize   int
	batchDelay  time.Duration
	serviceName string
	logger      *slog.Logger
}

// WithEndpoint sets the collector as host:port (a URL with http:// or https:// is also
// accepted). When empty, the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables
// apply, and localhost:4317 when they are unset.
func WithEndpoint(endpoint string) OTLPOption {
	return func(c *otlpConfig) { c.endpoint = endpoint }
}

// WithInsecure sends over plaintext gRPC instead of TLS.
func WithInsecure(insecure bool) OTLPOption {
	return func(c *otlpConfig) { c.insecure = insecure }
}

// WithHeaders adds gRPC metadata to every request (authentication tokens, tenants).
func WithHeaders(headers map[string]string) OTLPOption {
	return func(c *otlpConfig) { c.headers = headers }
}

// WithCompression chooses "gzip" or "none"; empty keeps OTEL_EXPORTER_OTLP_COMPRESSION.
func WithCompression(compression string) OTLPOption {
	return func(c *otlpConfig) { c.compression = compression }
}

// WithTimeout bounds one export request, retries included; zero keeps
// OTEL_EXPORTER_OTLP_TIMEOUT or the exporter's default of 10s.
func WithTimeout(d time.Duration) OTLPOption {
	return func(c *otlpConfig) { c.timeout = d }
}

// WithQueueSize sets how many spans may wait for the network (default 65536).
func WithQueueSize(spans int) OTLPOption {
	return func(c *otlpConfig) { c.queueSize = spans }
}

// WithBatchSize sets how many spans go in one request (default 1024).
func WithBatchSize(spans int) OTLPOption {
	return func(c *otlpConfig) { c.batchSize = spans }
}

// WithBatchDelay sets the longest time a partial batch waits before it is sent (default 1s).
func WithBatchDelay(d time.Duration) OTLPOption {
	return func(c *otlpConfig) { c.batchDelay = d }
}

// WithServiceName sets the resource's service.name (default pktspan); OTEL_SERVICE_NAME
// wins over it.
func WithServiceName(name string) OTLPOption {
	return func(c *otlpConfig) { c.serviceName = name }
}

// WithLogger sets the logger; its lines carry component=otlp.
func WithLogger(l *slog.Logger) OTLPOption {
	return func(c *otlpConfig) { c.logger = l }
}

// OTLP is a spanner.Sink that sends spans to an OpenTelemetry collector over OTLP/gRPC.
// It writes the protobuf encoding of each batch itself (the SDK's span path, and even
// building tracepb messages, are too slow for packet rates) and hands it to
// otlptracegrpc's client. Export only encodes and queues; one goroutine sends, so a
// slow or absent collector costs dropped spans, never a blocked caller.
type OTLP struct {
	client    otlptrace.Client
	endpoint  string // for log lines only
	log       *slog.Logger
	resource  []byte // the encoded ResourceSpans.resource field
	schemaURL string
	scope     []byte // the encoded ScopeSpans.scope field
	batchSize int

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

// wireBatch is one request being filled: the encoded spans of one ScopeSpans, after
// room left for the fields that go before them.
type wireBatch struct {
	buf   []byte
	spans int
}

// batchHeadroom is room for the ScopeSpans tag and length in front of a batch's spans;
// the resource field goes in front of them too.
const batchHeadroom = 1 + binary.MaxVarintLen64

// freeBatches bounds the sent batches kept for reuse; more come back only after the
// queue was full, and those the garbage collector takes.
const freeBatches = 4

var _ spanner.Sink = (*OTLP)(nil)

// NewOTLP builds the resource, starts the gRPC client and the batching goroutines.
// ctx bounds the start-up only; sending runs until Shutdown. An unreachable collector
// is not an error here: gRPC connects lazily and failed exports are logged and counted.
func NewOTLP(ctx context.Context, opts ...OTLPOption) (*OTLP, error) {
	cfg := otlpConfig{
		queueSize:   defaultQueueSize,
		batchSize:   defaultBatchSize,
		batchDelay:  defaultBatchDelay,
		serviceName: defaultServiceName,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.queueSize <= 0 || cfg.batchSize <= 0 || cfg.batchDelay <= 0 || cfg.timeout < 0 {
		return nil, fmt.Errorf("otlp: queue size %d, batch size %d, batch delay %s and timeout %s must be positive",
			cfg.queueSize, cfg.batchSize, cfg.batchDelay, cfg.timeout)
	}
	if cfg.serviceName == "" {
		cfg.serviceName = defaultServiceName
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "otlp")

	clientOpts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}

	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", cfg.serviceName)),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		// Last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the above.
		resource.WithFromEnv(),
	)
	if err != nil {
		if res == nil {
			return nil, fmt.Errorf("otlp resource: %w", err)
		}
		// A detector that failed (no hostname, a malformed OTEL_RESOURCE_ATTRIBUTES)
		// still leaves the rest of the resource usable.
		log.Warn("otlp resource incomplete", "err", err)
	}

	client := otlptracegrpc.NewClient(clientOpts...)
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start otlp client: %w", err)
	}

	queueBatches := max(1, cfg.queueSize/cfg.batchSize)
	sendCtx, cancelSend := context.WithCancel(context.Background())
	o := &OTLP{
		client:     client,
		endpoint:   displayEndpoint(cfg.endpoint),
		log:        log,
		resource:   encodeResource(res),
		schemaURL:  res.SchemaURL(),
		scope:      encodeScope(instrumentationScope),
		batchSize:  cfg.batchSize,
		queue:      make(chan *wireBatch, queueBatches),
		free:       make(chan *wireBatch, freeBatches),
		stopFlush:  make(chan struct{}),
		flushDone:  make(chan struct{}),
		sendDone:   make(chan struct{}),
		sendCtx:    sendCtx,
		cancelSend: cancelSend,
	}
	o.batch = o.newBatch()
	go o.flushLoop(cfg.batchDelay)
	go o.sendLoop()
	return o, nil
}

// clientOptions maps pktspan's options onto otlptracegrpc's, passing only what was set
// so the standard OTEL_EXPORTER_OTLP_* variables keep working underneath.
func clientOptions(cfg otlpConfig) ([]otlptracegrpc.Option, error) {
	var opts []otlptracegrpc.Option
	switch {
	case cfg.endpoint == "":
	case strings.Contains(cfg.endpoint, "://"):
		opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.endpoint))
	default:
		opts = append(opts, otlptracegrpc.WithEndpoint(cfg.endpoint))
	}
	if cfg.insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if len(cfg.headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(cfg.headers))
	}
	switch cfg.compression {
	case "":
	case "gzip":
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	case "none":
		// otlptracegrpc has no "none" compressor; a later call option naming gRPC's
		// identity encoding overrides a gzip chosen through the environment.
		opts = append(opts, otlptracegrpc.WithDialOption(
			grpc.WithDefaultCallOptions(grpc.UseCompressor("identity"))))
	default:
		return nil, fmt.Errorf("otlp compression %q: want gzip or none", cfg.compression)
	}
	if cfg.timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(cfg.timeout))
	}
	return opts, nil
}

// displayEndpoint names the collector in log lines the way otlptracegrpc resolves it.
func displayEndpoint(endpoint string) string {
	if endpoint != "" {
		return endpoint
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return "localhost:4317"
}

// Export encodes the group at once (the caller reuses its buffers) into the current
// batch. A full batch is queued without waiting; when the queue is full the batch is
// dropped and counted.
func (o *OTLP) Export(group []spanner.Span) {
	if len(group) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		o.dropped.Add(uint64(len(group)))
		return
	}
	for i := range group {
		o.batch.buf = appendSpan(o.batch.buf, &group[i])
		if o.batch.spans++; o.batch.spans >= o.batchSize {
			o.enqueueLocked()
		}
	}
}

// newBatch returns an empty batch, reusing a sent one when there is one.
func (o *OTLP) newBatch() *wireBatch {
	var b *wireBatch
	select {
	case b = <-o.free:
	default:
		b = &wireBatch{}
	}
	b.buf = append(b.buf[:0], make([]byte, len(o.resource)+batchHeadroom)...)
	b.buf = append(b.buf, o.scope...)
	b.spans = 0
	return b
}

// request finishes b as the one ResourceSpans of a request. Its fields travel as the
// message's unknown fields, which protobuf-go marshals verbatim, so otlptracegrpc's
// client sends the bytes written here as they are.
func (o *OTLP) request(b *wireBatch) *tracepb.ResourceSpans {
	start := len(o.resource) + batchHeadroom
	var head [batchHeadroom]byte
	h := appendTag(head[:0], resourceSpansScopeSpans, wireBytes)
	h = binary.AppendUvarint(h, uint64(len(b.buf)-start))
	start -= len(h)
	copy(b.buf[start:], h)
	start -= len(o.resource)
	copy(b.buf[start:], o.resource)
	raw := b.buf[start:]
	if o.schemaURL != "" {
		raw = appendBytesField(raw, resourceSpansSchemaURL, o.schemaURL)
	}
	rs := &tracepb.ResourceSpans{}
	rs.ProtoReflect().SetUnknown(raw)
	return rs
}

// enqueueLocked hands the current batch to the sender, or drops it when the queue is
// full. o.mu must be held.
func (o *OTLP) enqueueLocked() {
	select {
	case o.queue <- o.batch:
		o.batch = o.newBatch()
	default:
		n := uint64(o.batch.spans)
		o.dropped.Add(n)
		o.queueDrops += n
		o.batch.buf = o.batch.buf[:len(o.resource)+batchHeadroom+len(o.scope)]
		o.batch.spans = 0
		if now := time.Now(); now.Sub(o.lastQueueLog) >= errLogInterval {
			o.log.Warn(fmt.Sprintf("otlp queue full, dropping spans: export to %s is slower than the packet rate (raise otlp.queue_size or filter more)", o.endpoint),
				"dropped", o.queueDrops)
			o.lastQueueLog = now
			o.queueDrops = 0
		}
	}
}

// flushLoop sends partial batches so quiet periods still reach the collector.
func (o *OTLP) flushLoop(delay time.Duration) {
	defer close(o.flushDone)
	t := time.NewTicker(delay)
	defer t.Stop()
	for {
		select {
		case <-o.stopFlush:
			return
		case <-t.C:
			o.mu.Lock()
			if !o.closed && o.batch.spans > 0 {
				o.enqueueLocked()
			}
			o.mu.Unlock()
		}
	}
}

// sendLoop uploads queued batches one at a time until the queue is closed.
func (o *OTLP) sendLoop() {
	defer close(o.sendDone)
	for b := range o.queue {
		if o.sendCtx.Err() != nil {
			o.dropped.Add(uint64(b.spans))
			continue
		}
		o.upload(b)
		// The request was marshalled into gRPC's own buffers: b may be filled again.
		select {
		case o.free <- b:
		default:
		}
	}
}

func (o *OTLP) upload(b *wireBatch) {
	err := o.client.UploadTraces(o.sendCtx, []*tracepb.ResourceSpans{o.request(b)})
	if err == nil {
		o.exported.Add(uint64(b.spans))
		if o.failing {
			o.log.Info(fmt.Sprintf("otlp export to %s recovered", o.endpoint))
			o.failing = false
			o.lastErrLog = time.Time{}
		}
		return
	}
	o.dropped.Add(uint64(b.spans))
	o.lastErr = err
	if o.sendCtx.Err() != nil {
		// Shutdown ran out of time and cancelled the upload; it reports the loss.
		return
	}
	o.failing = true
	if now := time.Now(); now.Sub(o.lastErrLog) >= errLogInterval {
		args := []any{"dropped", b.spans}
		if o.suppressed > 0 {
			args = append(args, "similar_errors_suppressed", o.suppressed)
		}
		o.log.Error(fmt.Sprintf("otlp export to %s failed: %v%s", o.endpoint, err, exportHint(err)), args...)
		o.lastErrLog = now
		o.suppressed = 0
	} else {
		o.suppressed++
	}
}

// exportHint suggests the likely fix for the common ways an export fails.
func exportHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "handshake"):
		return " (plaintext collector? set otlp.insecure)"
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return " (is the collector running?)"
	case codes.DeadlineExceeded:
		return " (collector too slow or unreachable; raise otlp.timeout?)"
	case codes.Unauthenticated, codes.PermissionDenied:
		return " (check otlp.headers)"
	case codes.ResourceExhausted:
		return " (collector overloaded or request too large; lower otlp.batch_size?)"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return " (collector too slow or unreachable; raise otlp.timeout?)"
	}
	return ""
}

// Shutdown sends the current batch and what is queued until ctx ends, then stops the
// client. Spans still unsent when ctx ends are counted as dropped.
func (o *OTLP) Shutdown(ctx context.Context) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	rest := o.batch
	o.batch = nil
	o.mu.Unlock()

	close(o.stopFlush)
	<-o.flushDone
	droppedBefore := o.dropped.Load()

	// Nothing else sends now (closed is set under o.mu), so this send may wait and the
	// queue may be closed.
	if rest.spans > 0 {
		select {
		case o.queue <- rest:
		case <-ctx.Done():
			o.dropped.Add(uint64(rest.spans))
		}
	}
	close(o.queue)

	var cause error
	select {
	case <-o.sendDone:
		cause = o.lastErr // the sender has finished, so reading its field is safe
	case <-ctx.Done():
		o.cancelSend()
		<-o.sendDone
		cause = ctx.Err()
	}
	o.cancelSend()
	var err error
	if n := o.dropped.Load() - droppedBefore; n > 0 {
		err = fmt.Errorf("otlp flush to %s: %d spans unsent", o.endpoint, n)
		if cause != nil {
			err = fmt.Errorf("%w: %w", err, cause)
		}
	}
	if stopErr := o.client.Stop(ctx); stopErr != nil && err == nil {
		err = fmt.Errorf("stop otlp client: %w", stopErr)
	}
	return err
}

// Stats reports spans accepted by the collector and spans dropped.
func (o *OTLP) Stats() spanner.SinkStats {
	return spanner.SinkStats{Exported: o.exported.Load(), Dropped: o.dropped.Load()}
}
