package sink

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/pktspan/pktspan/spanner"
)

const (
	defaultServiceName = "pktspan"
	defaultQueueSize   = 65536
	// defaultBatchSize spans a request: with every packet exported, requests of 1024
	// cost some 12% more CPU per event (BENCHMARKS.md).
	defaultBatchSize = 4096
	// batchBytes caps a request's encoded spans however many batch_size allows: under
	// the 4 MiB a gRPC receiver takes by default (the Collector's, Jaeger's, Tempo's),
	// with room for the resource around them, when spans carry stacks or long names.
	batchBytes        = 3 << 20
	defaultBatchDelay = time.Second
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
	tls         *tls.Config
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

// WithTLS sets the client's TLS configuration (CAs, a client certificate); nil keeps
// gRPC's default TLS, or what the standard OTEL_EXPORTER_OTLP_CERTIFICATE variables say.
func WithTLS(c *tls.Config) OTLPOption {
	return func(o *otlpConfig) { o.tls = c }
}

// WithHeaders adds gRPC metadata to every request (authentication tokens, tenants).
func WithHeaders(headers map[string]string) OTLPOption {
	return func(c *otlpConfig) { c.headers = headers }
}

// WithCompression chooses "gzip", "snappy" or "none"; empty keeps
// OTEL_EXPORTER_OTLP_COMPRESSION.
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

// WithBatchSize sets how many spans go in one request (default 4096; a request's
// encoded spans also stop at 3 MiB).
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
// building tracepb messages, are too slow for packet rates). As in the OpenTelemetry
// SDK, a batcher queues and flushes (otlp_batcher.go) and an exporter sends
// (otlp_exporter.go): Export only encodes and queues and one goroutine sends, so a slow
// or absent collector costs dropped spans, never a blocked caller.
type OTLP struct {
	batcher  *batcher
	exporter *otlpExporter
}

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

	exp, err := newOTLPExporter(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	b := newBatcher(exp, batcherConfig{
		queueSize:  cfg.queueSize,
		batchSize:  cfg.batchSize,
		batchBytes: batchBytes,
		batchDelay: cfg.batchDelay,
		endpoint:   exp.endpoint,
		log:        log,
	})
	return &OTLP{batcher: b, exporter: exp}, nil
}

// Export encodes the group at once (the caller reuses its buffers) into the current
// batch. A full batch is queued without waiting; when the queue is full the batch is
// dropped and counted.
func (o *OTLP) Export(group []spanner.Span) {
	o.batcher.add(group)
}

// Shutdown sends the current batch and what is queued until ctx ends, then stops the
// client. Spans still unsent when ctx ends are counted as dropped.
func (o *OTLP) Shutdown(ctx context.Context) error {
	first, err := o.batcher.shutdown(ctx)
	if !first {
		return nil
	}
	// The flush's error counts lost spans, so it is the one reported when both fail.
	if stopErr := o.exporter.shutdown(ctx); stopErr != nil && err == nil {
		err = stopErr
	}
	return err
}

// DropCauses reports the spans dropped by cause: queue_full (the collector was down or
// slow for longer than the queue holds), rejected (refused for good), unsent (still
// queued when Shutdown's time ran out).
func (o *OTLP) DropCauses() []DropCount { return o.batcher.dropCauses() }

// Pending reports the spans not yet sent: queued, being sent, or batching.
func (o *OTLP) Pending() int64 { return o.batcher.pending() }

// Stats reports spans accepted by the collector and spans dropped.
func (o *OTLP) Stats() spanner.SinkStats {
	return o.batcher.stats()
}
