//go:build e2e

// Tier 2: these tests start the Jaeger binary `make jaeger` builds; `make e2e` runs them.

package jaeger

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// startJaeger fails (never skips) without the binary: `make e2e` builds it first.
func startJaeger(t *testing.T) *Jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	j, err := Start(ctx)
	if errors.Is(err, ErrNoBinary) {
		t.Fatalf("%v; `make e2e` runs `make jaeger` first (%s picks another binary)", err, BinaryEnv)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jaeger log:\n%s", j.Log())
		}
		if err := j.Stop(); err != nil {
			t.Error(err)
		}
	})
	return j
}

func TestSpansSentOverOTLPComeBackFromTheQueryAPI(t *testing.T) {
	j := startJaeger(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const service = "pktspan-jaeger-test"
	since := time.Now().Add(-time.Second)

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(j.OTLPEndpoint()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	)
	tracer := tp.Tracer("jaeger_test")
	pctx, parent := tracer.Start(ctx, "flow tcp", trace.WithAttributes(attribute.String("network.transport", "tcp")))
	_, child := tracer.Start(pctx, "packet", trace.WithAttributes(
		attribute.Int64("pktspan.skb.len", 60),
		attribute.String("pktspan.tcp.flags", "SYN"),
	))
	child.End()
	parent.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wantTrace := parent.SpanContext().TraceID().String()

	td, err := j.WaitForSpans(ctx, service, since, func(td *tracepb.TracesData) bool { return len(Spans(td)) >= 2 })
	if err != nil {
		t.Fatalf("%v; got %d spans", err, len(Spans(td)))
	}
	spans := byName(t, Spans(td))
	p, c := spans["flow tcp"], spans["packet"]
	if p.TraceIDHex() != wantTrace || c.TraceIDHex() != wantTrace {
		t.Errorf("trace IDs %s, %s; want %s", p.TraceIDHex(), c.TraceIDHex(), wantTrace)
	}
	if got, want := p.SpanIDHex(), parent.SpanContext().SpanID().String(); got != want {
		t.Errorf("parent span ID %s, want %s", got, want)
	}
	if len(p.GetParentSpanId()) != 0 {
		t.Errorf("root has parent %x", p.GetParentSpanId())
	}
	if got, want := hex.EncodeToString(c.GetParentSpanId()), p.SpanIDHex(); got != want {
		t.Errorf("child's parent %s, want %s", got, want)
	}
	for _, a := range []struct {
		s         Span
		key, want string
	}{
		{p, "network.transport", "tcp"},
		{c, "pktspan.skb.len", "60"},
		{c, "pktspan.tcp.flags", "SYN"},
	} {
		if got, ok := a.s.Attr(a.key); !ok || got != a.want {
			t.Errorf("%s: %s = %q (present %v), want %q", a.s.GetName(), a.key, got, ok, a.want)
		}
	}
	if got, _ := c.ResourceAttr("service.name"); got != service {
		t.Errorf("service.name = %q, want %q", got, service)
	}
	if c.GetEndTimeUnixNano() < c.GetStartTimeUnixNano() || c.GetStartTimeUnixNano() < uint64(since.UnixNano()) {
		t.Errorf("child times %d..%d, since %d", c.GetStartTimeUnixNano(), c.GetEndTimeUnixNano(), since.UnixNano())
	}
}

func TestUnknownServiceHasNoSpansAndStopTwiceIsFine(t *testing.T) {
	j := startJaeger(t)
	ctx := t.Context()
	td, err := j.Traces(ctx, "no-such-service", time.Now().Add(-time.Hour))
	if err != nil || len(Spans(td)) != 0 {
		t.Errorf("Traces of an unknown service = %d spans, %v; want none, no error", len(Spans(td)), err)
	}
	if err := j.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := j.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func byName(t *testing.T, spans []Span) map[string]Span {
	t.Helper()
	m := make(map[string]Span, len(spans))
	for _, s := range spans {
		if _, dup := m[s.GetName()]; dup {
			t.Fatalf("two spans named %q", s.GetName())
		}
		m[s.GetName()] = s
	}
	for _, name := range []string{"flow tcp", "packet"} {
		if _, ok := m[name]; !ok {
			t.Fatalf("no span %q among %d", name, len(spans))
		}
	}
	return m
}
