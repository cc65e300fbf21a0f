// Command demoapp is an HTTP client and server instrumented with OpenTelemetry's otelhttp,
// for pktspan's --correlate http: the client's requests carry W3C traceparent headers
// whose packets pktspan files under the client's spans.
//
//	demoapp server --listen ADDR [--service-name demo-server]
//	demoapp client --url URL [--requests N] [--concurrency C] [--connections K] ...
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/otel"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage:
  demoapp server --listen ADDR [--service-name demo-server]
  demoapp client --url URL [--requests 1] [--concurrency 1] [--connections 1] [--timeout 5s]
                 [--sampled=true] [--service-name demo-client] [--report FILE|-] [--interval 0]

Spans go over OTLP/gRPC as OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_INSECURE say;
OTEL_TRACES_EXPORTER=none exports nothing. "demoapp server -h" and "demoapp client -h"
list each subcommand's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Export failures (no collector listening, say) are worth a log line, not a crash.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "err", err)
	}))
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs one subcommand until it is done or ctx ends and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "server":
		return serverMain(ctx, args[1:], stderr, log)
	case "client":
		return clientMain(ctx, args[1:], stdout, stderr, log)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "demoapp: unknown subcommand %q\n%s", args[0], usage)
		return exitUsage
	}
}
