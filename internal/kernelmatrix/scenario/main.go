// Command scenario runs inside a test VM (see internal/vm): it rebuilds the foundation's
// end-to-end topology — two namespaces joined by veth, a TCP server, an nft rule dropping
// TCP to port 81, a closed UDP port — runs pktspan with one function backend writing
// JSON lines, makes the traffic, stops pktspan as Ctrl-C would, and leaves everything in
// an output directory for the host to check.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	km "github.com/pktspan/pktspan/internal/kernelmatrix"
	"github.com/pktspan/pktspan/internal/netns"
)

var (
	clientAddr = netip.MustParsePrefix("198.18.0.1/30")
	serverAddr = netip.MustParsePrefix("198.18.0.2/30")
)

func main() {
	bin := flag.String("pktspan", "/bin/pktspan", "pktspan binary")
	backend := flag.String("backend", "fentry", "function backend to run pktspan with")
	out := flag.String("out", "/out", "directory for spans.jsonl and pktspan.log")
	flag.Parse()
	if err := run(*bin, *backend, *out); err != nil {
		fmt.Fprintln(os.Stderr, "scenario:", err)
		os.Exit(1)
	}
}

func run(bin, backend, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	client, err := netns.New("client")
	if err != nil {
		return err
	}
	defer client.Close()
	server, err := netns.New("server")
	if err != nil {
		return err
	}
	defer server.Close()
	if _, _, err := netns.Link(client, server, clientAddr, serverAddr); err != nil {
		return err
	}
	rules := fmt.Sprintf("table inet pktspan_vm {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport %d drop\n }\n}\n", km.DroppedPort)
	if err := server.Nft(ctx, rules); err != nil {
		return err
	}
	srv, err := netns.TCPServe(server, serverAddr.Addr(), km.ReplyPort)
	if err != nil {
		return err
	}
	defer srv.Close()

	spans, err := os.Create(filepath.Join(out, "spans.jsonl"))
	if err != nil {
		return err
	}
	defer spans.Close()
	logf, err := os.Create(filepath.Join(out, "pktspan.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	ready := filepath.Join(out, "ready")
	cmd := exec.Command(bin, "--backend", backend, "--output", "json", "--ready-file", ready,
		"--filter-addr", serverAddr.Masked().String(), "--trace-close-grace", "500ms")
	cmd.Stdout, cmd.Stderr = spans, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting pktspan: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := waitReady(ready, exited); err != nil {
		return err
	}

	dst := serverAddr.Addr()
	if _, err := netns.TCPRequest(ctx, client, dst, km.ReplyPort, []byte("ping")); err != nil {
		return err
	}
	if err := netns.UDPSend(ctx, client, dst, km.ClosedPort, []byte("anyone?")); err != nil {
		return err
	}
	if err := netns.TCPConnectExpectTimeout(ctx, client, dst, km.DroppedPort, 1500*time.Millisecond); err != nil {
		return err
	}
	time.Sleep(time.Second)

	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("pktspan exited with %v (see pktspan.log)", err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return errors.New("pktspan did not stop within 60s of SIGINT")
	}
	return nil
}

func waitReady(ready string, exited <-chan error) error {
	deadline := time.After(90 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("pktspan exited before attaching: %v (see pktspan.log)", err)
		case <-deadline:
			return errors.New("pktspan did not attach within 90s")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
