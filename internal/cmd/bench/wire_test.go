package main

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/pktspan/pktspan/spanner"
)

// recordSink keeps deep copies of every group: the spanner reuses its buffers.
type recordSink struct{ groups [][]spanner.Span }

func (r *recordSink) Export(g []spanner.Span) {
	c := slices.Clone(g)
	for i := range c {
		c[i].Attrs = slices.Clone(c[i].Attrs)
		c[i].Events = slices.Clone(c[i].Events)
		for j := range c[i].Events {
			c[i].Events[j].Attrs = slices.Clone(c[i].Events[j].Attrs)
		}
		c[i].Links = slices.Clone(c[i].Links)
	}
	r.groups = append(r.groups, c)
}
func (r *recordSink) Shutdown(context.Context) error { return nil }
func (r *recordSink) Stats() spanner.SinkStats       { return spanner.SinkStats{} }

// TestPktspanSinkAndSDKBaselineSendTheSameOTLP sends a sample of the fixtures' spans through pktspan's
// sink and through the SDK baseline, and compares what each receiver decoded: the same
// resource, scope and spans, whatever the batching and order.
func TestPktspanSinkAndSDKBaselineSendTheSameOTLP(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	t.Setenv("OTEL_SERVICE_NAME", "")
	fix := GenerateFixtures(20000, 7)
	rec := &recordSink{}
	if _, err := replay(fix, rec, 0); err != nil {
		t.Fatal(err)
	}
	var drops int
	for _, g := range rec.groups {
		if g[0].Status == spanner.StatusError {
			drops++
		}
	}
	if len(rec.groups) < 1000 || drops == 0 {
		t.Fatalf("sample of %d groups with %d drops: want a thousand groups and some drops", len(rec.groups), drops)
	}

	send := func(newSink func(string) (spanner.Sink, error)) *Receiver {
		r := &Receiver{keep: true}
		addr, stop, err := r.Serve(loopbackAny)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		out, err := newSink(addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rec.groups {
			out.Export(g)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := out.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	pkt, sdk := send(newPktspanSink), send(newSDKSink)

	pktSpans, pktRes, pktScope := received(t, pkt)
	sdkSpans, sdkRes, sdkScope := received(t, sdk)
	if len(pktSpans) != len(sdkSpans) || len(pktSpans) == 0 {
		t.Fatalf("pktspan sent %d spans, the SDK %d", len(pktSpans), len(sdkSpans))
	}
	if !sameAttrs(pktRes, sdkRes) {
		t.Errorf("resources differ:\npktspan %v\nSDK     %v", pktRes, sdkRes)
	}
	if !proto.Equal(pktScope, sdkScope) {
		t.Errorf("scopes differ: pktspan %v, SDK %v", pktScope, sdkScope)
	}
	var pktBytes, sdkBytes int
	for i := range pktSpans {
		p, s := pktSpans[i], sdkSpans[i]
		pktBytes += proto.Size(p)
		sdkBytes += proto.Size(s)
		if !proto.Equal(p, s) {
			t.Fatalf("span %d differs:\npktspan %v\nSDK     %v", i, p, s)
		}
	}
	t.Logf("%d spans (%d groups, %d drops), %d bytes of spans from each path", len(pktSpans), len(rec.groups), drops, pktBytes)
}

// received returns the spans a receiver kept, in span ID order, with the resource
// attributes and scope, which must be the same in every request.
func received(t *testing.T, r *Receiver) ([]*tracepb.Span, []*commonpb.KeyValue, *commonpb.InstrumentationScope) {
	t.Helper()
	var (
		spans []*tracepb.Span
		res   []*commonpb.KeyValue
		scope *commonpb.InstrumentationScope
	)
	for _, req := range r.reqs {
		for _, rs := range req.ResourceSpans {
			if res == nil {
				res = rs.Resource.GetAttributes()
			}
			for _, ss := range rs.ScopeSpans {
				if scope == nil {
					scope = ss.Scope
				}
				spans = append(spans, ss.Spans...)
			}
		}
	}
	for _, s := range spans {
		// The SDK always sends a status; an empty one is the same as none.
		if s.Status != nil && proto.Size(s.Status) == 0 {
			s.Status = nil
		}
	}
	slices.SortFunc(spans, func(a, b *tracepb.Span) int {
		if c := bytes.Compare(a.TraceId, b.TraceId); c != 0 {
			return c
		}
		return bytes.Compare(a.SpanId, b.SpanId)
	})
	return spans, res, scope
}

// sameAttrs compares attribute lists whatever their order.
func sameAttrs(a, b []*commonpb.KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]*commonpb.AnyValue, len(a))
	for _, kv := range a {
		m[kv.Key] = kv.Value
	}
	for _, kv := range b {
		if v, ok := m[kv.Key]; !ok || !proto.Equal(v, kv.Value) {
			return false
		}
	}
	return true
}
