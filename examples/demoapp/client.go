package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Request is one line of the client's report: one request, its client span and the
// connection it went over.
type Request struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"` // the client span's
	Sampled bool   `json:"sampled"`
	// Traceparent is the header exactly as it went on the wire.
	Traceparent   string `json:"traceparent"`
	LocalAddr     string `json:"local_addr"`
	RemoteAddr    string `json:"remote_addr"`
	Reused        bool   `json:"reused"` // a kept-alive connection
	Status        int    `json:"status"` // 0 when no response came
	Error         string `json:"error"`
	StartUnixNano int64  `json:"start_unix_nano"`
	EndUnixNano   int64  `json:"end_unix_nano"`
}

// clientConfig is what the client's flags say.
type clientConfig struct {
	URL         string
	Requests    int // 0: until ctx ends
	Concurrency int
	Connections int
	Timeout     time.Duration
	Interval    time.Duration // each goroutine's pause between requests
	Netns       string        // dial from inside this network namespace ("": the process's own)
}

func clientMain(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) int {
	fs := flag.NewFlagSet("demoapp client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg clientConfig
	fs.StringVar(&cfg.URL, "url", "", "URL to GET (required)")
	fs.StringVar(&cfg.Netns, "netns", "", "connect from inside the network namespace at this path; spans still go out from the process's own")
	fs.IntVar(&cfg.Requests, "requests", 1, "requests in all; 0 runs until SIGINT or SIGTERM")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1, "goroutines sharing the requests")
	fs.IntVar(&cfg.Connections, "connections", 1, "most TCP connections open at once, kept alive")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "limit on each request, body included")
	fs.DurationVar(&cfg.Interval, "interval", 0, "each goroutine's pause between its requests")
	sampled := fs.Bool("sampled", true, "sample the client spans; false sends traceparents with flags 00")
	service := fs.String("service-name", "demo-client", "service.name of the spans (else OTEL_SERVICE_NAME)")
	report := fs.String("report", "", "write the report, one JSON object a line, to this file (- for stdout)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "demoapp client: %v\n", err)
		return exitUsage
	}

	out := io.Discard
	switch *report {
	case "":
	case "-":
		out = stdout
	default:
		f, err := os.Create(*report)
		if err != nil {
			log.Error("creating the report", "err", err)
			return exitError
		}
		defer f.Close()
		out = f
	}
	sampler := sdktrace.AlwaysSample()
	if !*sampled {
		sampler = sdktrace.NeverSample()
	}
	tp, err := newTracerProvider(ctx, serviceName(fs, *service), sampler)
	if err != nil {
		log.Error("starting tracing", "err", err)
		return exitError
	}
	defer shutdownTracing(tp, log)

	enc := json.NewEncoder(out)
	var total, failed int
	var werr error
	runRequests(ctx, cfg, tp, func(r Request) {
		total++
		if r.Error != "" {
			failed++
		}
		if werr == nil {
			werr = enc.Encode(r)
		}
	})
	log.Info("done", "requests", total, "failed", failed)
	if werr != nil {
		log.Error("writing the report", "err", werr)
		return exitError
	}
	return exitOK
}

func (c clientConfig) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return fmt.Errorf("--url is required")
	case err != nil:
		return fmt.Errorf("--url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("--url %q: want http://host[:port]/path", c.URL)
	case c.Requests < 0:
		return fmt.Errorf("--requests %d: want 0 or more", c.Requests)
	case c.Concurrency < 1:
		return fmt.Errorf("--concurrency %d: want 1 or more", c.Concurrency)
	case c.Connections < 1:
		return fmt.Errorf("--connections %d: want 1 or more", c.Connections)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout %v: want more than 0", c.Timeout)
	case c.Interval < 0:
		return fmt.Errorf("--interval %v: want 0 or more", c.Interval)
	}
	return nil
}

// runRequests makes cfg.Requests GETs of cfg.URL from cfg.Concurrency goroutines, each
// request the root span of its own trace, and calls record with each as it finishes, one
// call at a time. When ctx ends no new request starts; those in flight finish within
// cfg.Timeout.
func runRequests(ctx context.Context, cfg clientConfig, tp trace.TracerProvider, record func(Request)) {
	base := &http.Transport{
		// No proxy from the environment: the packets must go where --url says.
		Proxy:               nil,
		DialContext:         dialInNetns(cfg.Netns, &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}),
		MaxConnsPerHost:     cfg.Connections,
		MaxIdleConnsPerHost: cfg.Connections,
		MaxIdleConns:        cfg.Connections,
		IdleConnTimeout:     90 * time.Second,
	}
	defer base.CloseIdleConnections()
	// captureTransport sits inside otelhttp's so that it sees the request after the
	// traceparent was injected, as http.Transport writes it.
	client := &http.Client{Transport: otelhttp.NewTransport(captureTransport{base},
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator()))}

	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				if cfg.Requests > 0 && next.Add(1) > int64(cfg.Requests) {
					return
				}
				// In-flight requests outlive ctx: a stop cuts no reply short.
				r := get(context.WithoutCancel(ctx), client, cfg.URL, cfg.Timeout)
				mu.Lock()
				record(r)
				mu.Unlock()
				if cfg.Interval > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(cfg.Interval):
					}
				}
			}
		})
	}
	wg.Wait()
}

// get makes one GET and reads the whole body. ctx carries no span, so otelhttp's client
// span is the root of a new trace.
func get(ctx context.Context, client *http.Client, target string, timeout time.Duration) Request {
	ex := &exchange{}
	ctx = context.WithValue(ctx, exchangeKey{}, ex)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: ex.gotConn})
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	status, err := fetch(ctx, client, target)
	end := time.Now()

	ex.mu.Lock()
	defer ex.mu.Unlock()
	r := ex.r
	r.Status = status
	if err != nil {
		r.Error = err.Error()
	}
	r.StartUnixNano, r.EndUnixNano = start.UnixNano(), end.UnixNano()
	return r
}

// fetch returns the status and any error of the request or of reading its body; closing
// the body ends the client span.
func fetch(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, fmt.Errorf("building the request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, nil
}

// exchange collects what one request's hooks learn. httptrace may call them from the
// transport's goroutines, hence the lock.
type exchange struct {
	mu sync.Mutex
	r  Request
}

type exchangeKey struct{}

func (ex *exchange) gotConn(info httptrace.GotConnInfo) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	// A retry on a fresh connection calls this again; the last call is the one used.
	ex.r.LocalAddr = info.Conn.LocalAddr().String()
	ex.r.RemoteAddr = info.Conn.RemoteAddr().String()
	ex.r.Reused = info.Reused
}

// captureTransport records the traceparent and the client span of each request it
// carries into the request's exchange.
type captureTransport struct{ base http.RoundTripper }

func (t captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ex, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
		sc := trace.SpanContextFromContext(req.Context())
		ex.mu.Lock()
		ex.r.Traceparent = req.Header.Get("traceparent")
		if sc.IsValid() {
			ex.r.TraceID, ex.r.SpanID, ex.r.Sampled = sc.TraceID().String(), sc.SpanID().String(), sc.IsSampled()
		}
		ex.mu.Unlock()
	}
	return t.base.RoundTrip(req)
}
