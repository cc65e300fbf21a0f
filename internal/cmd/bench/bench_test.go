package main

import (
	"sync"
	"testing"
	"time"

	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// benchFixtures are generated once for every benchmark of the package.
var benchFixtures = sync.OnceValue(func() *Fixtures { return GenerateFixtures(200000, 1) })

// BenchmarkFixturesDecode is case 2's decode figure: one op is one kernel record.
func BenchmarkFixturesDecode(b *testing.B) { benchDecode(benchFixtures())(b) }

// BenchmarkFixturesSpanner is case 2's decode + spanner figure: one op is one record.
func BenchmarkFixturesSpanner(b *testing.B) { benchSpanner(benchFixtures())(b) }

func TestGeneratedFixturesAllDecode(t *testing.T) {
	if err := checkDecodes(GenerateFixtures(5000, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestCountSpansCountsAcrossResourcesAndScopesAndRejectsTruncation(t *testing.T) {
	span := &tracepb.Span{Name: "packet", TraceId: make([]byte, 16), SpanId: make([]byte, 8),
		Attributes: []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}}}}
	req := &collectortracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span, span}}, {Spans: []*tracepb.Span{span}}}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span}}}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := countSpans(b); n != 4 || err != nil {
		t.Errorf("a request of 4 spans counted %d spans, %v", n, err)
	}
	if n, err := countSpans([]byte{0x0a, 0x02, 0x12}); err == nil {
		t.Errorf("a truncated request counted %d spans without error", n)
	}
}

func TestParseStatCPUCountsAfterTheCommandName(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250, stime 75 ticks.
	line := "4242 (pkt span)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 1234 0 0\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (pktspan) S 1 2")); err == nil {
		t.Error("a short line parsed")
	}
}
