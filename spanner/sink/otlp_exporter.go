package sink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// otlpExporter is the OTLP sink's transport: it frames a batch of encoded spans as one
// ResourceSpans and uploads it with otlptracegrpc's client.
type otlpExporter struct {
	client    otlptrace.Client
	endpoint  string // for log lines only
	resource  []byte // the encoded ResourceSpans.resource field
	schemaURL string
	scope     []byte // the encoded ScopeSpans.scope field
}

var _ batchExporter = (*otlpExporter)(nil)

// requestHead and scopeSpansHead are room for the tag and length of the request's
// ResourceSpans and of its ScopeSpans.
const (
	requestHead    = 1 + binary.MaxVarintLen64
	scopeSpansHead = 1 + binary.MaxVarintLen64
)

// newOTLPExporter builds the resource and starts the gRPC client; ctx bounds both.
func newOTLPExporter(ctx context.Context, cfg otlpConfig, log *slog.Logger) (*otlpExporter, error) {
	clientOpts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}

	res, err := resource.New(ctx,
		resource.WithAttributes(attrkey.ServiceName.String(cfg.serviceName)),
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
	return &otlpExporter{
		client:    client,
		endpoint:  displayEndpoint(cfg.endpoint),
		resource:  encodeResource(res),
		schemaURL: res.SchemaURL(),
		scope:     encodeScope(instrumentationScope),
	}, nil
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
	} else if cfg.tls != nil {
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(cfg.tls)))
	}
	// The batcher retries a failed batch itself, with a short backoff, while its queue
	// keeps taking spans: the SDK's own retry would hold the only sender for the whole
	// timeout. gRPC reconnects within a second of the collector's return (its default
	// backoff grows to two minutes). Requests go through interceptWire. gRPC writes to the
	// socket whenever its write buffer fills, 32 KiB by default: a request of 1024 spans,
	// some 200 KiB uncompressed, took about six writes, each a trip through the kernel's
	// TCP path (on loopback, through the receiver's side too, on this CPU). With
	// writeBuffer it takes one.
	// Every dial option goes in one WithDialOption at the end: each call replaces the
	// options of the one before.
	opts = append(opts, otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	dial := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	}), grpc.WithChainUnaryInterceptor(interceptWire), grpc.WithWriteBufferSize(writeBuffer)}
	if len(cfg.headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(cfg.headers))
	}
	switch cfg.compression {
	case "":
	case "gzip":
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	case "snappy", "none":
		// otlptracegrpc knows neither (snappy is no OTLP exporter setting): a later call
		// option naming gRPC's encoding, identity for none, overrides a gzip chosen
		// through the environment.
		enc := cfg.compression
		if enc == "none" {
			enc = "identity"
		}
		dial = append(dial, grpc.WithDefaultCallOptions(grpc.UseCompressor(enc)))
	default:
		return nil, fmt.Errorf("otlp compression %q: want gzip, snappy or none", cfg.compression)
	}
	if cfg.timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(cfg.timeout))
	}
	return append(opts, otlptracegrpc.WithDialOption(dial...)), nil
}

// writeBuffer is the connection's write buffer: it holds most uncompressed requests
// whole, and is the only one (gRPC keeps one per connection).
const writeBuffer = 512 << 10

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

// headroom is the room frame needs in front of a batch's spans: the request's tag and
// length, the resource, the ScopeSpans tag and length, and the scope.
func (e *otlpExporter) headroom() int {
	return requestHead + len(e.resource) + scopeSpansHead + len(e.scope)
}

// export uploads b as one request. gRPC writes it straight from b's buffer, holding
// the batch until it has (see otlp_codec.go).
func (e *otlpExporter) export(ctx context.Context, b *wireBatch) error {
	rs := e.frame(b)
	ctx = context.WithValue(ctx, wireRequestKey{}, b)
	return e.client.UploadTraces(ctx, []*tracepb.ResourceSpans{resourceSpansFromWire(rs)})
}

// frame writes the request's head, the resource and the head of the ScopeSpans into
// the room left in front of b's spans, and the schema URL after them, so a batch is
// framed without copying its spans; then b.req is the whole ExportTraceServiceRequest.
// It returns the ResourceSpans inside, which otlptracegrpc's client is given to size
// the request. A batch is framed once: a retry sends the same bytes.
func (e *otlpExporter) frame(b *wireBatch) []byte {
	if b.req != nil {
		return b.req[len(b.req)-b.rsLen:]
	}
	start := e.headroom() - len(e.scope)
	copy(b.buf[start:], e.scope)
	var head [requestHead]byte
	h := appendTag(head[:0], resourceSpansScopeSpans, wireBytes)
	h = binary.AppendUvarint(h, uint64(len(b.buf)-start))
	start -= len(h)
	copy(b.buf[start:], h)
	start -= len(e.resource)
	copy(b.buf[start:], e.resource)
	rsLen := len(b.buf) - start
	if e.schemaURL != "" {
		rsLen += 1 + uvarintLen(uint64(len(e.schemaURL))) + len(e.schemaURL)
	}
	h = appendTag(head[:0], requestResourceSpans, wireBytes)
	h = binary.AppendUvarint(h, uint64(rsLen))
	start -= len(h)
	copy(b.buf[start:], h)
	req := b.buf[start:]
	if e.schemaURL != "" {
		req = appendBytesField(req, resourceSpansSchemaURL, e.schemaURL)
	}
	b.req, b.rsLen = req, rsLen
	return req[len(req)-rsLen:]
}

// shutdown stops the client; the batcher has sent or dropped every batch by then.
func (e *otlpExporter) shutdown(ctx context.Context) error {
	if err := e.client.Stop(ctx); err != nil {
		return fmt.Errorf("stop otlp client: %w", err)
	}
	return nil
}

// exportHint suggests the likely fix for the common ways an export fails.
func exportHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the collector speaks plain text: set otlp.insecure only if it is meant to)"
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate"):
		return " (the collector's certificate is not trusted: give its CA with otlp.ca_file, check the name it was issued for, or a client certificate it asks for with otlp.client_cert)"
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "handshake"):
		return " (TLS handshake failed: check otlp.ca_file, otlp.client_cert and the collector's TLS settings)"
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
