package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pktspan/pktspan/internal/netns"
)

// runCorrelate runs pktspan with --correlate http while the demo client makes requests
// of the demo server across the lab: three over one kept-alive connection, and one whose
// reply loses a segment that the server sends again (netns.LossyRules). The apps export
// nothing: the client's report names the trace and client span of each request, which
// the checks find the exchanges under. Reports go to out/report-happy.jsonl and
// out/report-lossy.jsonl.
func runCorrelate(ctx context.Context, lab *netns.Lab, bin, backend, demo, out string) error {
	if err := lab.Client.Nft(ctx, netns.LossyRules(netns.LossyPort)); err != nil {
		return err
	}
	srv := netns.LabServer.Addr().String()
	for _, port := range []uint16{netns.DemoPort, netns.LossyPort} {
		stop, err := demoServer(ctx, lab.Server, demo, netip.AddrPortFrom(netns.LabServer.Addr(), port))
		if err != nil {
			return err
		}
		defer stop()
	}
	args := []string{"--backend", backend, "--correlate", "http", "--correlate-linger", "300ms",
		"--filter-port", fmt.Sprintf("%d,%d", netns.DemoPort, netns.LossyPort)}
	return withPktspan(ctx, bin, out, args, func() error {
		return errors.Join(
			demoClient(ctx, lab.Client, demo, fmt.Sprintf("http://%s/bytes?n=20000", net.JoinHostPort(srv, strconv.Itoa(netns.DemoPort))),
				filepath.Join(out, "report-happy.jsonl"), "--requests", "3", "--connections", "1"),
			demoClient(ctx, lab.Client, demo, fmt.Sprintf("http://%s/bytes?n=200000", net.JoinHostPort(srv, strconv.Itoa(netns.LossyPort))),
				filepath.Join(out, "report-lossy.jsonl")),
		)
	})
}

// demoEnv keeps the apps' spans in the apps: there is no collector in the VM.
var demoEnv = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")

// demoServer starts the demo server listening at addr inside ns, and returns its stop.
func demoServer(ctx context.Context, ns *netns.NS, demo string, addr netip.AddrPort) (func(), error) {
	cmd := exec.Command(demo, "server", "--netns", ns.Path(), "--listen", addr.String())
	cmd.Env, cmd.Stderr = demoEnv, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the demo server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for wait.Err() == nil {
		if err := netns.Dial(wait, ns, "tcp", addr.Addr(), addr.Port(), func(net.Conn) error { return nil }); err == nil {
			return stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("the demo server at %s did not start", addr)
}

// demoClient runs the demo client from inside ns to completion.
func demoClient(ctx context.Context, ns *netns.NS, demo, url, report string, args ...string) error {
	cmd := exec.CommandContext(ctx, demo, append([]string{"client", "--netns", ns.Path(), "--url", url, "--report", report}, args...)...)
	cmd.Env = demoEnv
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("demo client: %w\n%s", err, b)
	}
	return nil
}
