// Package jaeger runs a private Jaeger v2 (all-in-one, in-memory storage) for tests and
// reads traces back through its api_v3 HTTP query API.
//
// The binary is built from the pinned module in tools/jaeger by `make jaeger` into
// DefaultBinary(); every listener of the instance is bound to 127.0.0.1 on a free port,
// so several instances (and a developer's own Jaeger) can run side by side.
package jaeger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBinary means the Jaeger binary is not where it was looked for.
var ErrNoBinary = errors.New("jaeger binary not found (build it with `make jaeger`)")

// BinaryEnv names the environment variable that overrides the binary's location.
const BinaryEnv = "PKTSPANTEST_JAEGER_BIN"

// DefaultBinary is where `make jaeger` puts the binary and where Start looks for it
// unless told otherwise: $PKTSPANTEST_JAEGER_BIN, else <user cache dir>/pktspan/jaeger
// ($XDG_CACHE_HOME or ~/.cache).
func DefaultBinary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the cache directory (set %s): %w", BinaryEnv, err)
	}
	return filepath.Join(dir, "pktspan", "jaeger"), nil
}

// Option changes how Start runs Jaeger.
type Option func(*options)

type options struct {
	binary       string
	startTimeout time.Duration
	otlp         string // the OTLP receiver's host:port; empty: a free loopback port
}

// WithBinary runs the Jaeger binary at path instead of DefaultBinary().
func WithBinary(path string) Option { return func(o *options) { o.binary = path } }

// WithOTLPEndpoint binds the OTLP/gRPC receiver to addr (host:port) instead of a free
// port: a Jaeger started again where a stopped one listened is, to its clients, the
// same collector come back.
func WithOTLPEndpoint(addr string) Option { return func(o *options) { o.otlp = addr } }

// WithStartTimeout bounds how long Start waits for Jaeger to answer (default 60s: a cold
// start on a loaded 2-core machine takes a few seconds).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// Jaeger is one running Jaeger process.
type Jaeger struct {
	dir      string
	logPath  string
	otlp     string
	queryURL string
	client   *http.Client

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returns

	stopOnce sync.Once
	stopErr  error
}

// startAttempts covers the window between choosing a free port and Jaeger binding it,
// in which another process may take the port.
const startAttempts = 3

const (
	// maxTraces is how many traces the in-memory store keeps.
	maxTraces = 100000
	// searchDepth is how many traces one search returns at most: Jaeger's memory store
	// refuses a depth above its max_traces.
	searchDepth = 10000
)

