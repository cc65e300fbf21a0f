package sink

import (
	"bytes"
	"io"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/pktspan/pktspan/spanner"
)

func TestOTLPExporterFramesBatchInItsHeadroomOnce(t *testing.T) {
	const schemaURL = "https://opentelemetry.io/schemas/1.26.0"
	e := &otlpExporter{
		resource:  encodeResource(resource.NewSchemaless(attribute.String("service.name", "pktspan-test"))),
		schemaURL: schemaURL,
		scope:     encodeScope(instrumentationScope),
	}
	// Enough spans that the ScopeSpans length takes several bytes.
	group := append(append(append(tcpGroup(), dropGroup()...), rootGroup()...), natCloneGroup()...)
	b := &wireBatch{buf: make([]byte, e.headroom()), spans: len(group)}
	for i := range group {
		b.buf = appendSpan(b.buf, &group[i])
	}
	rs := e.frame(b)
	var req collectortracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b.req, &req); err != nil {
		t.Fatal(err)
	}
	if len(req.ResourceSpans) != 1 {
		t.Fatalf("request holds %d ResourceSpans, want 1", len(req.ResourceSpans))
	}
	checkResourceSpans(t, req.ResourceSpans[0], schemaURL, group)
	want, err := proto.Marshal(req.ResourceSpans[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rs, want) {
		t.Errorf("frame returned %d bytes, not the request's ResourceSpans (%d bytes)", len(rs), len(want))
	}

	// A retry sends the same request, framed once.
	framed := b.req
	if again := e.frame(b); &again[0] != &rs[0] || len(again) != len(rs) || &b.req[0] != &framed[0] || len(b.req) != len(framed) {
		t.Errorf("framing a batch again did not return the first framing")
	}
}

// checkResourceSpans checks that rs holds exactly the resource (service.name=pktspan-test),
// the scope and the spans encoded.
func checkResourceSpans(t *testing.T, rs *tracepb.ResourceSpans, schemaURL string, want []spanner.Span) {
	t.Helper()
	if rs.SchemaUrl != schemaURL {
		t.Errorf("schema URL %q, want %q", rs.SchemaUrl, schemaURL)
	}
	if res := resourceAttrs(rs.Resource.GetAttributes()); len(res) != 1 || res["service.name"] != "pktspan-test" {
		t.Errorf("resource %v, want service.name=pktspan-test alone", res)
	}
	if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.GetName() != instrumentationScope {
		t.Fatalf("want one ScopeSpans named %q, got %v", instrumentationScope, rs.ScopeSpans)
	}
	got := rs.ScopeSpans[0].Spans
	if len(got) != len(want) {
		t.Fatalf("%d spans, want %d", len(got), len(want))
	}
	for i := range want {
		checkSpan(t, got[i], &want[i])
	}
}

// gRPC's "gzip" and "snappy" are the package's compressors: their requests decompress
// to what was written, with a writer from the pool too, and their first bytes say the
// format: for gzip the header's XFL byte (RFC 1952) the fastest level, for snappy the
// snappy framing format's stream identifier (s2's own format has another), which is
// what the Collector's receivers read.
func TestGRPCCompressorsAreThePackagesAndRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		head func(b []byte) bool
	}{
		{"gzip", func(b []byte) bool { const xfl, fastest = 8, 4; return len(b) > xfl && b[xfl] == fastest }},
		{"snappy", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\xff\x06\x00\x00sNaPpY")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := encoding.GetCompressor(tc.name).(*pooledCompressor)
			if !ok {
				t.Fatalf("gRPC's %s compressor is %T, not the package's", tc.name, encoding.GetCompressor(tc.name))
			}
			in := bytes.Repeat([]byte("span"), 4096)
			for round := range 2 { // the second takes the first's writer from the pool
				var out bytes.Buffer
				w, err := c.Compress(&out)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(in); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if b := out.Bytes(); !tc.head(b) {
					t.Fatalf("round %d: stream begins % x", round, b[:min(len(b), 12)])
				}
				r, err := c.Decompress(&out)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("round %d: %d bytes came back, not the %d written", round, len(got), len(in))
				}
			}
		})
	}
}
