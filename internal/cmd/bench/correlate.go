package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pktspan/pktspan/internal/demoapp"
	"github.com/pktspan/pktspan/internal/netns"
)

// correlateCase measures what --correlate http costs: its cgroup-skb programs look at
// every TCP segment of every socket, and each HTTP request's first bytes go to user
// space. Plain TCP (iperf3, no HTTP) shows the per-segment cost; HTTP requests (the
// demo apps over kept-alive connections) show the per-request cost. Each is measured
// with no pktspan, with pktspan without correlation and with it (the same filter,
// matching nothing, so only correlation differs), in that order and then without
// pktspan again.
func correlateCase(r *report, o options) error {
	d := 10 * time.Second
	if o.short {
		d = 2 * time.Second
	}
	r.section(fmt.Sprintf("6. --correlate http: throughput with and without it, %s per case, ratio to pktspan without it", d))
	if why := kernelSkip(o); why != "" {
		r.add("  skipped: %s", why)
		return nil
	}
	hosts, server, stopIperf, err := iperfHosts()
	if err != nil {
		return err
	}
	defer stopIperf()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "pktspan-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	demo, err := demoapp.Build(ctx, dir)
	if err != nil {
		return err
	}
	quiet := append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	stop, err := demoapp.StartServer(ctx, demo, hosts.Server, netip.AddrPortFrom(netns.LabServer.Addr(), netns.DemoPort), quiet)
	if err != nil {
		return err
	}
	defer stop()
	url := "http://" + net.JoinHostPort(server, strconv.Itoa(netns.DemoPort)) + "/bytes?n=1000"

	type load struct {
		name, unit string
		run        func() (float64, error)
	}
	loads := []load{
		{"plain TCP (iperf3)", "Gbit/s", func() (float64, error) {
			bps, err := runIperf(hosts.Client, server, d)
			return bps / 1e9, err
		}},
		{"HTTP GETs, 8 kept-alive connections (demo apps)", "req/s", func() (float64, error) {
			return runHTTPLoad(ctx, hosts.Client, demo, url, filepath.Join(dir, "report.jsonl"), quiet, d)
		}},
	}
	without := []string{"--filter-port", "9", "--output", "none"}
	with := append([]string{"--correlate", "http"}, without...)
	for _, l := range loads {
		base1, err := l.run()
		if err != nil {
			return err
		}
		var off, on float64
		if _, err := withPktspan(o.pktspan, without, func() (err error) { off, err = l.run(); return err }); err != nil {
			return err
		}
		tr, err := withPktspan(o.pktspan, with, func() (err error) { on, err = l.run(); return err })
		if err != nil {
			return err
		}
		base2, err := l.run()
		if err != nil {
			return err
		}
		base := (base1 + base2) / 2
		r.add("  %s: no pktspan %.2f %s (first and last %.0f%% apart); pktspan %.3f of that; with --correlate http %.3f of pktspan without it (request_segments=%s requests_valid=%s)",
			l.name, base, l.unit, 100*abs(base1-base2)/base, off/base, on/off, tr.finalStats["request_segments"], tr.finalStats["requests_valid"])
	}
	return nil
}

// runHTTPLoad runs the demo client in ns for d, 8 goroutines over 8 kept-alive
// connections, and returns its successful requests per second.
func runHTTPLoad(ctx context.Context, ns *netns.NS, demo, url, report string, env []string, d time.Duration) (float64, error) {
	cmd := exec.CommandContext(ctx, demo, "client", "--netns", ns.Path(), "--url", url, "--requests", "0",
		"--concurrency", "8", "--connections", "8", "--report", report)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("demo client: %w", err)
	}
	time.Sleep(d)
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("demo client: %w: %s", err, stderr.String())
	}
	f, err := os.Open(report)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ok := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"status":200`)) {
			ok++
		}
	}
	return float64(ok) / d.Seconds(), sc.Err()
}
