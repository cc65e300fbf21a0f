package sink

import (
	"bytes"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// unknownFieldsBroken opens every failure below: it names the cause for whoever
// upgrades protobuf-go.
const unknownFieldsBroken = "protobuf-go no longer marshals unknown fields verbatim, and the OTLP sink hands its pre-encoded spans to otlptracegrpc as unknown fields of a tracepb.ResourceSpans (otlp_unknown_fields.go): find it another way"

func TestUnknownFieldsMarshalVerbatim(t *testing.T) {
	group := append(append(append(tcpGroup(), dropGroup()...), rootGroup()...), natCloneGroup()...)
	const schemaURL = "https://opentelemetry.io/schemas/1.26.0"
	raw := encodeResource(resource.NewSchemaless(attribute.String("service.name", "pktspan-test")))
	ss, start := openMessage(nil, resourceSpansScopeSpans, 1)
	ss = append(ss, encodeScope(instrumentationScope)...)
	for i := range group {
		ss = appendSpan(ss, &group[i])
	}
	raw = append(raw, closeMessage(ss, start, 1)...)
	raw = appendBytesField(raw, resourceSpansSchemaURL, schemaURL)

	rs := resourceSpansFromWire(bytes.Clone(raw))
	got, err := proto.Marshal(rs)
	if err != nil {
		t.Fatalf("%s: Marshal: %v", unknownFieldsBroken, err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("%s: Marshal wrote %d bytes, want the %d encoded, first difference at byte %d",
			unknownFieldsBroken, len(got), len(raw), firstDifference(got, raw))
	}

	// otlptracegrpc marshals the request around the message, twice here as a request
	// may hold several.
	req, err := proto.Marshal(&collectortracepb.ExportTraceServiceRequest{
		ResourceSpans: []*tracepb.ResourceSpans{rs, resourceSpansFromWire(bytes.Clone(raw))},
	})
	if err != nil {
		t.Fatalf("%s: Marshal request: %v", unknownFieldsBroken, err)
	}
	var decoded collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(req, &decoded); err != nil {
		t.Fatalf("%s: Unmarshal request: %v", unknownFieldsBroken, err)
	}
	if len(decoded.ResourceSpans) != 2 {
		t.Fatalf("%s: request decodes to %d ResourceSpans, want 2", unknownFieldsBroken, len(decoded.ResourceSpans))
	}
	// What the encoding alone decodes to, no unknown fields involved.
	var direct tracepb.ResourceSpans
	if err := proto.Unmarshal(raw, &direct); err != nil {
		t.Fatalf("the encoding does not decode: %v", err)
	}
	for _, rs := range decoded.ResourceSpans {
		if !proto.Equal(rs, &direct) {
			t.Fatalf("%s: the request's ResourceSpans decodes otherwise than the encoding sent", unknownFieldsBroken)
		}
		if u := rs.ProtoReflect().GetUnknown(); len(u) != 0 {
			t.Fatalf("%s: %d bytes stay unknown after decoding", unknownFieldsBroken, len(u))
		}
		checkResourceSpans(t, rs, schemaURL, group)
	}
}

func firstDifference(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
