//go:build e2e

package bpfstats

import (
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
