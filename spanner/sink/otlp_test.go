package sink

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/pktspan/pktspan/spanner"
)

// collector is an in-process OTLP trace service recording what it receives.
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer

	// block, when set, holds every Export until it is closed.
	block chan struct{}

	mu          sync.Mutex
	requests    []*collectortracepb.ExportTraceServiceRequest
	metadata    []metadata.MD
	compression []string
	calls       chan struct{}
}

func (c *collector) Export(ctx context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	c.requests = append(c.requests, req)
	c.metadata = append(c.metadata, md)
	c.mu.Unlock()
	select {
	case c.calls <- struct{}{}:
	default:
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

// TagRPC, HandleRPC, TagConn and HandleConn make the collector a stats.Handler, the
// one place the server sees which compression a request used.
func (c *collector) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *collector) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		c.mu.Lock()
		c.compression = append(c.compression, h.Compression)
		c.mu.Unlock()
	}
}
func (c *collector) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *collector) HandleConn(context.Context, stats.ConnStats)                       {}

func (c *collector) spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, r := range c.requests {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

// startCollector serves c on a loopback port and returns its host:port.
func startCollector(t testing.TB, c *collector) string {
	t.Helper()
	c.calls = make(chan struct{}, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(c))
	collectortracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// clearOTELEnv keeps the developer's OTEL_* variables out of the tests.
func clearOTELEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "")
		}
	}
}

