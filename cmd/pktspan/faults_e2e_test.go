//go:build e2e

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/pktspanproc"
)

// Root whose capability set lacks CAP_BPF and CAP_PERFMON (a container's root) is told
// which capabilities it lacks, not that a memlock limit could not be set.
func TestRootWithoutCapBPFIsToldTheMissingCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root (sudo make e2e): the test drops capabilities from root")
	}
	bin := buildPktspan(t, t.TempDir())
	cmd := exec.Command("setpriv", "--bounding-set", "-bpf,-perfmon,-sys_admin", "--", bin, "--output", "none")
	cmd.Env = cleanEnviron()
	out, err := cmd.CombinedOutput()
	if got := exitCode(t, err); got != exitError {
		t.Errorf("exit code %d, want %d; output:\n%s", got, exitError, out)
	}
	if !strings.Contains(string(out), "pktspan runs as root without CAP_BPF and CAP_PERFMON") || strings.Contains(string(out), "memlock") {
		t.Errorf("output does not name the missing capabilities:\n%s", out)
	}
}

// blackHole accepts connections and never reads from them: a collector that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		for _, c := range held {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// loopbackTraffic connects to a loopback server over and over until ctx ends.
func loopbackTraffic(ctx context.Context, t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		lis.Close()
	}()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("pong"))
			c.Close()
		}
	}()
	go func() {
		for ctx.Err() == nil {
			if c, err := net.Dial("tcp", lis.Addr().String()); err == nil {
				_, _ = c.Read(make([]byte, 4))
				c.Close()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return lis.Addr().(*net.TCPAddr).Port
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	return statusKiB(t, pid, "VmRSS")
}

// statusKiB reads one of a process's memory figures in KiB (VmRSS, VmHWM) from
// /proc/<pid>/status.
func statusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no %s for %d", field, pid)
	return 0
}

// A collector that accepts and never reads blocks nothing: traffic goes on being
// traced, memory stays bounded by the queue, and the second SIGINT ends the stop, which
// would wait out its flush, within a second, saying what it abandoned.
func TestBlackHoleCollectorBlocksNothingAndASecondSIGINTExitsWithin1s(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root (sudo make e2e): pktspan loads eBPF probes")
	}
	bin := buildPktspan(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := loopbackTraffic(ctx, t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--output", "none", "--otlp-endpoint", blackHole(t), "--otlp-insecure",
		"--filter-addr", "127.0.0.1", "--filter-port", strconv.Itoa(port), "--stats-interval", "1s",
		"--otlp-queue-size", "8192", "--otlp-batch-delay", "100ms")
	cmd.Env = cleanEnviron()
	cmd.Stderr = &stderr
	startCtx, stopStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopStart()
	p, err := pktspanproc.Start(startCtx, cmd)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = p.Stop(os.Kill, time.Second) })
	pid := cmd.Process.Pid
	time.Sleep(4 * time.Second)
	early := rssKiB(t, pid)
	time.Sleep(4 * time.Second)
	late := rssKiB(t, pid)
	if late > 256<<10 || late > early+64<<10 {
		t.Errorf("RSS grew from %d KiB to %d KiB against a black hole", early, late)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // in the stop, waiting on the flush
	second := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.Exited():
	case <-time.After(time.Second):
		t.Fatalf("pktspan still running 1s after the second SIGINT:\n%s", stderr.String())
	}
	if d := time.Since(second); d > time.Second {
		t.Errorf("exit took %s after the second SIGINT", d)
	}
	out := stderr.String()
	if !strings.Contains(out, "pktspan: second interrupt: exiting at once, abandoning") || !strings.Contains(out, "spans not yet sent over OTLP") {
		t.Errorf("no line saying what the forced exit abandoned:\n%s", out)
	}
	if !strings.Contains(out, "otlp_dropped_queue_full=") {
		t.Errorf("stats lines do not count the drops by cause:\n%s", out)
	}
}
