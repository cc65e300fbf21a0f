//go:build e2e

package bpfstats

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// During counts fn's calls alone: the bench's throughput runs, outside it, must not pay
// the statistics' two clock reads a call.
func TestDuringCountsTheCallsWithinAndNoneAfter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads a BPF program: run it as root (make e2e)")
	}
	if on, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err != nil || strings.TrimSpace(string(on)) != "0" {
		t.Skipf("kernel.bpf_stats_enabled is %q (%v): another holder has the statistics on", on, err)
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := make([]byte, 64)
	run := func() error { _, _, err := p.Benchmark(in, 100, nil); return err }
	count := func() uint64 {
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.RunCount
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d calls counted before During", n)
	}
	if err := During(run); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 100 {
		t.Errorf("%d calls counted within During, want 100", n)
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 100 {
		t.Errorf("%d calls counted after During, want still 100", n)
	}
}

// The bench's floor and references load on this kernel and count the calls and run time
// of traffic through the hooks.
func TestFloorAndReferencesCountLoopbackTraffic(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads BPF programs: run it as root (make e2e)")
	}
	if on, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err != nil || strings.TrimSpace(string(on)) != "0" {
		t.Skipf("kernel.bpf_stats_enabled is %q (%v): another holder has the statistics on", on, err)
	}
	hooks := []string{"netif_receive_skb", "net_dev_queue", "net_dev_xmit"}
	for name, load := range map[string]func([]string) (*Set, error){"floor": LoadFloor, "reading": LoadReading, "clock": LoadClock} {
		t.Run(name, func(t *testing.T) {
			w, err := With(load, hooks, func() error { return During(exchange) })
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hooks {
				if c := w[h]; c.Count == 0 || c.Runtime <= 0 {
					t.Errorf("%s: %d calls in %v over a loopback exchange", h, c.Count, c.Runtime)
				}
			}
		})
	}
}

// exchange sends 64 KiB over loopback TCP and reads them back.
func exchange() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf)
	return err
}