func shutdown(t *testing.T, s spanner.Sink, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestOTLPExportsEveryField(t *testing.T) {
	clearOTELEnv(t)
	col := &collector{}
	addr := startCollector(t, col)
	o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithInsecure(true),
		WithServiceName("pktspan-test"), WithBatchDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var want []spanner.Span
	for _, g := range [][]spanner.Span{tcpGroup(), dropGroup(), rootGroup(), natCloneGroup()} {
		o.Export(g)
		want = append(want, g...)
		// The caller reuses its buffers: the sink must have copied what it needs.
		for i := range g {
			g[i] = spanner.Span{Name: "clobbered"}
		}
	}
	shutdown(t, o, 5*time.Second)

	if st := o.Stats(); st.Exported != uint64(len(want)) || st.Dropped != 0 {
		t.Errorf("Stats = %+v, want %d exported", st, len(want))
	}
	col.mu.Lock()
	if len(col.requests) != 1 {
		t.Fatalf("got %d requests, want one batch", len(col.requests))
	}
	rs := col.requests[0].ResourceSpans
	col.mu.Unlock()
	if len(rs) != 1 || len(rs[0].ScopeSpans) != 1 {
		t.Fatalf("want one ResourceSpans with one ScopeSpans, got %v", rs)
	}
	if name := rs[0].ScopeSpans[0].Scope.GetName(); name != "pktspan" {
		t.Errorf("scope name = %q", name)
	}
	res := resourceAttrs(rs[0].Resource.GetAttributes())
	if res["service.name"] != "pktspan-test" {
		t.Errorf("service.name = %v", res["service.name"])
	}
	if host, _ := os.Hostname(); res["host.name"] != host {
		t.Errorf("host.name = %v, want %q", res["host.name"], host)
	}
	if res["telemetry.sdk.language"] != "go" {
		t.Errorf("telemetry.sdk.language = %v", res["telemetry.sdk.language"])
	}

	got := rs[0].ScopeSpans[0].Spans
	if len(got) != len(want) {
		t.Fatalf("got %d spans, want %d", len(got), len(want))
	}
	for i := range want {
		checkSpan(t, got[i], &want[i])
	}
}

// checkSpan compares every field of an OTLP span with the span it came from.
func checkSpan(t *testing.T, got *tracepb.Span, want *spanner.Span) {
	t.Helper()
	name := want.Name
	if !bytes.Equal(got.TraceId, want.TraceID[:]) || !bytes.Equal(got.SpanId, want.SpanID[:]) {
		t.Errorf("%s: ids %x/%x, want %x/%x", name, got.TraceId, got.SpanId, want.TraceID, want.SpanID)
	}
	wantParent := want.ParentID[:]
	if want.ParentID == (spanner.SpanID{}) {
		wantParent = nil
	}
	if !bytes.Equal(got.ParentSpanId, wantParent) {
		t.Errorf("%s: parent %x, want %x", name, got.ParentSpanId, wantParent)
	}
	if got.Name != want.Name || got.Kind != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("%s: name %q kind %v", name, got.Name, got.Kind)
	}
	// Instants leave 1 ns long, so Jaeger does not flag them as negative durations.
	wantEnd := uint64(max(want.EndUnixNano, want.StartUnixNano+1))
	if got.StartTimeUnixNano != uint64(want.StartUnixNano) || got.EndTimeUnixNano != wantEnd {
		t.Errorf("%s: times %d..%d, want %d..%d", name, got.StartTimeUnixNano, got.EndTimeUnixNano, want.StartUnixNano, wantEnd)
	}
	if want := wantFlags(want.RandomTraceID); got.Flags != want {
		t.Errorf("%s: flags %#x, want %#x: sampled, has-is-remote, not remote, random bit iff the trace ID is random", name, got.Flags, want)
	}
	checkAttrs(t, name, got.Attributes, want.Attrs)
	wantCode := map[spanner.StatusCode]tracepb.Status_StatusCode{
		spanner.StatusUnset: tracepb.Status_STATUS_CODE_UNSET,
		spanner.StatusOK:    tracepb.Status_STATUS_CODE_OK,
		spanner.StatusError: tracepb.Status_STATUS_CODE_ERROR,
	}[want.Status]
	if got.Status.GetCode() != wantCode || got.Status.GetMessage() != want.StatusDescription {
		t.Errorf("%s: status %v, want %v %q", name, got.Status, wantCode, want.StatusDescription)
	}
	if len(got.Events) != len(want.Events) {
		t.Fatalf("%s: %d events, want %d", name, len(got.Events), len(want.Events))
	}
	for i, e := range want.Events {
		g := got.Events[i]
		if g.Name != e.Name || g.TimeUnixNano != uint64(e.TimeUnixNano) {
			t.Errorf("%s: event %q@%d, want %q@%d", name, g.Name, g.TimeUnixNano, e.Name, e.TimeUnixNano)
		}
		checkAttrs(t, name+" event", g.Attributes, e.Attrs)
	}
	if len(got.Links) != len(want.Links) {
		t.Fatalf("%s: %d links, want %d", name, len(got.Links), len(want.Links))
	}
	for i, l := range want.Links {
		g := got.Links[i]
		if !bytes.Equal(g.TraceId, l.TraceID[:]) || !bytes.Equal(g.SpanId, l.SpanID[:]) || g.Flags != wantFlags(l.RandomTraceID) {
			t.Errorf("%s: link %x/%x flags %#x, want %x/%x", name, g.TraceId, g.SpanId, g.Flags, l.TraceID, l.SpanID)
		}
		checkAttrs(t, name+" link", g.Attributes, l.Attrs)
	}
}

// wantFlags spells out OTLP's span flags: W3C sampled (0x01), W3C random (0x02) for a
// random trace ID only, and has-is-remote (0x100) without is-remote (0x200).
func wantFlags(random bool) uint32 {
	if random {
		return 0x103
	}
	return 0x101
}

func checkAttrs(t *testing.T, where string, got []*commonpb.KeyValue, want []attribute.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d attributes, want %d", where, len(got), len(want))
		return
	}
	for i, kv := range want {
		g := got[i]
		gv := fromAnyValue(g.Value)
		if g.Key != string(kv.Key) || gv.Type() != kv.Value.Type() || !reflect.DeepEqual(gv.AsInterface(), kv.Value.AsInterface()) {
			t.Errorf("%s: attribute %s=%v (%v), want %s=%v (%v)", where, g.Key, gv.String(), gv.Type(), kv.Key, kv.Value.String(), kv.Value.Type())
		}
	}
}

