package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// recording is a tracer provider whose ended spans a test can read.
type recording struct {
	tp  *sdktrace.TracerProvider
	rec *tracetest.SpanRecorder
}

func newRecording(t *testing.T, sampler sdktrace.Sampler) recording {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return recording{tp: tp, rec: rec}
}

// testServer is serve on 127.0.0.1:0 with the traceparent headers it received.
type testServer struct {
	url  string
	addr string
	stop func() // returns once every request's server span has ended

	mu       sync.Mutex
	received []string
}

func startServer(t *testing.T, tp trace.TracerProvider) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{url: "http://" + ln.Addr().String(), addr: ln.Addr().String()}
	h := newHandler(tp)
	wire := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.received = append(s.received, r.Header.Get("traceparent"))
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, wire) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) receivedHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.received))
}

func collect(ctx context.Context, cfg clientConfig, tp trace.TracerProvider) []Request {
	var rs []Request
	runRequests(ctx, cfg, tp, func(r Request) { rs = append(rs, r) })
	return rs
}

func defaultConfig(url string) clientConfig {
	return clientConfig{URL: url, Requests: 1, Concurrency: 1, Connections: 1, Timeout: 5 * time.Second}
}

func spansByID(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := make(map[string]sdktrace.ReadOnlySpan, len(spans))
	for _, s := range spans {
		m[s.SpanContext().SpanID().String()] = s
	}
	return m
}

func TestEachRequestIsItsOwnTraceWithTheServerSpanUnderTheClientSpan(t *testing.T) {
	client, server := newRecording(t, sdktrace.AlwaysSample()), newRecording(t, sdktrace.ParentBased(sdktrace.AlwaysSample()))
	srv := startServer(t, server.tp)
	cfg := defaultConfig(srv.url + "/")
	cfg.Requests, cfg.Concurrency, cfg.Connections = 12, 3, 2
	report := collect(t.Context(), cfg, client.tp)
	srv.stop()

	if len(report) != cfg.Requests {
		t.Fatalf("report has %d requests, want %d", len(report), cfg.Requests)
	}
	clientSpans := spansByID(client.rec.Ended())
	serverByParent := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range server.rec.Ended() {
		serverByParent[s.Parent().SpanID().String()] = s
	}
	if len(clientSpans) != cfg.Requests || len(serverByParent) != cfg.Requests {
		t.Fatalf("%d client spans and %d server spans with distinct parents, want %d of each",
			len(clientSpans), len(serverByParent), cfg.Requests)
	}
	traces := map[string]bool{}
	for _, r := range report {
		if r.Error != "" || r.Status != http.StatusOK {
			t.Errorf("request %s: status %d, error %q", r.SpanID, r.Status, r.Error)
		}
		c, ok := clientSpans[r.SpanID]
		if !ok {
			t.Errorf("request %s: no client span with its span_id", r.SpanID)
			continue
		}
		if c.SpanKind() != trace.SpanKindClient || c.Parent().IsValid() || c.SpanContext().TraceID().String() != r.TraceID {
			t.Errorf("request %s: client span kind %v, parent %v, trace %s; want a root client span of trace %s",
				r.SpanID, c.SpanKind(), c.Parent(), c.SpanContext().TraceID(), r.TraceID)
		}
		s, ok := serverByParent[r.SpanID]
		if !ok {
			t.Errorf("request %s: no server span whose parent is the client span", r.SpanID)
			continue
		}
		if s.SpanKind() != trace.SpanKindServer || s.SpanContext().TraceID().String() != r.TraceID || !s.Parent().IsRemote() {
			t.Errorf("request %s: server span kind %v, trace %s, remote parent %v; want a server span of trace %s under a remote parent",
				r.SpanID, s.SpanKind(), s.SpanContext().TraceID(), s.Parent().IsRemote(), r.TraceID)
		}
		traces[r.TraceID] = true
	}
	if len(traces) != cfg.Requests {
		t.Errorf("%d distinct traces for %d requests, want one each", len(traces), cfg.Requests)
	}
}

func TestReportedTraceparentIsTheSampledClientSpanAsTheServerReceivedIt(t *testing.T) {
	client, server := newRecording(t, sdktrace.AlwaysSample()), newRecording(t, sdktrace.ParentBased(sdktrace.AlwaysSample()))
	srv := startServer(t, server.tp)
	cfg := defaultConfig(srv.url + "/bytes?n=100000")
	cfg.Requests = 5
	report := collect(t.Context(), cfg, client.tp)
	srv.stop()

	clientSpans := spansByID(client.rec.Ended())
	var sent []string
	for _, r := range report {
		c, ok := clientSpans[r.SpanID]
		if !ok {
			t.Fatalf("request %s: no client span with its span_id", r.SpanID)
		}
		want := fmt.Sprintf("00-%s-%s-01", c.SpanContext().TraceID(), c.SpanContext().SpanID())
		if r.Traceparent != want || !r.Sampled {
			t.Errorf("report: traceparent %q, sampled %v; want %q, true", r.Traceparent, r.Sampled, want)
		}
		sent = append(sent, r.Traceparent)
	}
	slices.Sort(sent)
	if got := srv.receivedHeaders(); !slices.Equal(got, sent) {
		t.Errorf("the server received traceparents %q, the report says %q were sent", got, sent)
	}
}

var unsampledTraceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-00$`)

func TestUnsampledRequestsStillPropagateValidIDsWithFlags00AndRecordNothing(t *testing.T) {
	client, server := newRecording(t, sdktrace.NeverSample()), newRecording(t, sdktrace.ParentBased(sdktrace.AlwaysSample()))
	srv := startServer(t, server.tp)
	cfg := defaultConfig(srv.url + "/")
	cfg.Requests = 5
	report := collect(t.Context(), cfg, client.tp)
	srv.stop()

	var sent []string
	for _, r := range report {
		m := unsampledTraceparent.FindStringSubmatch(r.Traceparent)
		if m == nil || r.Sampled || m[1] != r.TraceID || m[2] != r.SpanID ||
			m[1] == strings.Repeat("0", 32) || m[2] == strings.Repeat("0", 16) {
			t.Errorf("report: traceparent %q, trace %s, span %s, sampled %v; want 00-<trace>-<span>-00 with valid IDs, unsampled",
				r.Traceparent, r.TraceID, r.SpanID, r.Sampled)
		}
		if r.Status != http.StatusOK {
			t.Errorf("request %s: status %d, error %q", r.SpanID, r.Status, r.Error)
		}
		sent = append(sent, r.Traceparent)
	}
	slices.Sort(sent)
	if got := srv.receivedHeaders(); len(got) != cfg.Requests || !slices.Equal(got, sent) {
		t.Errorf("the server received traceparents %q, the report says %q were sent", got, sent)
	}
	if n, m := len(client.rec.Ended()), len(server.rec.Ended()); n+m != 0 {
		t.Errorf("%d client and %d server spans recorded, want none", n, m)
	}
}

func TestConnectionsCapsTheClientsConnectionsWhichAreKeptAlive(t *testing.T) {
	srv := startServer(t, newRecording(t, sdktrace.AlwaysSample()).tp)
	cfg := defaultConfig(srv.url + "/bytes?n=20000")
	cfg.Requests, cfg.Concurrency, cfg.Connections = 40, 8, 2
	report := collect(t.Context(), cfg, newRecording(t, sdktrace.AlwaysSample()).tp)

	if len(report) != cfg.Requests {
		t.Fatalf("report has %d requests, want %d", len(report), cfg.Requests)
	}
	local := map[string]bool{}
	reused := 0
	for _, r := range report {
		if r.Error != "" || r.Status != http.StatusOK || r.RemoteAddr != srv.addr {
			t.Errorf("request %s: status %d, error %q, remote %s", r.SpanID, r.Status, r.Error, r.RemoteAddr)
		}
		local[r.LocalAddr] = true
		if r.Reused {
			reused++
		}
	}
	if len(local) > cfg.Connections || len(local) == 0 {
		t.Errorf("%d distinct local addresses %v, want 1 to %d", len(local), local, cfg.Connections)
	}
	// A connection comes fresh to one request at most (a dial that lost its race to an
	// idle connection goes to the pool and counts as reused), so the rest reused one.
	if want := cfg.Requests - len(local); reused < want {
		t.Errorf("%d requests reused a connection, want at least %d", reused, want)
	}
}

func TestServerAnswersRootBytesOfExactLengthAndNotFound(t *testing.T) {
	srv := startServer(t, newRecording(t, sdktrace.AlwaysSample()).tp)
	for _, tc := range []struct {
		method, path string
		status, size int
	}{
		{"GET", "/", 200, -1},
		{"GET", "/bytes?n=0", 200, 0},
		{"GET", "/bytes?n=1", 200, 1},
		{"GET", "/bytes?n=70000", 200, 70000},
		{"GET", fmt.Sprintf("/bytes?n=%d", maxBytes), 200, maxBytes},
		{"GET", fmt.Sprintf("/bytes?n=%d", maxBytes+1), 400, -1},
		{"GET", "/bytes?n=-1", 400, -1},
		{"GET", "/bytes", 400, -1},
		{"GET", "/other", 404, -1},
		{"POST", "/", 404, -1},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: reading the body: %v", tc.method, tc.path, err)
		}
		if resp.StatusCode != tc.status || tc.size >= 0 && len(body) != tc.size {
			t.Errorf("%s %s: status %d, %d bytes; want %d, %d bytes", tc.method, tc.path, resp.StatusCode, len(body), tc.status, tc.size)
		}
		if tc.size > 0 && !bytes.Equal(body, bytes.Repeat(filler, tc.size/len(filler)+1)[:tc.size]) {
			t.Errorf("%s %s: the body is not the filler", tc.method, tc.path)
		}
	}
}

func TestFailedRequestsAreReportedWithTheirTraceAndStatusZero(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cfg := defaultConfig("http://" + closed + "/")
	cfg.Requests = 2
	report := collect(t.Context(), cfg, newRecording(t, sdktrace.AlwaysSample()).tp)
	if len(report) != 2 {
		t.Fatalf("report has %d requests, want 2", len(report))
	}
	for _, r := range report {
		if r.Error == "" || r.Status != 0 || r.Traceparent == "" || r.TraceID == "" || r.EndUnixNano < r.StartUnixNano {
			t.Errorf("request to a closed port reported as %+v; want an error, status 0, its traceparent and times", r)
		}
	}
}

func TestRequestsZeroRunsUntilCanceledPausingIntervalBetweenRequests(t *testing.T) {
	srv := startServer(t, newRecording(t, sdktrace.AlwaysSample()).tp)
	cfg := defaultConfig(srv.url + "/")
	cfg.Requests, cfg.Interval = 0, 50*time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	report := collect(ctx, cfg, newRecording(t, sdktrace.AlwaysSample()).tp)

	// 400ms at one request per 50ms is at most 9 requests, at least a few on a busy machine.
	if len(report) < 2 || len(report) > 9 {
		t.Fatalf("%d requests in 400ms with a 50ms interval, want 2 to 9", len(report))
	}
	for i, r := range report {
		if r.Status != http.StatusOK {
			t.Errorf("request %d: status %d, error %q", i, r.Status, r.Error)
		}
		if i > 0 && r.StartUnixNano-report[i-1].EndUnixNano < int64(cfg.Interval) {
			t.Errorf("request %d started %v after the one before ended, want at least %v",
				i, time.Duration(r.StartUnixNano-report[i-1].EndUnixNano), cfg.Interval)
		}
	}
}

// syncBuffer is a bytes.Buffer that run's logger and the test may use at once.
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

var listening = regexp.MustCompile(`msg=listening addr=(\S+)`)

func TestSubcommandsServeAndWriteOneJSONLinePerRequestExitingZero(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	ctx, cancel := context.WithCancel(t.Context())
	var serverLog syncBuffer
	served := make(chan int, 1)
	go func() { served <- run(ctx, []string{"server", "--listen", "127.0.0.1:0"}, io.Discard, &serverLog) }()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := listening.FindStringSubmatch(serverLog.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("the server logged no address: %s", serverLog.String())
	}

	path := filepath.Join(t.TempDir(), "report.jsonl")
	var clientLog bytes.Buffer
	code := run(t.Context(), []string{"client", "--url", "http://" + addr + "/bytes?n=3000",
		"--requests", "6", "--concurrency", "2", "--connections", "2", "--sampled=false", "--report", path}, io.Discard, &clientLog)
	if code != exitOK {
		t.Errorf("client exited %d: %s", code, clientLog.String())
	}
	cancel()
	if code := <-served; code != exitOK {
		t.Errorf("server exited %d: %s", code, serverLog.String())
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines int
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var r Request
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("report line %d: %v", lines+1, err)
		}
		if r.Status != http.StatusOK || !unsampledTraceparent.MatchString(r.Traceparent) {
			t.Errorf("report line %d: %+v", lines+1, r)
		}
	}
	if lines != 6 {
		t.Errorf("report has %d lines, want 6", lines)
	}
}

func TestClientExitsZeroWhenRequestsFail(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"client", "--url", "http://" + closed + "/", "--report", "-"}, &stdout, &stderr)
	if code != exitOK {
		t.Errorf("exit code %d, want 0: %s", code, stderr.String())
	}
	var r Request
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Error == "" {
		t.Errorf("report on stdout %q (%v): want one failed request", stdout.String(), err)
	}
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"proxy"},
		{"server"},
		{"server", "--listen", "127.0.0.1:0", "extra"},
		{"server", "--nope"},
		{"client"},
		{"client", "--url", "ftp://host/"},
		{"client", "--url", "http://127.0.0.1:1/", "--requests", "-1"},
		{"client", "--url", "http://127.0.0.1:1/", "--concurrency", "0"},
		{"client", "--url", "http://127.0.0.1:1/", "--connections", "0"},
		{"client", "--url", "http://127.0.0.1:1/", "--timeout", "0s"},
		{"client", "--url", "http://127.0.0.1:1/", "--interval", "-1s"},
		{"client", "--url", "http://127.0.0.1:1/", "--sampled=maybe"},
	} {
		if code := run(t.Context(), args, io.Discard, io.Discard); code != exitUsage {
			t.Errorf("demoapp %q exited %d, want %d", args, code, exitUsage)
		}
	}
}

func TestServiceNameFlagWinsOverEnvironmentWhichWinsOverDefault(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "from-env"},
		{[]string{"--service-name", "from-flag"}, "from-flag"},
	} {
		fs := flagSetWithServiceName()
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := serviceName(fs, fs.Lookup("service-name").Value.String()); got != tc.want {
			t.Errorf("args %q: service name %q, want %q", tc.args, got, tc.want)
		}
	}
	t.Setenv("OTEL_SERVICE_NAME", "")
	fs := flagSetWithServiceName()
	if got := serviceName(fs, "demo-client"); got != "demo-client" {
		t.Errorf("no flag, no environment: service name %q, want the default", got)
	}
}

func flagSetWithServiceName() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.String("service-name", "demo-client", "")
	return fs
}
