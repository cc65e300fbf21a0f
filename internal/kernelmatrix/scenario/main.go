// Command scenario runs inside a test VM (see internal/vm): it builds the end-to-end
// tests' topology (netns.Lab: two namespaces, a TCP server, an nft drop, a closed UDP
// port), runs pktspan with one function backend writing
// JSON lines, makes the traffic, stops pktspan as Ctrl-C would, and leaves everything in
// an output directory for the host to check.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/internal/netns"
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

	lab, err := netns.NewLab(ctx)
	if err != nil {
		return err
	}
	defer lab.Close()

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
		"--filter-addr", netns.LabServer.Masked().String(), "--trace-close-grace", "500ms")
	cmd.Stdout, cmd.Stderr = spans, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting pktspan: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := waitReady(ready, exited); err != nil {
		return err
	}

	if err := lab.Traffic(ctx); err != nil {
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
