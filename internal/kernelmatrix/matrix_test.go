//go:build vmtest

package kernelmatrix

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/vm"
)

// Tier 3 of DESIGN.md: each Debian kernel boots under qemu; inside, the scenario runs
// pktspan once with --backend fentry and once with --backend kprobe; the spans come
// back as JSON lines and are checked here. `make vmtest` (part of `make test`) runs it.
func TestFunctionBackendsOnDebianKernels(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the kernel matrix boots VMs whose payload loads eBPF probes: run it as root (sudo make vmtest)")
	}
	bins := t.TempDir()
	build := func(name, pkg string) string {
		out := filepath.Join(bins, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, b)
		}
		return out
	}
	pktspan := build("pktspan", "github.com/pktspan/pktspan/cmd/pktspan")
	scenario := build("scenario", "github.com/pktspan/pktspan/internal/kernelmatrix/scenario")

	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			k, err := vm.Ensure(ctx, series)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			res, err := vm.Run(ctx, k, vm.RunOptions{
				Files: map[string]string{"/bin/pktspan": pktspan, "/bin/scenario": scenario},
				Script: `set -x
for b in fentry kprobe; do
	scenario --pktspan /bin/pktspan --backend $b --out "$OUT/$b" || echo "scenario $b failed: $?"
done`,
				OutDir:   out,
				Timeout:  8 * time.Minute,
				MemoryMB: 1024,
			})
			if err != nil {
				t.Fatalf("booting %s (%s): %v", series, k.Release, err)
			}
			t.Logf("%s (%s): booted in %s, payload done in %s", series, k.Release, res.BootTime.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
			if strings.Contains(res.Console, "failed:") {
				t.Errorf("the scenario failed inside the VM:\n%s", res.Output)
			}
			for _, backend := range []string{"fentry", "kprobe"} {
				t.Run(backend, func(t *testing.T) {
					checkRun(t, filepath.Join(out, backend), backend)
				})
			}
		})
	}
}

func checkRun(t *testing.T, dir, backend string) {
	log, err := os.ReadFile(filepath.Join(dir, "pktspan.log"))
	if err != nil {
		t.Fatalf("no pktspan log from the VM: %v", err)
	}
	summary := string(log)
	t.Logf("pktspan start-up (%s):\n%s", backend, startup(summary))
	via := map[string]string{"fentry": "fentry/fexit", "kprobe": "kprobe/kretprobe"}[backend]
	for _, fn := range []string{"ip_rcv_core", "nf_hook_slow", "tcp_v4_rcv", "ip_local_deliver"} {
		if !attachedVia(summary, fn, via) {
			t.Errorf("%s was not attached with %s; log:\n%s", fn, via, summary)
		}
	}
	f, err := os.Open(filepath.Join(dir, "spans.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spans, err := ReadSpans(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckFunctionSpans(spans, ReplyPort, DroppedPort, ClosedPort) {
		t.Error(err)
	}
	for _, p := range spans.Packets(ReplyPort) {
		if spans.Find(p, "tcp_v4_rcv") != nil && p.Attr("destination.port") == "8080" {
			t.Logf("one packet's span tree (%s):\n%s", backend, spans.Tree(p))
			break
		}
	}
	for _, p := range spans.Packets(DroppedPort) {
		if p.Status == "error" {
			t.Logf("the nft-dropped packet (%s):\n%s", backend, spans.Tree(p))
			break
		}
	}
}

// startup extracts the "probes attached" summary lines from pktspan's log.
func startup(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if i := strings.Index(line, `msg="probes attached\n`); i >= 0 {
			return strings.ReplaceAll(line[i:], `\n`, "\n")
		}
	}
	return log
}

func attachedVia(log, fn, via string) bool {
	for _, line := range strings.Split(startup(log), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == fn && f[1] == via {
			return true
		}
	}
	return false
}
