package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// maxBytes caps /bytes?n=N: enough for a reply of hundreds of TCP segments.
const maxBytes = 16 << 20

// shutdownTimeout bounds how long a stopping server waits for requests in flight.
const shutdownTimeout = 5 * time.Second

// filler is what /bytes repeats: printable, so a packet capture shows where it is.
var filler = bytes.Repeat([]byte("pktspan "), 8<<10)

func serverMain(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) int {
	fs := flag.NewFlagSet("demoapp server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on, host:port (required)")
	service := fs.String("service-name", "demo-server", "service.name of the spans (else OTEL_SERVICE_NAME)")
	ns := fs.String("netns", "", "listen inside the network namespace at this path (e.g. /run/netns/x); spans still go out from the process's own")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *listen == "" {
		fmt.Fprintln(stderr, "demoapp server: --listen is required")
		return exitUsage
	}

	tp, err := newTracerProvider(ctx, serviceName(fs, *service), sdktrace.ParentBased(sdktrace.AlwaysSample()))
	if err != nil {
		log.Error("starting tracing", "err", err)
		return exitError
	}
	defer shutdownTracing(tp, log)
	var ln net.Listener
	err = inNetns(*ns, func() error {
		var err error
		ln, err = net.Listen("tcp", *listen)
		return err
	})
	if err != nil {
		log.Error("listening", "err", err)
		return exitError
	}
	log.Info("listening", "addr", ln.Addr().String())
	if err := serve(ctx, ln, newHandler(tp)); err != nil {
		log.Error("serving", "err", err)
		return exitError
	}
	return exitOK
}

// parseFlags parses args into fs; when it says !ok the caller exits with code: 0 for
// -h, 2 for bad flags or stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage, false
	}
	return 0, true
}

// serve answers on ln until ctx ends, then stops taking connections and waits up to
// shutdownTimeout for the requests in flight, so their server spans end.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	}
	return nil
}

// newHandler is the demo's routes under otelhttp, which makes each request's server span
// a child of the client span its traceparent names.
func newHandler(tp trace.TracerProvider) http.Handler {
	return otelhttp.NewHandler(http.HandlerFunc(answer), "demo-server",
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator()))
}

// answer serves GET / (a short body) and GET /bytes?n=N (N bytes, 0 ≤ N ≤ maxBytes);
// anything else is 404.
func answer(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	switch r.URL.Path {
	case "/":
		_, _ = io.WriteString(w, "hello from pktspan's demoapp\n")
	case "/bytes":
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > maxBytes {
			http.Error(w, fmt.Sprintf("n must be an integer from 0 to %d", maxBytes), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		// A known length keeps the reply one plain body, not chunks.
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k, err := w.Write(filler[:min(n, len(filler))])
			if err != nil {
				return
			}
			n -= k
		}
	default:
		http.NotFound(w, r)
	}
}
