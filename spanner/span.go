package spanner

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
)

// TraceID and SpanID are the W3C/OTLP identifiers.
type (
	TraceID [16]byte
	SpanID  [8]byte
)

// StatusCode mirrors OTLP's span status.
type StatusCode uint8

const (
	StatusUnset StatusCode = iota
	StatusOK
	StatusError
)

// SpanKind mirrors OTLP's span kind; pktspan emits INTERNAL only for now.
type SpanKind uint8

const (
	SpanKindInternal SpanKind = 1
)

// SpanEvent is a timed annotation on a span (the `drop` event).
type SpanEvent struct {
	Name         string
	TimeUnixNano int64
	Attrs        []attribute.KeyValue
}

// Link points at another span: the root of the previous window of the same flow, or
// the packet span of the skb a clone was made from.
type Link struct {
	TraceID TraceID
	SpanID  SpanID
	Attrs   []attribute.KeyValue
	// RandomTraceID says whether TraceID was drawn at random (see Span.RandomTraceID).
	RandomTraceID bool
	// Role is what the linked span stands for: the previous window's root, the packet
	// a retransmission repeats or a clone copies, a request's exchange.
	Role SpanRole
}

// SpanRole says what a span stands for, so that a sink can tell without reading its name.
// The zero role is none: a span the spanner did not make.
type SpanRole uint8

const (
	// RoleFlow is a flow window's root span.
	RoleFlow SpanRole = iota + 1
	// RolePacket is one skb's lifetime, the first span of its group.
	RolePacket
	// RoleStage is a kernel hook the skb passed, a child of its packet span or of an
	// enclosing stage.
	RoleStage
	// RoleExchange is one HTTP request's packets (--correlate http), a child of the
	// application's client span; its packet spans are its children.
	RoleExchange
)

// Span is a finished span, ready for a sink. Times are Unix nanoseconds.
type Span struct {
	TraceID           TraceID
	SpanID            SpanID
	ParentID          SpanID // zero for a root span
	Name              string
	Role              SpanRole
	Kind              SpanKind
	StartUnixNano     int64
	EndUnixNano       int64
	Attrs             []attribute.KeyValue
	Status            StatusCode
	StatusDescription string
	Events            []SpanEvent
	Links             []Link
	// RandomTraceID says whether TraceID was drawn at random, as W3C Trace Context
	// level 2's random flag means. It is false for a trace ID derived from the flow, which
	// another host derives alike: such an ID is predictable, and a sampler must not treat
	// its bits as random.
	RandomTraceID bool
	// SKB and SKBCloneOf are the kernel addresses of a packet span's skb and of the skb
	// it was cloned from (0 elsewhere). Only a sink that stays on the host, the console,
	// shows them: attributes carry opaque IDs unless WithSKBAddressExported.
	SKB, SKBCloneOf uint64
}

// Sink receives finished spans. Export is called from the single goroutine that reads
// the ring buffer, so it must never block on the network: a sink that cannot keep up
// drops and counts. A group is either one root span, or one packet span followed by its
// stage spans in time order. A sink must not keep the slice after Export returns.
type Sink interface {
	Export(group []Span)
	// Shutdown flushes what is queued, within ctx's deadline.
	Shutdown(ctx context.Context) error
	// Stats reports what the sink sent and what it dropped.
	Stats() SinkStats
}

// SinkStats counts spans leaving pktspan.
type SinkStats struct {
	Exported uint64 // accepted by the destination
	Dropped  uint64 // discarded: queue full, or the destination refused them
}
