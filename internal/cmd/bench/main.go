// Command bench is `make bench`: it measures pktspan's export path, allocations, kernel
// cost, memory, attach time and what a collector outage loses, and prints each timing
// as a ratio against a baseline measured in the same run, because absolute times on
// shared machines are noise.
//
// The same binary also runs, as child processes, the loopback OTLP receiver
// (-receiver) and the memory case (-memory), so neither's CPU or memory is mixed with
// what is measured.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

type options struct {
	short   bool
	pktspan string // built binary for the kernel cases
	profile string // CPU profile of case 1's pktspan path
	events  int    // fixture records
	cases   string // which cases to run, by number
}

func main() {
	var o options
	receiver := flag.Bool("receiver", false, "run as the loopback OTLP receiver (internal)")
	receiverAddr := flag.String("receiver-addr", loopbackAny, "where the receiver listens (internal)")
	memory := flag.Bool("memory", false, "run the memory case in this process (internal)")
	flag.BoolVar(&o.short, "short", os.Getenv("BENCH_SHORT") == "1", "short runs for CI (also BENCH_SHORT=1)")
	flag.StringVar(&o.pktspan, "pktspan", "bin/pktspan", "pktspan binary for the kernel cases")
	flag.StringVar(&o.profile, "cpuprofile", "bin/bench-export.pprof", "where to write case 1's CPU profile")
	flag.IntVar(&o.events, "events", 200000, "fixture records to generate")
	flag.StringVar(&o.cases, "cases", "1234567", "cases to run, by number")
	flag.Parse()

	var err error
	switch {
	case *receiver:
		err = runReceiver(*receiverAddr)
	case *memory:
		err = runMemory(os.Stdout)
	default:
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// report collects the summary lines printed at the end.
type report struct{ lines []string }

func (r *report) add(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.lines = append(r.lines, line)
	fmt.Println(line)
}

func (r *report) section(title string) {
	r.lines = append(r.lines, "", title)
	fmt.Printf("\n== %s\n", title)
}

func run(o options) error {
	// The developer's OTEL_* settings (gzip, another endpoint) would skew one path or both.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			os.Unsetenv(name)
		}
	}
	testing.Init()
	mode := "full"
	if o.short {
		mode = "short (BENCH_SHORT=1)"
	}
	fmt.Printf("pktspan bench, %s mode: %s, GOMAXPROCS=%d, nproc=%d, kernel %s, %s\n",
		mode, runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), kernelRelease(), time.Now().UTC().Format(time.DateTime+" MST"))

	fix := GenerateFixtures(o.events, 1)
	if err := checkDecodes(fix); err != nil {
		return err
	}
	fmt.Printf("fixtures: %d kernel records (%d KiB) of TCP over veth, %.0f ms of kernel time\n",
		fix.Events, len(fix.Records)>>10, float64(fix.Duration)/1e6)

	var r report
	for _, c := range []struct {
		n   string
		run func() error
	}{
		{"1", func() error { return exportCase(&r, o, fix) }},
		{"2", func() error { return allocCase(&r, fix) }},
		{"3", func() error { return kernelCase(&r, o) }},
		{"4", func() error { return memoryCase(&r) }},
		{"5", func() error { return attachCase(&r, o) }},
		{"6", func() error { return correlateCase(&r, o) }},
		{"7", func() error { return outageCase(&r, o, fix) }},
	} {
		if !strings.Contains(o.cases, c.n) {
			continue
		}
		if err := c.run(); err != nil {
			return fmt.Errorf("case %s: %w", c.n, err)
		}
	}
	fmt.Println("\n======== summary ========")
	for _, l := range r.lines {
		fmt.Println(l)
	}
	return nil
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func met(ok bool) string {
	if ok {
		return "goal met"
	}
	return "goal NOT met"
}

func exportCase(r *report, o options, fix *Fixtures) error {
	d := 5 * time.Second
	if o.short {
		d = time.Second
	}
	rcv, err := StartReceiver()
	if err != nil {
		return err
	}
	defer rcv.Stop()

	r.section("1. export path: fixtures → decode → spanner → OTLP/gRPC → loopback receiver (separate process)")
	sdk, err := measureExport(fix, rcv, d, "", newSDKSink)
	if err != nil {
		return fmt.Errorf("sdk path: %w", err)
	}
	pkt, err := measureExport(fix, rcv, d, o.profile, newPktspanSink)
	if err != nil {
		return fmt.Errorf("pktspan path: %w", err)
	}
	for _, p := range []struct {
		name string
		x    exportRun
	}{{"SDK baseline (Tracer.Start/End, batch processor, otlptracegrpc)", sdk}, {"pktspan (OTLP built directly, otlptracegrpc client)", pkt}} {
		r.add("  %-66s %9.0f spans/s/core  (%d spans in %.1fs wall, %.2fs CPU, %d dropped; receiver %.0f%% of a core, %.2f of sender CPU)",
			p.name, p.x.SpansPerCore, p.x.Spans, p.x.Wall.Seconds(), p.x.CPU.Seconds(), p.x.Dropped,
			100*p.x.ReceiverCPU.Seconds()/p.x.Wall.Seconds(), p.x.ReceiverCPU.Seconds()/p.x.CPU.Seconds())
	}
	ratio := pkt.SpansPerCore / sdk.SpansPerCore
	r.add("  pktspan / SDK: %.2fx (goal ≥15x: %s); pktspan ≥2M spans per CPU-second: %s", ratio, met(ratio >= 15), met(pkt.SpansPerCore >= 2e6))
	return topCosts(r, o.profile)
}

// topCosts prints the three functions with the most CPU in the profile.
func topCosts(r *report, profile string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=3", self, profile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w: %s", err, out)
	}
	r.add("  CPU profile of the pktspan path: %s (go tool pprof -http=: %s); top three (flat):", profile, profile)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines[max(0, len(lines)-3):] {
		r.add("    %s", strings.TrimSpace(l))
	}
	return nil
}

func allocCase(r *report, fix *Fixtures) error {
	r.section("2. allocations per event on the hot path (fixtures, as go test -benchmem ./internal/cmd/bench/ measures them)")
	dec := testing.Benchmark(benchDecode(fix))
	sp := testing.Benchmark(benchSpanner(fix))
	if dec.N == 0 || sp.N == 0 {
		return fmt.Errorf("a benchmark failed")
	}
	decAllocs := dec.Extra["allocs/event"]
	perSpan := sp.Extra["allocs/span"]
	r.add("  decode:            %.3f allocs/event, %.1f B/event, %.0f ns/event (goal 0: %s)",
		decAllocs, dec.Extra["B/event"], float64(dec.NsPerOp()), met(decAllocs == 0))
	r.add("  decode + spanner:  %.3f allocs/event, %.1f B/event, %.0f ns/event, %.2f spans/event → %.4f allocs/span (goal ≤1: %s)",
		sp.Extra["allocs/event"], sp.Extra["B/event"], float64(sp.NsPerOp()), sp.Extra["spans/event"], perSpan, met(perSpan <= 1))
	return nil
}
