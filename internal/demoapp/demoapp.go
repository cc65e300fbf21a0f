// Package demoapp builds examples/demoapp, the OpenTelemetry-instrumented HTTP client and
// server of the --correlate http tests, and reads the client's report.
package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