// fromAnyValue maps an OTLP value back to the attribute type it should have come from.
func fromAnyValue(v *commonpb.AnyValue) attribute.Value {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return attribute.StringValue(x.StringValue)
	case *commonpb.AnyValue_IntValue:
		return attribute.Int64Value(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return attribute.BoolValue(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return attribute.Float64Value(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		vals := x.ArrayValue.Values
		if len(vals) == 0 {
			return attribute.Value{}
		}
		switch vals[0].GetValue().(type) {
		case *commonpb.AnyValue_BoolValue:
			out := make([]bool, len(vals))
			for i, e := range vals {
				out[i] = e.GetBoolValue()
			}
			return attribute.BoolSliceValue(out)
		case *commonpb.AnyValue_IntValue:
			out := make([]int64, len(vals))
			for i, e := range vals {
				out[i] = e.GetIntValue()
			}
			return attribute.Int64SliceValue(out)
		case *commonpb.AnyValue_DoubleValue:
			out := make([]float64, len(vals))
			for i, e := range vals {
				out[i] = e.GetDoubleValue()
			}
			return attribute.Float64SliceValue(out)
		case *commonpb.AnyValue_StringValue:
			out := make([]string, len(vals))
			for i, e := range vals {
				out[i] = e.GetStringValue()
			}
			return attribute.StringSliceValue(out)
		}
	}
	return attribute.Value{}
}

func resourceAttrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any)
	for _, kv := range kvs {
		m[kv.Key] = fromAnyValue(kv.Value).AsInterface()
	}
	return m
}

func TestOTLPEncodesBytesSliceMapAndEmptyValues(t *testing.T) {
	s := spanner.Span{Attrs: []attribute.KeyValue{
		attribute.ByteSlice("b", []byte{1, 2}),
		attribute.Slice("s", attribute.IntValue(1), attribute.StringValue("x")),
		attribute.Map("m", attribute.Bool("k", true)),
		{Key: "e"},
	}}
	got := encodeAndDecode(t, []spanner.Span{s})[0].Attributes
	if b := got[0].Value.GetBytesValue(); !bytes.Equal(b, []byte{1, 2}) {
		t.Errorf("bytes = %v", b)
	}
	if arr := got[1].Value.GetArrayValue().GetValues(); len(arr) != 2 || arr[0].GetIntValue() != 1 || arr[1].GetStringValue() != "x" {
		t.Errorf("slice = %v", arr)
	}
	if kv := got[2].Value.GetKvlistValue().GetValues(); len(kv) != 1 || kv[0].Key != "k" || !kv[0].Value.GetBoolValue() {
		t.Errorf("map = %v", kv)
	}
	if got[3].Value.GetValue() != nil {
		t.Errorf("empty = %v", got[3].Value)
	}
}

// encodeAndDecode writes a group the way Export does and reads it back with protobuf-go.
func encodeAndDecode(t *testing.T, group []spanner.Span) []*tracepb.Span {
	t.Helper()
	_, ss := encodeGroup(t, group)
	return ss.Spans
}

// encodeGroup writes a group the way Export does, as a ScopeSpans's spans, and decodes it.
func encodeGroup(t *testing.T, group []spanner.Span) ([]byte, *tracepb.ScopeSpans) {
	t.Helper()
	var b []byte
	for i := range group {
		b = appendSpan(b, &group[i])
	}
	var ss tracepb.ScopeSpans
	if err := proto.Unmarshal(b, &ss); err != nil {
		t.Fatal(err)
	}
	return b, &ss
}

func TestOTLPEncodingDecodesWithProtobufGoToEveryField(t *testing.T) {
	// Every field and attribute type, long enough that lengths take more than a byte.
	group := append(append(append(tcpGroup(), dropGroup()...), rootGroup()...), natCloneGroup()...)
	group[0].Attrs = append(group[0].Attrs, attribute.String("pktspan.test.long", strings.Repeat("x", 300)))
	for i, got := range encodeAndDecode(t, group) {
		checkSpan(t, got, &group[i])
	}
}