// Start runs a Jaeger with in-memory storage and waits until both its OTLP/gRPC receiver
// and its query API answer. ctx bounds the start only, not the process's life: call Stop.
func Start(ctx context.Context, opts ...Option) (*Jaeger, error) {
	o := options{startTimeout: 60 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.binary == "" {
		bin, err := DefaultBinary()
		if err != nil {
			return nil, fmt.Errorf("starting jaeger: %w", err)
		}
		o.binary = bin
	}
	if _, err := os.Stat(o.binary); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("starting jaeger: %w: no file %s", ErrNoBinary, o.binary)
		}
		return nil, fmt.Errorf("starting jaeger: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	var err error
	for range startAttempts {
		var j *Jaeger
		j, err = start(ctx, o)
		if err == nil {
			return j, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("starting jaeger: %w", err)
}

var errPortTaken = errors.New("a port was taken before jaeger could bind it")

func start(ctx context.Context, o options) (*Jaeger, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	otlp := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if o.otlp != "" {
		otlp = o.otlp
	}
	dir, err := os.MkdirTemp("", "pktspan-jaeger-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	j := &Jaeger{
		dir:      dir,
		logPath:  filepath.Join(dir, "jaeger.log"),
		otlp:     otlp,
		queryURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		client:   &http.Client{Timeout: 10 * time.Second},
		exited:   make(chan struct{}),
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := config(j.otlp, strings.TrimPrefix(j.queryURL, "http://"), fmt.Sprintf("127.0.0.1:%d", ports[2]))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("writing config: %w", err)
	}
	logFile, err := os.Create(j.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating log file: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	j.cmd = exec.Command(o.binary, "--config", cfgPath)
	j.cmd.Dir = dir
	j.cmd.Stdout = logFile
	j.cmd.Stderr = logFile
	// A test binary killed by its timeout must not leave Jaeger behind.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := j.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("running %s: %w", o.binary, err)
	}
	go func() {
		_ = j.cmd.Wait()
		close(j.exited)
	}()

	if err := j.waitReady(ctx); err != nil {
		logs := j.Log()
		_ = j.Stop()
		err = fmt.Errorf("%w; jaeger log:\n%s", err, logs)
		if strings.Contains(logs, "address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, err
	}
	return j, nil
}

// config is the whole Jaeger configuration: the OTLP/gRPC receiver straight into memory
// storage (no batch processor, so spans are queryable as soon as they are received) and
// the query extension. Nothing else listens: no health check, zpages, expvar, remote
// sampling or Prometheus telemetry endpoint, and the query's self-tracing is off so it
// never exports to a default localhost:4317.
func config(otlp, queryHTTP, queryGRPC string) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: %d
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: %q
    grpc:
      endpoint: %q

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, maxTraces, queryHTTP, queryGRPC, otlp)
}

func (j *Jaeger) waitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if j.ready(ctx) {
			return nil
		}
		select {
		case <-j.exited:
			return fmt.Errorf("jaeger exited during start: %v", j.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("waiting for jaeger to answer: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// ready reports whether the query API answers and the OTLP port accepts connections:
// extensions start before receivers, so the first alone is not enough.
func (j *Jaeger) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.queryURL+"/api/v3/services", nil)
	if err != nil {
		return false
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", j.otlp)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		// Held open until all are chosen so the n ports differ.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Connect is a query client for a Jaeger this package did not start (one in a container,
// say) whose query service answers at queryURL: Traces, Trace and the waits work, Stop
// does nothing.
func Connect(queryURL string) *Jaeger {
	return &Jaeger{queryURL: queryURL, client: &http.Client{Timeout: 10 * time.Second}}
}

// OTLPEndpoint is the OTLP/gRPC receiver's host:port (plaintext).
func (j *Jaeger) OTLPEndpoint() string { return j.otlp }

// QueryURL is the base URL of the query service (UI and /api/v3).
func (j *Jaeger) QueryURL() string { return j.queryURL }

// Log returns what Jaeger has logged so far, for test failure messages.
func (j *Jaeger) Log() string {
	b, err := os.ReadFile(j.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", j.logPath, err)
	}
	return string(bytes.TrimSpace(b))
}

// Stop terminates Jaeger (SIGTERM, then SIGKILL after 5s) and removes its temp dir.
// It is safe to call more than once, and after Kill.
func (j *Jaeger) Stop() error { return j.stop(syscall.SIGTERM) }

// Kill ends Jaeger with SIGKILL, as a crash would: no graceful close of its
// connections, its stored spans gone. It removes the temp dir as Stop does.
func (j *Jaeger) Kill() error { return j.stop(syscall.SIGKILL) }

func (j *Jaeger) stop(sig syscall.Signal) error {
	j.stopOnce.Do(func() {
		if j.cmd == nil { // Connect's
			return
		}
		if j.cmd.Process != nil {
			_ = j.cmd.Process.Signal(sig)
			select {
			case <-j.exited:
			case <-time.After(5 * time.Second):
				_ = j.cmd.Process.Kill()
				<-j.exited
			}
		}
		if err := os.RemoveAll(j.dir); err != nil {
			j.stopErr = fmt.Errorf("stopping jaeger: %w", err)
		}
	})
	return j.stopErr
}
