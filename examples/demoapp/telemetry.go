package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// flushTimeout bounds how long an exit waits for queued spans to leave.
const flushTimeout = 5 * time.Second

// propagator is what both sides inject and extract; it is passed to otelhttp explicitly
// rather than set globally so that a test's in-process client and server stay apart.
func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// newTracerProvider exports over OTLP/gRPC configured by the standard
// OTEL_EXPORTER_OTLP_* variables alone through a batch processor, or exports nothing when
// OTEL_TRACES_EXPORTER=none.
func newTracerProvider(ctx context.Context, service string, sampler sdktrace.Sampler) (*sdktrace.TracerProvider, error) {
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("building the resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sampler), sdktrace.WithResource(res)}
	switch e := os.Getenv("OTEL_TRACES_EXPORTER"); e {
	case "none":
	case "", "otlp":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating the otlp/grpc exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", e)
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// shutdownTracing flushes the spans still queued, giving up after flushTimeout.
func shutdownTracing(tp *sdktrace.TracerProvider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("flushing spans", "err", err)
	}
}

// serviceName is --service-name when given, else OTEL_SERVICE_NAME when set, else the
// flag's default.
func serviceName(fs *flag.FlagSet, value string) string {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "service-name" })
	if env := os.Getenv("OTEL_SERVICE_NAME"); !given && env != "" {
		return env
	}
	return value
}
