package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/sink"
)

// passGap separates replays of the fixtures: longer than the close grace, so windows
// ended by FIN close at the next pass's first tick, as they would in time.
const passGap = int64(3 * time.Second)

// tickEvery is how often, in event time, the replay ticks the spanner (the collector
// ticks every 100 ms of wall time).
const tickEvery = int64(100 * time.Millisecond)

var discardLog = slog.New(slog.DiscardHandler)

// maxBacklog bounds the spans handed to a sink and not yet sent (half of pktspan's
// default queue): the replay waits for the sender instead of outrunning it into drops,
// as the SDK path's blocking batch processor does.
const maxBacklog = 32768

// replay feeds the fixtures through the collector's decoder and a spanner into out,
// pass after pass, until d has passed; then it flushes the spanner. It returns the
// events fed.
func replay(f *Fixtures, out spanner.Sink, d time.Duration) (int, error) {
	fd, err := newFeeder(f, out)
	if err != nil {
		return 0, err
	}
	events := 0
	for start := time.Now(); events == 0 || time.Since(start) < d; events += f.Events {
		for i := range f.Events {
			if err := fd.next(); err != nil {
				return events, err
			}
			if i%4096 == 0 {
				waitForSender(fd.sp, out)
			}
		}
	}
	fd.sp.Flush(fd.ev.TimeUnixNano + passGap)
	return events, nil
}

// waitForSender sleeps while pktspan's sink has too many spans waiting; the SDK path
// blocks by itself.
func waitForSender(sp *spanner.Spanner, out spanner.Sink) {
	if _, ok := out.(*sink.OTLP); !ok {
		return
	}
	for {
		st := out.Stats()
		if sp.Stats().Spans-st.Exported-st.Dropped <= maxBacklog {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// exportRun is one path of case 1 measured.
type exportRun struct {
	Events       int
	Spans        uint64 // counted by the receiver
	Dropped      uint64 // spans the path dropped (full queue)
	Wall         time.Duration
	CPU          time.Duration // this process: decode, spanner, conversion, gRPC client, GC
	ReceiverCPU  time.Duration
	SpansPerCore float64 // spans received per CPU second of this process
}

// measureExport runs the fixtures into a sink made by newSink, sending to the receiver,
// and writes a CPU profile to profile when it is not empty.
func measureExport(f *Fixtures, rcv *ReceiverProc, d time.Duration, profile string, newSink func(endpoint string) (spanner.Sink, error)) (exportRun, error) {
	var r exportRun
	out, err := newSink(rcv.Addr)
	if err != nil {
		return r, err
	}
	before, err := rcv.Stats()
	if err != nil {
		return r, err
	}
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			return r, fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return r, fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0, wall0 := cpuTime(), time.Now()
	r.Events, err = replay(f, out, d)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if shutErr := out.Shutdown(ctx); err == nil && shutErr != nil {
		err = fmt.Errorf("flushing: %w", shutErr)
	}
	r.CPU, r.Wall = cpuTime()-cpu0, time.Since(wall0)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return r, err
	}
	after, err := rcv.Stats()
	if err != nil {
		return r, err
	}
	r.Spans = after.Spans - before.Spans
	r.Dropped = out.Stats().Dropped
	r.ReceiverCPU = after.CPU - before.CPU
	r.SpansPerCore = float64(r.Spans) / r.CPU.Seconds()
	return r, nil
}

// newPktspanSink is pktspan's own OTLP sink with its defaults, as cmd/pktspan builds it.
func newPktspanSink(endpoint string) (spanner.Sink, error) {
	d := config.Default().OTLP
	return sink.NewOTLP(context.Background(), sink.WithEndpoint(endpoint), sink.WithInsecure(true),
		sink.WithCompression("none"), sink.WithBatchSize(d.BatchSize), sink.WithQueueSize(d.QueueSize),
		sink.WithLogger(discardLog))
}

// sdkSink is the baseline: every span made through the OTel SDK's Tracer.Start and End,
// with a batch span processor and the otlptracegrpc exporter. Spans keep pktspan's IDs
// (through the ID generator) and times, so both paths put the same spans on the wire.
type sdkSink struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	ids    *presetIDs
	opts   []trace.SpanStartOption
}

// newSDKSink batches like pktspan's sink (its default spans a request and queue), blocking
// rather than dropping so that both paths deliver every span.
func newSDKSink(endpoint string) (spanner.Sink, error) {
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, fmt.Errorf("sdk exporter: %w", err)
	}
	res, err := pktspanResource(ctx)
	if err != nil {
		return nil, err
	}
	ids := &presetIDs{}
	defaults := config.Default().OTLP
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(ids),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(exp,
			sdktrace.WithMaxExportBatchSize(defaults.BatchSize),
			sdktrace.WithMaxQueueSize(defaults.QueueSize),
			sdktrace.WithBlocking()),
	)
	return &sdkSink{tp: tp, tracer: tp.Tracer("pktspan"), ids: ids}, nil
}

// pktspanResource is the resource pktspan's sink detects.
func pktspanResource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "pktspan")),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return res, nil
}

// sampled marks every span and link recorded, as pktspan's sink does.
const sampled = trace.FlagsSampled

// flags adds the W3C random flag where the trace ID is random, as pktspan's sink does.
func flags(random bool) trace.TraceFlags { return sampled.WithRandom(random) }

func (s *sdkSink) Export(group []spanner.Span) {
	for i := range group {
		sp := &group[i]
		// The SDK gives a span its parent context's flags; a root takes them from a
		// context holding flags and no IDs.
		ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceFlags: flags(sp.RandomTraceID),
		}))
		if sp.ParentID != (spanner.SpanID{}) {
			ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID(sp.TraceID), SpanID: trace.SpanID(sp.ParentID), TraceFlags: flags(sp.RandomTraceID),
			}))
		}
		s.ids.trace, s.ids.span = trace.TraceID(sp.TraceID), trace.SpanID(sp.SpanID)
		s.opts = append(s.opts[:0],
			trace.WithTimestamp(time.Unix(0, sp.StartUnixNano)),
			trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(sp.Attrs...),
		)
		for _, l := range sp.Links {
			s.opts = append(s.opts, trace.WithLinks(trace.Link{
				SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: trace.TraceID(l.TraceID), SpanID: trace.SpanID(l.SpanID), TraceFlags: flags(l.RandomTraceID),
				}),
				Attributes: l.Attrs,
			}))
		}
		_, span := s.tracer.Start(ctx, sp.Name, s.opts...)
		for _, e := range sp.Events {
			span.AddEvent(e.Name, trace.WithTimestamp(time.Unix(0, e.TimeUnixNano)), trace.WithAttributes(e.Attrs...))
		}
		if sp.Status == spanner.StatusError {
			span.SetStatus(codes.Error, sp.StatusDescription)
		}
		// Instants last 1 ns, as pktspan's sink sends them.
		span.End(trace.WithTimestamp(time.Unix(0, max(sp.EndUnixNano, sp.StartUnixNano+1))))
	}
}

func (s *sdkSink) Shutdown(ctx context.Context) error { return s.tp.Shutdown(ctx) }

// Stats reports nothing: the receiver counts what arrived, and the blocking processor
// drops nothing.
func (s *sdkSink) Stats() spanner.SinkStats { return spanner.SinkStats{} }

// presetIDs hands the SDK the IDs the spanner chose for the span being started.
type presetIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

func (p *presetIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) { return p.trace, p.span }
func (p *presetIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	return p.span
}