func TestOTLPEncodingIsProtobufGosByteForByte(t *testing.T) {
	// Spans whose lengths take one, two and three bytes, so that each is written in the
	// room reserved for it, moved back and moved on; attributes and events past 127 bytes.
	long := tcpGroup()[0]
	long.Attrs = append(long.Attrs, attribute.String("pktspan.test.long", strings.Repeat("x", 300)))
	huge := tcpGroup()[0]
	huge.Attrs = append(huge.Attrs, attribute.String("pktspan.test.huge", strings.Repeat("y", 20000)))
	// Every scalar type, zero values, a negative int, a missing key.
	scalars := spanner.Span{Name: "scalars", Attrs: []attribute.KeyValue{
		attribute.Float64("f", 1.5), attribute.Float64("f0", 0), attribute.Bool("t", true), attribute.Bool("f", false),
		attribute.Int64("neg", -1), attribute.Int64("zero", 0), attribute.String("empty", ""), attribute.String("", "no key"),
	}}
	group := append(append(append(append(tcpGroup(), dropGroup()...), rootGroup()...), natCloneGroup()...),
		spanner.Span{Name: "tiny"}, scalars, long, huge)
	b, ss := encodeGroup(t, group)
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("encoding differs from protobuf-go's Marshal of the same spans:\n got %x\nwant %x", b, want)
	}
}

func TestOTLPHonoursStandardOTELEnvironment(t *testing.T) {
	clearOTELEnv(t)
	col := &collector{}
	addr := startCollector(t, col)
	// No endpoint option: otlptracegrpc resolves it from the environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=yes")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=lab,service.namespace=net")
	o, err := NewOTLP(context.Background(), WithServiceName("from-option"), WithBatchDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	o.Export(rootGroup())
	shutdown(t, o, 5*time.Second)

	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.requests) != 1 {
		t.Fatalf("got %d requests, want 1", len(col.requests))
	}
	res := resourceAttrs(col.requests[0].ResourceSpans[0].Resource.GetAttributes())
	if res["service.name"] != "from-env" || res["deployment.environment.name"] != "lab" || res["service.namespace"] != "net" {
		t.Errorf("resource = %v", res)
	}
	if got := col.metadata[0].Get("x-from-env"); len(got) != 1 || got[0] != "yes" {
		t.Errorf("x-from-env header = %v", got)
	}
}

