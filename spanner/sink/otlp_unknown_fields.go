package sink

import tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

// resourceSpansFromWire hands the encoded fields of a ResourceSpans to
// otlptracegrpc's client, which takes tracepb messages only: they become the unknown
// fields of an empty message, and protobuf-go's Marshal writes unknown fields out as
// they are, so the request on the wire holds exactly raw where the message goes.
// TestUnknownFieldsMarshalVerbatim pins that behaviour of protobuf-go.
func resourceSpansFromWire(raw []byte) *tracepb.ResourceSpans {
	rs := &tracepb.ResourceSpans{}
	rs.ProtoReflect().SetUnknown(raw)
	return rs
}
