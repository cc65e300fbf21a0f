//go:build compose

package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/internal/jaeger"
)

// services are the stack's services that run under the test override (Tempo and Grafana
// are left out by their profile).
var services = []string{"client", "jaeger", "otelcol", "pktspan", "router", "server"}

// repoRoot is the repository's root, where docker-compose.yaml is.
func repoRoot() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..")
}

// binary is the binary at $env, else at name in pktspan's cache directory, as the
// Makefile builds them; a missing one fails the test with the target that builds it.
func binary(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		p = filepath.Join(dir, "pktspan", name)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v (build it with `make %s`)", err, name)
	}
	return p
}

// tools are the Compose commands the tests run, each named by its version.
func tools(t *testing.T, ctx context.Context) map[string][]string {
	t.Helper()
	list, err := Tools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string][]string{}
	for _, tool := range list {
		v, err := Version(ctx, tool)
		if err != nil {
			t.Fatal(err)
		}
		named["compose-"+v] = tool
	}
	return named
}

func TestComposeFilesAreValidForUsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for name, tool := range tools(t, ctx) {
		// The file users run, alone: every service, Tempo and Grafana included.
		p := &Project{Tool: tool, Dir: repoRoot(), Name: "pktspan-config-check", Files: []string{"docker-compose.yaml"}}
		out, err := p.Run(ctx, "config", "--services")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		want := append(slices.Clone(services), "grafana", "tempo")
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: services %v, want %v", name, got, want)
		}
	}
	// Both collector configurations, checked by the collector the stand-in runs.
	otelcol := binary(t, "PKTSPANTEST_OTELCOL_BIN", "otelcol")
	for _, f := range []string{"otelcol.yaml", "otelcol.test.yaml"} {
		cmd := exec.CommandContext(ctx, otelcol, "validate", "--config", filepath.Join(repoRoot(), "examples", "compose", f))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("otelcol validate %s: %v\n%s", f, err, out)
		}
	}
}

// TestComposeStackPutsKernelDropsIntoTheDemoAppsTraces builds and runs the demo stack as
// `docker compose up --build` does (with the test override), reads the demo client's
// traces from Jaeger, and finds there what the README promises: under a request's client
// span, the server's span and pktspan's exchange with its packet spans, and a request
// segment the router dropped, as an error packet with the kernel's reason. Then `down -v`
// must leave nothing of the project behind.
func TestComposeStackPutsKernelDropsIntoTheDemoAppsTraces(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Minute)
	defer cancel()
	im := Images{
		Jaeger:  binary(t, "PKTSPANTEST_JAEGER_BIN", "jaeger"),
		Otelcol: binary(t, "PKTSPANTEST_OTELCOL_BIN", "otelcol"),
		Log:     testLogger(t),
	}
	start := time.Now()
	if err := im.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stand-in images ready in %v", time.Since(start).Round(time.Second))
	privileged := privilegedWorks(ctx)
	for name, tool := range tools(t, ctx) {
		t.Run(name, func(t *testing.T) { runStack(t, ctx, tool, im, privileged) })
	}
}

// runStack is one run of the stack with one Compose command.
func runStack(t *testing.T, ctx context.Context, tool []string, im Images, privileged bool) {
	subnets, err := SubnetEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	p := &Project{
		Tool:  tool,
		Dir:   repoRoot(),
		Name:  "pktspan-test-" + hex.EncodeToString(suffix),
		Files: []string{"docker-compose.yaml", "examples/compose/docker-compose.test.yaml"},
		// JAEGER_PORT set and empty: Docker chooses the host's port of Jaeger's UI.
		Env: append(append(im.Env(), subnets...), "JAEGER_PORT="),
	}
	if !privileged {
		p.Files = append(p.Files, "examples/compose/docker-compose.unprivileged.yaml")
		t.Logf("this Docker Engine cannot start privileged containers: pktspan runs with the capabilities of %s", p.Files[len(p.Files)-1])
	}
	t.Cleanup(func() { down(t, p) })

	start := time.Now()
	// --force-rm: a step that fails leaves no container behind either.
	if _, err := p.Run(ctx, "build", "--force-rm"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s build: %v", strings.Join(tool, " "), time.Since(start).Round(time.Second))
	since := time.Now()
	if _, err := p.Run(ctx, "up", "-d", "--no-build"); err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithTimeout(ctx, 3*time.Minute)
	containers, err := p.WaitHealthy(hctx, services...)
	hcancel()
	if err != nil {
		t.Fatalf("%v\n%s", err, describe(containers))
	}
	t.Logf("up and healthy in %v:\n%s", time.Since(since).Round(time.Second), describe(containers))

	nets, err := p.Subnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, pfxs := range nets {
		if len(pfxs) == 0 {
			t.Errorf("network %s has no subnet of the test's", name)
		}
		for _, pfx := range pfxs {
			if !TestNets.Contains(pfx.Addr()) || pfx.Bits() < TestNets.Bits() {
				t.Errorf("network %s is on %s, outside %s", name, pfx, TestNets)
			}
		}
	}

	ui, err := p.Port(ctx, "jaeger", 16686)
	if err != nil {
		t.Fatal(err)
	}
	if !ui.Addr().IsLoopback() {
		t.Errorf("Jaeger's UI is published on %s, not on the loopback", ui)
	}
	j := jaeger.Connect("http://" + ui.String())
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
	// Jaeger's container runs before its query service answers; the waits below give up
	// on the first refused connection.
	if err := waitHTTP(wctx, "http://"+ui.String()+"/api/v3/services"); err != nil {
		wcancel()
		t.Fatal(err)
	}
	var found *demoTrace
	td, err := j.WaitForSpans(wctx, "demo-client", since, func(td *tracepb.TracesData) bool {
		found = findDemoTrace(td)
		return found != nil
	})
	wcancel()
	if err != nil {
		t.Fatalf("no demo-client trace with the server's span, an exchange and a dropped request: %v\n%s", err, summarize(td))
	}
	t.Logf("trace %s: %s", found.id, found)

	want := map[string]string{} // service → container name
	for _, c := range containers {
		if c.Service == "client" || c.Service == "server" {
			want[c.Service] = c.Name
		}
	}
	seen := map[string]bool{}
	for _, pk := range found.packets {
		name, ok := pk.Attr("container.name")
		if !ok {
			t.Errorf("packet span %s has no container.name", pk.SpanIDHex())
		}
		seen[name] = true
	}
	for svc, name := range want {
		if !seen[name] {
			t.Errorf("no packet span of trace %s carries container.name %q (the %s); seen %v", found.id, name, svc, seen)
		}
	}
}

// waitHTTP waits until url answers 200 OK.
func waitHTTP(ctx context.Context, url string) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// privilegedWorks says whether the engine starts a privileged container.
func privilegedWorks(ctx context.Context) bool {
	return exec.CommandContext(ctx, "docker", "run", "--rm", "--privileged", "--network", "none", DebianImage, "true").Run() == nil
}

// down stops the project as a user's `docker compose down -v` does, after printing its
// logs when the test failed, and checks that nothing of it is left.
func down(t *testing.T, p *Project) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if t.Failed() {
		if out, err := p.Run(ctx, "logs", "--no-color", "--tail=60"); err == nil {
			t.Logf("logs:\n%s", out)
		}
	}
	if _, err := p.Run(ctx, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		t.Error(err)
	}
	left, err := p.Leftovers(ctx)
	if err != nil {
		t.Error(err)
	}
	if len(left) > 0 {
		t.Errorf("left behind by down -v: %v", left)
	}
}

