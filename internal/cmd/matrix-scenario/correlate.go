package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pktspan/pktspan/internal/demoapp"
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
		stop, err := demoapp.StartServer(ctx, demo, lab.Server, netip.AddrPortFrom(netns.LabServer.Addr(), port), demoEnv)
		if err != nil {
			return err
		}
		defer stop()
	}
	client := func(url, report string, args ...string) error {
		_, err := demoapp.RunClient(ctx, demo, lab.Client, url, filepath.Join(out, report), demoEnv, args...)
		return err
	}
	args := []string{"--backend", backend, "--correlate", "http", "--correlate-linger", "300ms",
		"--filter-port", fmt.Sprintf("%d,%d", netns.DemoPort, netns.LossyPort)}
	return withPktspan(ctx, bin, out, args, func() error {
		return errors.Join(
			client(fmt.Sprintf("http://%s/bytes?n=20000", net.JoinHostPort(srv, strconv.Itoa(netns.DemoPort))),
				"report-happy.jsonl", "--requests", "3", "--connections", "1"),
			client(fmt.Sprintf("http://%s/bytes?n=200000", net.JoinHostPort(srv, strconv.Itoa(netns.LossyPort))),
				"report-lossy.jsonl"),
		)
	})
}

// demoEnv keeps the apps' spans in the apps: there is no collector in the VM.
var demoEnv = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
