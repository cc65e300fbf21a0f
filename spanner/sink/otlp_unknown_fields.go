package sink

import tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

// resourceSpansFromWire hands the encoded fields of a ResourceSpans to
// otlptracegrpc's client, which takes tracepb messages only: they become the unknown
// fields of an empty message, which protobuf-go sizes and marshals as they are. The
// client sizes the request with it (its limit on a request's size); interceptWire
// then sends the batch's own bytes in its place, the same bytes, without the copy.
// TestUnknownFieldsMarshalVerbatim pins that behaviour of protobuf-go.
func resourceSpansFromWire(raw []byte) *tracepb.ResourceSpans {
	rs := &tracepb.ResourceSpans{}
	rs.ProtoReflect().SetUnknown(raw)
	return rs
}
