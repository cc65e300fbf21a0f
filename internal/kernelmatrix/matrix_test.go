//go:build vmtest

package kernelmatrix

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/internal/demoapp"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/vm"
)

// Tier 3 of docs/DESIGN.md: each Debian kernel boots under qemu; inside, the scenario runs
// pktspan with --backend fentry and with --backend kprobe, each once as it is and once
// with --drops-only, then once following one VLAN; the spans come back as JSON lines
// and are checked here. `make vmtest` (part of `make test`) runs it.
func TestFunctionBackendsOnDebianKernels(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the kernel matrix boots VMs whose payload loads eBPF probes: run it as root (sudo make vmtest)")
	}
	bins := t.TempDir()
	// The VM has no libc: everything static. pktspan and the collector link libpcap
	// (cgo), statically, C library included; the rest is built without cgo.
	build := func(name, pkg string, test bool) string {
		out := filepath.Join(bins, name)
		ldflags := "-extldflags '-static -Wl,--no-warnings'"
		cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, pkg)
		if test {
			cmd = exec.Command("go", "test", "-c", "-ldflags", ldflags, "-o", out, pkg)
		}
		if !strings.HasSuffix(pkg, "/cmd/pktspan") && !strings.HasSuffix(pkg, "/collector") {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, b)
		}
		return out
	}
	pktspan := build("pktspan", "github.com/pktspan/pktspan/cmd/pktspan", false)
	scenario := build("scenario", "github.com/pktspan/pktspan/internal/cmd/matrix-scenario", false)
	// The collector's BTF tests, run where conntrack is a loaded module.
	collectorTests := build("collector.test", "github.com/pktspan/pktspan/collector", true)
	demo, err := demoapp.Build(context.Background(), bins)
	if err != nil {
		t.Fatal(err)
	}

	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
			defer cancel()
			k, err := vm.Ensure(ctx, series)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			res, err := vm.Run(ctx, k, vm.RunOptions{
				Files: map[string]string{"/bin/pktspan": pktspan, "/bin/scenario": scenario, "/bin/collector.test": collectorTests, "/bin/demoapp": demo},
				Script: `set -x
collector.test -test.v -test.run 'TestConntrackLayout|TestNftLayout' > "$OUT/collector-tests" 2>&1 || echo "collector tests failed: $?"
for b in fentry kprobe; do
	scenario --pktspan /bin/pktspan --backend $b --out "$OUT/$b" || echo "scenario $b failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --drops-only --out "$OUT/$b-drops" || echo "scenario $b --drops-only failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --survey --out "$OUT/$b-survey" > /dev/null || echo "scenario $b --survey failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --survey --drops-only --out "$OUT/$b-survey-drops" > /dev/null || echo "scenario $b --survey --drops-only failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --correlate /bin/demoapp --out "$OUT/$b-correlate" || echo "scenario $b --correlate failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --expression 'tcp port ` + fmt.Sprint(netns.ReplyPort) + `' --out "$OUT/$b-expr-tcp" || echo "scenario $b --expression tcp failed: $?"
	scenario --pktspan /bin/pktspan --backend $b --expression 'vlan ` + fmt.Sprint(netns.LabVLANs[0].ID) + ` and icmp' --out "$OUT/$b-expr-vlan" || echo "scenario $b --expression vlan failed: $?"
done
for b in tracepoint fentry kprobe; do
	scenario --pktspan /bin/pktspan --backend $b --cost --out "$OUT/$b-cost" || echo "scenario $b --cost failed: $?"
done
scenario --pktspan /bin/pktspan --vlan --out "$OUT/vlan" || echo "scenario --vlan failed: $?"`,
				// The NAT lab's router needs conntrack and NAT, modules on Debian's kernels;
				// loaded at boot, before pktspan reads nf_conntrack's BTF.
				// 802.1Q sub-interfaces need 8021q; the lossy demo port's rule, nft_numgen.
				Modules:  slices.Concat(vm.DefaultModules, []string{"nft_chain_nat", "nft_nat", "nft_masq", "8021q", "nft_numgen"}),
				OutDir:   out,
				Timeout:  12 * time.Minute,
				MemoryMB: 1024,
			})
			if err != nil {
				t.Fatalf("booting %s (%s): %v", series, k.Release, err)
			}
			t.Logf("%s (%s): booted in %s, payload done in %s, boots that panicked and were tried again: %d",
				series, k.Release, res.BootTime.Round(time.Millisecond), res.Duration.Round(time.Millisecond), res.Reboots)
			if strings.Contains(res.Output, "failed:") {
				t.Errorf("the scenario failed inside the VM:\n%s", res.Output)
			}
			t.Run("conntrack-btf", func(t *testing.T) {
				checkCollectorTests(t, filepath.Join(out, "collector-tests"))
			})
			t.Run("vlan-filter", func(t *testing.T) {
				checkVLANRun(t, filepath.Join(out, "vlan"))
			})
			for _, backend := range []string{"fentry", "kprobe"} {
				t.Run(backend, func(t *testing.T) {
					checkRun(t, filepath.Join(out, backend), backend)
				})
				t.Run(backend+"-drops-only", func(t *testing.T) {
					checkDropsOnlyRun(t, filepath.Join(out, backend+"-drops"), backend)
				})
				t.Run(backend+"-survey", func(t *testing.T) {
					checkSurveyRun(t, series, filepath.Join(out, backend+"-survey"), false)
				})
				t.Run(backend+"-survey-drops-only", func(t *testing.T) {
					checkSurveyRun(t, series, filepath.Join(out, backend+"-survey-drops"), true)
				})
				t.Run(backend+"-correlate", func(t *testing.T) {
					checkCorrelateRun(t, filepath.Join(out, backend+"-correlate"), backend)
				})
				t.Run(backend+"-expression", func(t *testing.T) {
					checkExpressionRuns(t, out, backend)
				})
			}
			t.Run("attach", func(t *testing.T) { checkTimings(t, out) })
			t.Run("cost", func(t *testing.T) { checkCost(t, series, out) })
		})
	}
}

