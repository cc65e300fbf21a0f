package sink

import (
	"bytes"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// framedBatch is a batch of the test groups framed as the exporter sends it, from a
// batcher's free list of one.
func framedBatch(t *testing.T) (*wireBatch, chan *wireBatch) {
	t.Helper()
	e := &otlpExporter{resource: encodeResource(resource.NewSchemaless(attribute.String("service.name", "pktspan-test"))), scope: encodeScope(instrumentationScope)}
	free := make(chan *wireBatch, 1)
	b := &wireBatch{buf: make([]byte, e.headroom()), free: free}
	b.refs.Store(1)
	group := append(append(tcpGroup(), dropGroup()...), rootGroup()...)
	for i := range group {
		b.buf = appendSpan(b.buf, &group[i])
		b.spans++
	}
	e.frame(b)
	return b, free
}

func TestWireCodecHandsGRPCTheFramedRequestAndReleasesTheBatchOnceFreed(t *testing.T) {
	b, free := framedBatch(t)
	data, err := wireCodec{}.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := data.Materialize(); !bytes.Equal(got, b.req) {
		t.Fatalf("codec wrote %d bytes, not the %d framed", len(got), len(b.req))
	}
	if &data[0].ReadOnlyData()[0] != &b.req[0] {
		t.Error("codec copied the request")
	}
	var req collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data.Materialize(), &req); err != nil || len(req.ResourceSpans) != 1 {
		t.Fatalf("request does not decode to one ResourceSpans: %v", err)
	}

	// The batcher lets go first: gRPC still holds the request, so the batch is not reused.
	b.release()
	if len(free) != 0 {
		t.Fatal("batch reused while gRPC holds its request")
	}
	data.Free()
	select {
	case got := <-free:
		if got != b {
			t.Error("another batch came back")
		}
	default:
		t.Error("batch not reused once gRPC freed its request")
	}
}

func TestWireCodecMarshalsOtherMessagesAsProtobuf(t *testing.T) {
	msg := &collectortracepb.ExportTraceServiceResponse{PartialSuccess: &collectortracepb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "x"}}
	data, err := wireCodec{}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got collectortracepb.ExportTraceServiceResponse
	if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(data.Materialize())}, &got); err != nil || !proto.Equal(&got, msg) {
		t.Errorf("round trip = %v, %v; want %v", &got, err, msg)
	}
}
