// Package demoapp builds examples/demoapp, the OpenTelemetry-instrumented HTTP client and
// server of the --correlate http tests, runs them in a lab's network namespaces, and
// reads the client's report.
package demoapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/internal/netns"
)

// Request is one line of the client's report (examples/demoapp's Request): one request,
// its client span and the connection it went over.
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

// Dir is examples/demoapp, found from this source file so that any package's test can
// build it whatever its working directory.
func Dir() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "examples", "demoapp")
}

// Build compiles the demoapp binary into outDir and returns its path. It is static
// (CGO_ENABLED=0) so that it runs in any network namespace, VM or scratch image.
func Build(ctx context.Context, outDir string) (string, error) {
	dir := Dir()
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("building demoapp: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(outDir, "demoapp"))
	if err != nil {
		return "", fmt.Errorf("building demoapp: %w", err)
	}
	// No VCS stamp: it would need git to accept a checkout that root may not own.
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building demoapp in %s: %w\n%s", dir, err, b)
	}
	return out, nil
}

// ReadReport reads the report that `demoapp client --report path` wrote: one JSON object
// a line. A field it does not know is an error, so a report that outgrew Request is
// noticed.
func ReadReport(path string) ([]Request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the demoapp report: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var rs []Request
	for {
		var r Request
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return rs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the demoapp report %s: request %d: %w", path, len(rs)+1, err)
		}
		rs = append(rs, r)
	}
}

// StartServer starts `demoapp server` listening at addr inside ns, with env (the OTEL_*
// variables say where its spans go) and extra flags, and returns once it accepts
// connections; stop ends it as Ctrl-C does.
func StartServer(ctx context.Context, bin string, ns *netns.NS, addr netip.AddrPort, env []string, args ...string) (stop func(), err error) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"server", "--netns", ns.Path(), "--listen", addr.String()}, args...)...)
	cmd.Env, cmd.Stderr = env, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the demo server: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for wait.Err() == nil {
		if netns.Dial(wait, ns, "tcp", addr.Addr(), addr.Port(), func(net.Conn) error { return nil }) == nil {
			return stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("the demo server at %s did not start: %s", addr, bytes.TrimSpace(stderr.Bytes()))
}

// RunClient runs `demoapp client` from inside ns against url to completion, with env and
// extra flags, and returns its report (written to report).
func RunClient(ctx context.Context, bin string, ns *netns.NS, url, report string, env []string, args ...string) ([]Request, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"client", "--netns", ns.Path(), "--url", url, "--report", report}, args...)...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("demo client: %w\n%s", err, out)
	}
	return ReadReport(report)
}
