package pktspanproc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fake is a stand-in for pktspan: it writes its --ready-file unless told not to, exits 0
// on SIGINT and ignores SIGTERM. Its traps are set before it says it is ready, as
// pktspan's signal handling is, so a signal sent right after Start meets them.
const fake = `#!/bin/sh
for a; do
	[ "$prev" = --ready-file ] && ready=$a
	prev=$a
done
[ "$1" = exit ] && exit 3
trap 'exit 0' INT
trap '' TERM
[ "$1" = hang ] || touch "$ready"
while :; do sleep 0.05; done
`

func fakeBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pktspan")
	if err := os.WriteFile(bin, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestStartWaitsUntilReadyAndStopIsIdempotent(t *testing.T) {
	bin := fakeBin(t)
	p, err := Start(t.Context(), exec.Command(bin))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
		t.Fatal("exited while running")
	default:
	}
	if err := p.Stop(os.Interrupt, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Stop(os.Interrupt, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartFailsWhenPktspanExitsOrNeverAttaches(t *testing.T) {
	bin := fakeBin(t)
	if _, err := Start(t.Context(), exec.Command(bin, "exit")); err == nil || !strings.Contains(err.Error(), "exited before attaching: exit status 3") {
		t.Errorf("a pktspan that exits: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := Start(ctx, exec.Command(bin, "hang")); err == nil || !strings.Contains(err.Error(), "did not attach") {
		t.Errorf("a pktspan that never attaches: %v", err)
	}
}

func TestStopKillsAPktspanThatIgnoresTheSignal(t *testing.T) {
	bin := fakeBin(t)
	p, err := Start(t.Context(), exec.Command(bin))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(syscall.SIGTERM, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not stop within") {
		t.Errorf("Stop of a pktspan that ignores the signal: %v", err)
	}
}