// tracepointProbes is how many tracepoints pktspan attaches on every kernel here.
const tracepointProbes = 7

// conntrackRead is how pktspan's start-up summary says it reads conntrack tuples. On
// Debian's kernels conntrack is a module, yet struct nf_conn is in vmlinux's BTF:
// built-in code declares it.
const conntrackRead = "conntrack: original tuples read (struct nf_conn from "

// checkCollectorTests checks that the collector's conntrack layout tests passed in the
// VM, the one for a kernel whose conntrack is a module among them.
func checkCollectorTests(t *testing.T, path string) {
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no collector test output from the VM: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestConntrackLayoutWhereConntrackIsAModule ") ||
		!strings.Contains(string(out), "--- PASS: TestNftLayoutFindsTheSkbAndTheNamesWhereverNfTablesIs ") || strings.Contains(string(out), "--- FAIL") {
		t.Errorf("the conntrack and nf_tables layout tests did not all pass in the VM, the module ones among them:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "ct_tuple at") || strings.Contains(line, "nft_pktinfo.skb") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

// checkVLANRun checks the VLAN run: --filter-vlan followed both directions of the ping
// over its VLAN, and nothing over the other VLAN or the untagged link.
func checkVLANRun(t *testing.T, dir string) {
	f, err := os.Open(filepath.Join(dir, "spans.jsonl"))
	if err != nil {
		t.Fatalf("no spans from the VLAN run: %v", err)
	}
	defer f.Close()
	spans, err := ReadSpans(f)
	if err != nil {
		t.Fatal(err)
	}
	followed, other := netns.LabVLANs[0], netns.LabVLANs[1]
	for _, err := range CheckVLAN(spans, followed.Client.Addr(), followed.Server.Addr(),
		other.Client.Addr(), other.Server.Addr(), netns.LabClient.Addr(), netns.LabServer.Addr()) {
		t.Error(err)
	}
}

// checkExpressionRuns checks the two filter expression runs of a backend: a TCP port
// followed through the function probes, and one VLAN's pings alone.
func checkExpressionRuns(t *testing.T, out, backend string) {
	_, tcp := readRun(t, filepath.Join(out, backend+"-expr-tcp"), backend)
	for _, err := range CheckTCPPortExpression(tcp, netns.ReplyPort) {
		t.Error(err)
	}
	_, vlan := readRun(t, filepath.Join(out, backend+"-expr-vlan"), backend)
	followed, other := netns.LabVLANs[0], netns.LabVLANs[1]
	for _, err := range CheckVLAN(vlan, followed.Client.Addr(), followed.Server.Addr(),
		other.Client.Addr(), other.Server.Addr(), netns.LabClient.Addr(), netns.LabServer.Addr()) {
		t.Error(err)
	}
}

// readRun returns pktspan's log and spans from one scenario run, after checking what
// every run must show at start-up: the functions, skb_clone and nft_do_chain attached with the
// backend, conntrack tuples read.
func readRun(t *testing.T, dir, backend string) (string, *Spans) {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(dir, "pktspan.log"))
	if err != nil {
		t.Fatalf("no pktspan log from the VM: %v", err)
	}
	summary := string(log)
	t.Logf("pktspan start-up (%s):\n%s", backend, Startup(summary))
	via := map[string]string{"fentry": "fentry/fexit", "kprobe": "kprobe/kretprobe"}[backend]
	for _, fn := range []string{"ip_rcv_core", "nf_hook_slow", "tcp_v4_rcv", "ip_local_deliver"} {
		if !AttachedVia(summary, fn, via) {
			t.Errorf("%s was not attached with %s; log:\n%s", fn, via, summary)
		}
	}
	if cloneVia := map[string]string{"fentry": "fexit", "kprobe": "kprobe/kretprobe"}[backend]; !AttachedVia(summary, "skb_clone", cloneVia) {
		t.Errorf("skb_clone was not attached with %s; log:\n%s", cloneVia, summary)
	}
	if !AttachedVia(summary, "nft_do_chain", via) {
		t.Errorf("nft_do_chain was not attached with %s; log:\n%s", via, summary)
	}
	if !strings.Contains(Startup(summary), conntrackRead) {
		t.Errorf("pktspan does not say %q…; log:\n%s", conntrackRead, summary)
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
	return summary, spans
}

// checkCorrelateRun checks the --correlate http run against the demo client's reports.
func checkCorrelateRun(t *testing.T, dir, backend string) {
	_, spans := readRun(t, dir, backend)
	var reports [2][]demoapp.Request
	for i, name := range []string{"report-happy.jsonl", "report-lossy.jsonl"} {
		rs, err := demoapp.ReadReport(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		reports[i] = rs
	}
	for _, err := range CheckCorrelation(spans, reports[0], reports[1]) {
		t.Error(err)
	}
	if x := spans.exchangeOf(reports[1][0]); x != nil {
		t.Logf("the lossy request's exchange (%s):\n%s", backend, spans.Tree(x))
	}
}

func checkRun(t *testing.T, dir, backend string) {
	_, spans := readRun(t, dir, backend)
	if tapped, err := os.ReadFile(filepath.Join(dir, "tapped")); err == nil {
		t.Logf("the packet tap read %s frames", strings.TrimSpace(string(tapped)))
	}
	for _, err := range CheckFunctionSpans(spans, netns.ReplyPort, netns.DroppedPort, netns.ClosedPort) {
		t.Error(err)
	}
	for _, err := range CheckNftDrop(spans, netns.DroppedPort, netns.LabNftTable, netns.LabNftChain) {
		t.Error(err)
	}
	for _, p := range spans.Packets(netns.DroppedPort) {
		if p.Description == "NETFILTER_DROP" {
			t.Logf("the nft drop (%s): table %q chain %q\n%s", backend, p.Attr("pktspan.netfilter.table"), p.Attr("pktspan.netfilter.chain"), spans.Tree(p))
			break
		}
	}
	for _, err := range CheckClones(spans) {
		t.Error(err)
	}
	for _, err := range CheckRetransmitAndICMP(spans, netns.DroppedPort, netns.ClosedPort) {
		t.Error(err)
	}
	for _, err := range CheckConntrack(spans, NATPublic, NATServer) {
		t.Error(err)
	}
	for _, p := range spans.All {
		if c := spans.Children(p); p.Name == "packet" && len(c) > 0 && c[0].Name == "skb_clone" {
			t.Logf("a clone's packet span (%s), clone_of=%q:\n%s", backend, p.Attr("pktspan.skb.clone_of"), spans.Tree(p))
			break
		}
	}
	for _, p := range spans.Packets(netns.ReplyPort) {
		if spans.Find(p, "tcp_v4_rcv") != nil && p.Attr("destination.port") == fmt.Sprint(netns.ReplyPort) {
			t.Logf("one packet's span tree (%s):\n%s", backend, spans.Tree(p))
			break
		}
	}
	for _, p := range spans.Packets(netns.DroppedPort) {
		if p.Status == "error" {
			t.Logf("the nft-dropped packet (%s):\n%s", backend, spans.Tree(p))
			break
		}
	}
}

func checkDropsOnlyRun(t *testing.T, dir, backend string) {
	log, spans := readRun(t, dir, backend)
	if !strings.Contains(Startup(log), "drops only") {
		t.Errorf("the filter summary does not say drops only; log:\n%s", log)
	}
	for _, err := range CheckDropsOnly(spans, netns.DroppedPort, netns.ClosedPort) {
		t.Error(err)
	}
	for _, p := range spans.Packets(netns.DroppedPort) {
		t.Logf("the nft-dropped packet, drops only (%s):\n%s", backend, spans.Tree(p))
		break
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "final stats") {
			t.Logf("%s", line)
		}
	}
}

// checkSurveyRun checks the survey's healthy traffic and drops (CheckSurvey) and logs
// its table of frees, the README's "What counts as a drop" for this kernel.
func checkSurveyRun(t *testing.T, series, dir string, dropsOnly bool) {
	f, err := os.Open(filepath.Join(dir, "spans.jsonl"))
	if err != nil {
		t.Fatalf("no spans from the survey: %v", err)
	}
	defer f.Close()
	spans, err := ReadSpans(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckSurvey(spans, series, dropsOnly) {
		t.Error(err)
	}
	t.Logf("how the kernel freed each scenario's packets:\n%s", FreeTable(spans))
	if log, err := os.ReadFile(filepath.Join(dir, "pktspan.log")); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "final stats") {
				t.Logf("%s", line)
			}
		}
	}
}

// checkTimings checks that every function backend run attached all default probes (the
// tracepoints, the default functions, skb_clone and nft_do_chain) and reports each run's attach and
// detach times, the function backends' as a ratio to the tracepoint-only attach of the
// VLAN run in the same VM: qemu's software emulation makes the seconds themselves
// several times what a real machine takes.
func checkTimings(t *testing.T, out string) {
	runs := []string{"vlan", "fentry", "fentry-drops", "kprobe", "kprobe-drops"}
	timings := map[string]Timing{}
	for _, run := range runs {
		log, err := os.ReadFile(filepath.Join(out, run, "pktspan.log"))
		if err != nil {
			t.Errorf("%s: %v", run, err)
			continue
		}
		tm, err := ReadTiming(string(log))
		if err != nil {
			t.Errorf("%s: %v", run, err)
			continue
		}
		timings[run] = tm
		if want := tracepointProbes + len(config.DefaultFunctions) + 2; run != "vlan" && (tm.Probes != want || tm.Skipped != 0) {
			t.Errorf("%s: %d probes attached and %d skipped, want all %d attached; log:\n%s", run, tm.Probes, tm.Skipped, want, log)
		}
	}
	base := timings["vlan"].Attach
	var b strings.Builder
	fmt.Fprintf(&b, "attach and detach under qemu (tracepoints only, the VLAN run: %d probes attached in %s):", timings["vlan"].Probes, base.Round(time.Millisecond))
	for _, run := range runs[1:] {
		tm := timings[run]
		ratio := 0.0
		if base > 0 {
			ratio = float64(tm.Attach) / float64(base)
		}
		fmt.Fprintf(&b, "\n  %-13s %2d probes attached in %-8s (%.1fx tracepoints only), detached in %s",
			run, tm.Probes, tm.Attach.Round(time.Millisecond), ratio, tm.Detach.Round(time.Millisecond))
	}
	t.Log(b.String())
}

// checkCost reads what each backend's programs cost per call in this boot and prints it
// beside the empty tp_btf program's, and each backend as a ratio to the tracepoints',
// with a filter matching nothing and with every lab packet traced. Under emulation the
// absolute times say little; the ratios within one boot are the figures. It requires
// every figure to have been measured, never a time.
func checkCost(t *testing.T, series, out string) {
	costs := map[string]Cost{}
	for _, b := range []string{"tracepoint", "fentry", "kprobe"} {
		data, err := os.ReadFile(filepath.Join(out, b+"-cost", CostFile))
		if err != nil {
			t.Errorf("no cost figures for %s: %v", b, err)
			continue
		}
		var c Cost
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s's cost figures: %v", b, err)
		}
		for _, m := range []string{CostFloor, CostNothing, CostEverything} {
			if c.Modes[m].Total().Count == 0 {
				t.Errorf("%s, %s: no program ran over the requests", b, m)
			}
		}
		costs[b] = c
	}
	if t.Failed() {
		return
	}
	for _, b := range []string{"tracepoint", "fentry", "kprobe"} {
		c := costs[b]
		floor := c.PerCall(CostFloor)
		t.Logf("%s, %s backend, empty tp_btf programs (floor):\n%s", series, b, c.Table(CostFloor))
		for _, m := range []string{CostNothing, CostEverything} {
			t.Logf("%s, %s backend, %s: %.2f× the floor per call; %.0f ns per packet, %.2f× the tracepoint backend's:\n%s", series, b, m,
				c.PerCall(m)/floor, c.PerPacket(m), c.PerPacket(m)/costs["tracepoint"].PerPacket(m), c.Table(m))
		}
	}
}
