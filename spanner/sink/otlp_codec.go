package sink

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// otlptracegrpc's client marshals every request with protobuf-go, which copies a
// batch's encoding (the unknown fields of a ResourceSpans) into a new buffer, a copy
// of every byte sent. Its calls go through interceptWire instead, which finds the
// batch the request was framed from in the call's context and has wireCodec hand that
// buffer to gRPC as it is. Everything else of the client (endpoint, TLS, headers,
// compression, timeout, partial success) stays otlptracegrpc's.

// exportMethod is the one RPC otlptracegrpc calls.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// wireRequestKey carries, in an export's context, the batch whose request it sends.
type wireRequestKey struct{}

// interceptWire sends the request of the batch in ctx with wireCodec; any other call
// goes on unchanged.
func interceptWire(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if w, ok := ctx.Value(wireRequestKey{}).(*wireBatch); ok && method == exportMethod {
		return invoker(ctx, method, w, reply, cc, append(opts, grpc.ForceCodecV2(wireCodec{}))...)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// protoCodec is gRPC's own codec, for responses.
var protoCodec = encoding.GetCodecV2(proto.Name)

// wireCodec marshals a *wireBatch as its framed request, without copying it, and
// anything else as gRPC's proto codec does.
type wireCodec struct{}

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(*wireBatch)
	if !ok {
		return protoCodec.Marshal(v)
	}
	if w.req == nil {
		return nil, fmt.Errorf("otlp batch of %d spans marshalled before it was framed", w.spans)
	}
	if mem.IsBelowBufferPoolingThreshold(cap(w.req)) {
		// gRPC would not hand so small a buffer back; a copy costs nothing here.
		return mem.BufferSlice{mem.SliceBuffer(slices.Clone(w.req))}, nil
	}
	// gRPC frees the buffer once written, which releases the batch for reuse.
	w.hold()
	return mem.BufferSlice{mem.NewBuffer(&w.req, batchBuffers{w})}, nil
}

func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return protoCodec.Unmarshal(data, v)
}

// Name is empty so the request's content-type stays application/grpc, as
// otlptracegrpc's own codec sends it.
func (wireCodec) Name() string { return "" }

// batchBuffers is the mem.BufferPool a batch's request goes back to: gRPC puts it once
// written, or dropped with its stream.
type batchBuffers struct{ w *wireBatch }

// Get is never called: gRPC takes buffers from a pool only to fill them itself.
func (p batchBuffers) Get(length int) *[]byte {
	b := make([]byte, length)
	return &b
}

func (p batchBuffers) Put(*[]byte) { p.w.release() }
