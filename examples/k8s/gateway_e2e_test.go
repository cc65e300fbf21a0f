//go:build e2e

package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	// The collector's OTLP exporters compress with gzip by default.
	_ "google.golang.org/grpc/encoding/gzip"
	"sigs.k8s.io/yaml"
)

// otelcolBinary is the collector `make otelcol` builds (tools/otelcol): the components
// and versions of the official image gateway.yaml names.
func otelcolBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PKTSPANTEST_OTELCOL_BIN")
	if bin == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "pktspan", "otelcol")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the collector binary: %v (build it with `make otelcol`)", err)
	}
	return bin
}

func TestGatewayConfigurationIsValidAsShipped(t *testing.T) {
	bin := otelcolBinary(t)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(gatewayFile(t, load(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "validate", "--config", path).CombinedOutput(); err != nil {
		t.Fatalf("otelcol validate: %v\n%s", err, out)
	}
}

// TestGatewayKeepsErrorTracesWholeAcrossReplicasAndDropsHealthyOnes runs two replicas of
// the gateway, as in the cluster, and sends each trace's spans half to one replica and
// half to the other, as two nodes' pktspans do with the flow they both saw. A trace with
// an error span must reach the backend whole, through one replica; a healthy one must not
// reach it at all.
func TestGatewayKeepsErrorTracesWholeAcrossReplicasAndDropsHealthyOnes(t *testing.T) {
	bin := otelcolBinary(t)
	shipped := gatewayFile(t, load(t))

	replicas := make([]*replica, 2)
	for i := range replicas {
		replicas[i] = &replica{name: fmt.Sprintf("replica%d", i), backend: startBackend(t), ports: freePorts(t, 4)}
	}
	var peers []string
	for _, r := range replicas {
		peers = append(peers, r.addr(portSampling))
	}
	for _, r := range replicas {
		r.start(t, bin, r.config(t, shipped, peers))
	}
	for _, r := range replicas {
		r.waitHealthy(t)
	}

	// Healthy traces first: their decisions come first, so once the error traces are
	// out, the healthy ones are decided too.
	const n = 4
	healthy, failed := newTraceIDs(n), newTraceIDs(n)
	for _, id := range healthy {
		replicas[0].send(t, span(id, "packet", false))
		replicas[1].send(t, span(id, "packet", false))
	}
	for _, id := range failed {
		replicas[0].send(t, span(id, "packet", true))
		replicas[1].send(t, span(id, "tcp exchange", false))
	}

	// decision_wait as shipped (10 s), plus the time to get there.
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range failed {
		for {
			a, b := replicas[0].backend.spans(id), replicas[1].backend.spans(id)
			if len(a) == 2 && len(b) == 0 || len(a) == 0 && len(b) == 2 {
				break
			}
			if len(a)+len(b) >= 2 || time.Now().After(deadline) {
				t.Fatalf("error trace %s: replica0's backend got %v, replica1's %v; want both spans at one of them\n%s",
					id, a, b, logs(replicas))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second)
	for _, id := range healthy {
		if a, b := replicas[0].backend.spans(id), replicas[1].backend.spans(id); len(a)+len(b) > 0 {
			t.Errorf("healthy trace %s was kept: %v %v", id, a, b)
		}
	}
}

// Indexes into replica.ports.
const (
	portOTLP = iota
	portOTLPHTTP
	portSampling
	portHealth
)

type replica struct {
	name    string
	backend *backend
	ports   []int
	log     syncBuffer
}

func (r *replica) addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", r.ports[port]) }

// config is the shipped configuration with this replica's addresses: in the cluster each
// replica has a pod of its own and DNS lists them; here they share the loopback, so every
// listener gets a free port, the load-balancing resolver a static list of the replicas'
// sampling receivers, and the backend exporter this replica's test backend. The pipelines,
// the sampling policy and its decision_wait are as shipped.
func (r *replica) config(t *testing.T, shipped string, peers []string) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(shipped), &cfg); err != nil {
		t.Fatal(err)
	}
	set(t, cfg, r.addr(portOTLP), "receivers", "otlp", "protocols", "grpc", "endpoint")
	set(t, cfg, r.addr(portOTLPHTTP), "receivers", "otlp", "protocols", "http", "endpoint")
	set(t, cfg, r.addr(portSampling), "receivers", "otlp/sampling", "protocols", "grpc", "endpoint")
	set(t, cfg, r.addr(portHealth), "extensions", "health_check", "endpoint")
	set(t, cfg, map[string]any{"static": map[string]any{"hostnames": peers}}, "exporters", "load_balancing", "resolver")
	set(t, cfg, r.backend.addr, "exporters", "otlp_grpc/backend", "endpoint")
	// The collector's own metrics would listen on one fixed port in both.
	set(t, cfg, map[string]any{"metrics": map[string]any{"level": "none"}}, "service", "telemetry")
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// set puts v at path in cfg; every map on the way but the last key must exist already, so
// a path the shipped configuration lacks fails rather than adding to it.
func set(t *testing.T, cfg map[string]any, v any, path ...string) {
	t.Helper()
	m := cfg
	for i, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("the gateway's configuration has no %v", path[:i+1])
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

func (r *replica) start(t *testing.T, bin, config string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), r.name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = &r.log, &r.log
	// A test binary killed by its timeout must not leave collectors behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func (r *replica) waitHealthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.addr(portHealth) + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became healthy: %v\n%s", r.name, err, r.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *replica) send(t *testing.T, s *tracepb.ResourceSpans) {
	t.Helper()
	conn, err := grpc.NewClient(r.addr(portOTLP), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{s}}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req); err != nil {
		t.Fatalf("sending to %s: %v\n%s", r.name, err, r.log.String())
	}
}

func logs(rs []*replica) string {
	var b bytes.Buffer
	for _, r := range rs {
		fmt.Fprintf(&b, "--- %s\n%s\n", r.name, r.log.String())
	}
	return b.String()
}

// span is one span of trace id from pktspan, an error with the drop's reason when failed.
func span(id []byte, name string, failed bool) *tracepb.ResourceSpans {
	sid := make([]byte, 8)
	rand.Read(sid)
	now := uint64(time.Now().UnixNano())
	s := &tracepb.Span{TraceId: id, SpanId: sid, Name: name, Kind: tracepb.Span_SPAN_KIND_INTERNAL,
		StartTimeUnixNano: now, EndTimeUnixNano: now + 1000}
	if failed {
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "NETFILTER_DROP"}
	}
	return &tracepb.ResourceSpans{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "pktspan"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{s}}},
	}
}

func newTraceIDs(n int) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = make([]byte, 16)
		rand.Read(ids[i])
	}
	return ids
}

// backend is an OTLP/gRPC receiver standing in for the tracing backend: it remembers the
// names of the spans it got, by trace ID.
type backend struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string
	mu   sync.Mutex
	got  map[string][]string
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), got: map[string][]string{}}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, b)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return b
}

func (b *backend) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				id := hex.EncodeToString(s.GetTraceId())
				b.got[id] = append(b.got[id], s.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (b *backend) spans(id []byte) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got[hex.EncodeToString(id)]...)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Held until all are chosen, so that the n differ.
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// syncBuffer is a bytes.Buffer a process's output goroutines and the test share.
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