// demoTrace is one demo client request's trace with what pktspan put into it.
type demoTrace struct {
	id                       string
	client, server, exchange jaeger.Span
	packets                  []jaeger.Span // under the trace's exchanges
	drop                     jaeger.Span
}

func (d *demoTrace) String() string {
	reason, _ := d.drop.Attr("pktspan.drop.reason")
	return fmt.Sprintf("client span %s, server span %s, exchange %s, %d packet spans, drop %s (%s)",
		d.client.SpanIDHex(), d.server.SpanIDHex(), d.exchange.SpanIDHex(), len(d.packets), d.drop.SpanIDHex(), reason)
}

// findDemoTrace returns the first trace in td holding a request's client span with the
// server's span and pktspan's exchange under it, packet spans under the exchange, and one
// of them dropped by netfilter; nil when no trace has all of that yet.
func findDemoTrace(td *tracepb.TracesData) *demoTrace {
	byTrace := map[string][]jaeger.Span{}
	var order []string
	for _, s := range jaeger.Spans(td) {
		id := s.TraceIDHex()
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], s)
	}
	for _, id := range order {
		if d := demoIn(id, byTrace[id]); d != nil {
			return d
		}
	}
	return nil
}

func demoIn(id string, spans []jaeger.Span) *demoTrace {
	service := func(s jaeger.Span) string { v, _ := s.ResourceAttr("service.name"); return v }
	childOf := func(parent jaeger.Span) func(jaeger.Span) bool {
		return func(s jaeger.Span) bool { return bytes.Equal(s.GetParentSpanId(), parent.GetSpanId()) }
	}
	ci := slices.IndexFunc(spans, func(s jaeger.Span) bool {
		return service(s) == "demo-client" && s.GetKind() == tracepb.Span_SPAN_KIND_CLIENT
	})
	if ci < 0 {
		return nil
	}
	d := &demoTrace{id: id, client: spans[ci]}
	si := slices.IndexFunc(spans, func(s jaeger.Span) bool { return service(s) == "demo-server" && childOf(d.client)(s) })
	if si < 0 {
		return nil
	}
	d.server = spans[si]
	for _, x := range spans {
		if service(x) != "pktspan" || x.GetName() != "tcp exchange" || !childOf(d.client)(x) {
			continue
		}
		for _, pk := range spans {
			if pk.GetName() != "packet" || !childOf(x)(pk) {
				continue
			}
			d.packets = append(d.packets, pk)
			reason, _ := pk.Attr("pktspan.drop.reason")
			if pk.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR && pk.GetStatus().GetMessage() == "NETFILTER_DROP" &&
				reason == "NETFILTER_DROP" {
				d.exchange, d.drop = x, pk
			}
		}
	}
	if d.drop.Span == nil {
		return nil
	}
	return d
}

// summarize says what the traces hold, for a failure: spans by service and name, and
// the drops.
func summarize(td *tracepb.TracesData) string {
	counts := map[string]int{}
	traces := map[string]bool{}
	for _, s := range jaeger.Spans(td) {
		svc, _ := s.ResourceAttr("service.name")
		key := svc + " " + s.GetName()
		if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			key += " ERROR " + s.GetStatus().GetMessage()
		}
		counts[key]++
		traces[s.TraceIDHex()] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d traces:\n", len(traces))
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "  %5d %s\n", counts[k], k)
	}
	return b.String()
}

func describe(cs []Container) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	return b.String()
}

// testLogger logs into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