func TestOTLPSendsHeadersAndChosenCompression(t *testing.T) {
	for _, tc := range []struct {
		option, env, want string
	}{
		{option: "gzip", want: "gzip"},
		{option: "snappy", want: "snappy"},
		// snappy is no OTLP exporter setting: the option beats a gzip in the environment.
		{option: "snappy", env: "gzip", want: "snappy"},
		{env: "gzip", want: "gzip"},
		// An explicit "none" beats the environment.
		{option: "none", env: "gzip", want: "identity"},
	} {
		t.Run(tc.option+"/"+tc.env, func(t *testing.T) {
			clearOTELEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", tc.env)
			col := &collector{}
			addr := startCollector(t, col)
			o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithInsecure(true),
				WithHeaders(map[string]string{"authorization": "Bearer s3cret", "x-tenant": "lab"}),
				WithCompression(tc.option), WithBatchDelay(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			o.Export(tcpGroup())
			shutdown(t, o, 5*time.Second)

			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.requests) != 1 || len(col.compression) == 0 {
				t.Fatalf("got %d requests, %d headers", len(col.requests), len(col.compression))
			}
			md := col.metadata[0]
			if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
				t.Errorf("authorization = %v", got)
			}
			if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "lab" {
				t.Errorf("x-tenant = %v", got)
			}
			// The request's own codec keeps the content-type every OTLP client sends.
			if got := md.Get("content-type"); len(got) != 1 || got[0] != "application/grpc" {
				t.Errorf("content-type = %v", got)
			}
			if got := col.compression[0]; got != tc.want {
				t.Errorf("compression = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewOTLPRejectsBadOptions(t *testing.T) {
	clearOTELEnv(t)
	for _, opt := range []OTLPOption{WithCompression("brotli"), WithQueueSize(-1), WithBatchSize(0), WithBatchDelay(0), WithTimeout(-time.Second)} {
		if o, err := NewOTLP(context.Background(), WithEndpoint("127.0.0.1:4317"), opt); err == nil {
			_ = o.Shutdown(context.Background())
			t.Errorf("NewOTLP accepted a bad option")
		}
	}
}

func TestOTLPQueueFullDropsWithoutBlocking(t *testing.T) {
	clearOTELEnv(t)
	col := &collector{block: make(chan struct{})}
	addr := startCollector(t, col)
	const batch, queue = 10, 20
	o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithInsecure(true),
		WithBatchSize(batch), WithQueueSize(queue), WithBatchDelay(time.Hour), WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	group := tcpGroup() // 7 spans
	const groups = 100
	start := time.Now()
	for range groups {
		o.Export(group)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Export blocked: %d groups took %s", groups, d)
	}
	total := uint64(groups * len(group))
	// At most the batch being uploaded, the queue and the current batch are kept.
	if st := o.Stats(); st.Dropped < total-batch-queue-batch || st.Exported != 0 {
		t.Errorf("Stats = %+v after %d spans with a blocked collector", st, total)
	}
	close(col.block)
	shutdown(t, o, 5*time.Second)
	st := o.Stats()
	if st.Exported+st.Dropped != total || st.Exported == 0 {
		t.Errorf("Stats = %+v, want %d in all, some exported", st, total)
	}
	if got := uint64(len(col.spans())); got != st.Exported {
		t.Errorf("collector got %d spans, Stats says %d", got, st.Exported)
	}
}

func TestOTLPUnreachableCollectorIsLoggedWithHintAndShutdownDropsAtDeadline(t *testing.T) {
	clearOTELEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	o, err := NewOTLP(context.Background(), WithEndpoint(addr), WithInsecure(true), WithLogger(log),
		WithBatchSize(7), WithBatchDelay(20*time.Millisecond), WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	o.Export(tcpGroup())
	want := "otlp export to " + addr + " failed"
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, s := range []string{want, "connection refused", "is the collector running?", "component=otlp"} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}

	// Spans still queued at Shutdown are dropped once its deadline passes.
	for range 5 {
		o.Export(tcpGroup())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = o.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %s with a 300ms deadline", d)
	}
	if err == nil || !strings.Contains(err.Error(), "spans unsent") {
		t.Errorf("Shutdown = %v, want the unsent spans reported", err)
	}
	if st := o.Stats(); st.Exported != 0 || st.Dropped != 6*7 {
		t.Errorf("Stats = %+v, want all 42 spans dropped", st)
	}
	o.Export(tcpGroup())
	if st := o.Stats(); st.Dropped != 7*7 {
		t.Errorf("Export after Shutdown: Stats = %+v, want it dropped", st)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func BenchmarkOTLPEncode(b *testing.B) { benchmarkEncoding(b, appendSpan) }

// benchmarkEncoding measures encode on the spans of one TCP packet, into one reused
// buffer, reporting spans per second.
func benchmarkEncoding(b *testing.B, encode func([]byte, *spanner.Span) []byte) {
	group := tcpGroup()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range group {
			buf = encode(buf, &group[i])
		}
	}
	b.ReportMetric(float64(b.N*len(group))/b.Elapsed().Seconds(), "spans/s")
}

func BenchmarkOTLPExport(b *testing.B) {
	col := &discardCollector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	o, err := NewOTLP(context.Background(), WithEndpoint(lis.Addr().String()), WithInsecure(true),
		WithCompression("none"), WithQueueSize(1<<20), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	group := tcpGroup()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		o.Export(group)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := o.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := o.Stats()
	b.ReportMetric(float64(st.Exported)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(st.Dropped), "dropped")
}

// discardCollector accepts everything and keeps nothing.
type discardCollector struct {
	collectortracepb.UnimplementedTraceServiceServer
}

func (discardCollector) Export(context.Context, *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}
