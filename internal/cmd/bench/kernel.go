package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

const iperfPort = "5201"

// testLink is the client and server's link: the filter that follows all test traffic.
var testLink = netns.LabServer.Masked().String()

// kernelSkip says why the kernel cases cannot run here, or "" when they can.
func kernelSkip(o options) string {
	if os.Geteuid() != 0 {
		return "needs root (sudo make bench)"
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return "iperf3 is not installed (make bench installs it as root)"
	}
	if _, err := os.Stat(o.pktspan); err != nil {
		return fmt.Sprintf("%s is missing (make build)", o.pktspan)
	}
	return ""
}

// tracedRun is one pktspan process that ran during an iperf3 case.
type tracedRun struct {
	attached     string // pktspan's "attached N probes in Xms"
	finalStats   map[string]string
	cpu          time.Duration
	stopDuration time.Duration // SIGTERM to exit: detach, drain, flush
}

func kernelCase(r *report, o options) error {
	d := 10 * time.Second
	if o.short {
		d = 2 * time.Second
	}
	r.section(fmt.Sprintf("3. kernel cost: iperf3 TCP over veth between two namespaces, %s per case, ratio to no tracing", d))
	if why := kernelSkip(o); why != "" {
		r.add("  skipped: %s", why)
		return nil
	}
	hosts, server, stop, err := iperfHosts()
	if err != nil {
		return err
	}
	defer stop()

	rcv, err := StartReceiver()
	if err != nil {
		return err
	}
	defer rcv.Stop()

	iperf := func() (float64, error) { return runIperf(hosts.Client, server, d) }
	traced := func(args ...string) (float64, tracedRun, error) {
		var bps float64
		tr, err := withPktspan(o.pktspan, args, func() error {
			var err error
			bps, err = iperf()
			return err
		})
		return bps, tr, err
	}

	// The baseline runs first and last; the ratios use its mean, and the spread of the
	// two says how noisy this machine was.
	base1, err := iperf()
	if err != nil {
		return err
	}
	// Port 9 (discard) carries no test traffic: every skb is looked at, none matches.
	nomatch, trA, err := traced("--filter-port", "9", "--output", "none")
	if err != nil {
		return err
	}
	// Every test packet followed, but iperf3's transfer drops nothing: the kernel holds
	// each skb's events and discards them at its normal free.
	dropsOnly, trB, err := traced("--filter-addr", testLink, "--drops-only", "--output", "none",
		"--otlp-endpoint", rcv.Addr, "--otlp-insecure")
	if err != nil {
		return err
	}
	// Every test packet (the link's addresses) traced and exported; the exporter's own
	// loopback traffic stays out, so the figure is not a feedback loop.
	all, trC, err := traced("--filter-addr", testLink, "--output", "none",
		"--otlp-endpoint", rcv.Addr, "--otlp-insecure")
	if err != nil {
		return err
	}
	base2, err := iperf()
	if err != nil {
		return err
	}
	base := (base1 + base2) / 2
	r.add("  no tracing (baseline):  %6.2f Gbit/s  (first %.2f, last %.2f: %.0f%% apart)", base/1e9, base1/1e9, base2/1e9, 100*abs(base1-base2)/base)
	r.add("  (a) filter matching nothing:      %.3f of baseline (goal ≥0.97: %s), events_lost=%s",
		nomatch/base, met(nomatch/base >= 0.97), trA.finalStats["events_lost"])
	r.add("  (b) --drops-only on all traffic:  %.3f of baseline (goal ≥0.90: %s), events_lost=%s, held_discarded=%s, otlp_exported=%s",
		dropsOnly/base, met(dropsOnly/base >= 0.9), trB.finalStats["events_lost"], trB.finalStats["held_discarded"], trB.finalStats["otlp_exported"])
	lost, _ := strconv.ParseFloat(trC.finalStats["events_lost"], 64)
	read, _ := strconv.ParseFloat(trC.finalStats["events_read"], 64)
	r.add("  (c) every packet traced, OTLP:    %.3f of baseline (goal ≥0.60: %s), events_read=%s events_lost=%s (%.1f%% lost) otlp_exported=%s otlp_dropped=%s, pktspan CPU %.0f%% of a core",
		all/base, met(all/base >= 0.6), trC.finalStats["events_read"], trC.finalStats["events_lost"], 100*lost/max(1, lost+read),
		trC.finalStats["otlp_exported"], trC.finalStats["otlp_dropped"], 100*trC.cpu.Seconds()/d.Seconds())
	attachLines = append(attachLines, trA.attached, trB.attached, trC.attached)
	stopTimes = append(stopTimes, trA.stopDuration, trB.stopDuration, trC.stopDuration)
	return nil
}

// iperfHosts builds the lab's two hosts without its servers and nft rules, which would
// add to every packet's cost, with an iperf3 server in the server's namespace; it
// returns the server's address and what removes it all.
func iperfHosts() (*netns.Pair, string, func(), error) {
	hosts, err := netns.NewPair()
	if err != nil {
		return nil, "", nil, err
	}
	server := netns.LabServer.Addr().String()
	srv := exec.Command("ip", "netns", "exec", hosts.Server.Name(), "iperf3", "-s", "-B", server, "-p", iperfPort)
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		_ = hosts.Close()
		return nil, "", nil, fmt.Errorf("iperf3 server: %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	return hosts, server, func() { _ = srv.Process.Kill(); _ = srv.Wait(); _ = hosts.Close() }, nil
}

// attachLines and stopTimes are what the kernel cases' pktspan runs said and took, for case 5.
var (
	attachLines []string
	stopTimes   []time.Duration
)

func abs(x float64) float64 { return max(x, -x) }

// runIperf runs the iperf3 client in the client namespace for d and returns the
// receiver's throughput in bit/s.
func runIperf(client *netns.NS, server string, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := client.Exec(ctx, "iperf3", "-c", server, "-p", iperfPort,
		"-t", strconv.Itoa(int(d.Seconds())), "-J")
	if err != nil {
		return 0, fmt.Errorf("iperf3: %w", err)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3 output: %w: %.200s", err, out)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

var (
	attachedRE = regexp.MustCompile(`attached \d+ probes in [^:]+`)
	statRE     = regexp.MustCompile(`(\w+)=(\d+)`)
)

// withPktspan runs pktspan with args, waits until it is attached, runs fn, stops
// pktspan with SIGTERM and returns what its final stats line said.
func withPktspan(bin string, args []string, fn func() error) (tracedRun, error) {
	var tr tracedRun
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"--stats-interval", "1h"}, args...)...)
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		return tr, fmt.Errorf("%w: %s", err, stderr.String())
	}
	fnErr := fn()
	stop := time.Now()
	if err := p.Stop(syscall.SIGTERM, time.Minute); err != nil {
		return tr, errors.Join(fnErr, fmt.Errorf("pktspan: %w: %s", err, stderr.String()))
	}
	tr.stopDuration = time.Since(stop)
	tr.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	tr.attached = attachedRE.FindString(stderr.String())
	tr.finalStats = map[string]string{}
	for _, l := range bytes.Split(stderr.Bytes(), []byte("\n")) {
		if bytes.Contains(l, []byte(`msg="final stats"`)) {
			for _, m := range statRE.FindAllSubmatch(l, -1) {
				tr.finalStats[string(m[1])] = string(m[2])
			}
		}
	}
	return tr, fnErr
}

// attachCase reports pktspan's own attach line and, measured here through the
// collector package, attach and detach of the default probe set.
func attachCase(r *report, o options) error {
	r.section("5. attach/detach of the default probe set on this kernel (absolute; no baseline)")
	if why := kernelSkip(o); why != "" {
		r.add("  skipped: %s", why)
		return nil
	}
	for _, l := range attachLines {
		r.add("  bin/pktspan said: %s", l)
	}
	for _, d := range stopTimes {
		r.add("  bin/pktspan SIGTERM to exit (detach, drain, flush, stop): %s", d.Round(time.Millisecond))
	}
	var attach, detach []time.Duration
	n := 0
	for range 5 {
		c := collector.New(collector.WithLogger(discardLog))
		if err := c.Start(context.Background()); err != nil {
			return err
		}
		n = len(c.Summary().Attached)
		attach = append(attach, c.Summary().AttachTime)
		start := time.Now()
		if err := c.Shutdown(context.Background()); err != nil {
			return err
		}
		detach = append(detach, time.Since(start))
	}
	slices.Sort(attach)
	slices.Sort(detach)
	r.add("  collector.Start, %d probes, median of 5: attach %s; collector.Shutdown (detach and free maps): %s (detach/attach %.2f)",
		n, attach[2].Round(10*time.Microsecond), detach[2].Round(10*time.Microsecond), detach[2].Seconds()/attach[2].Seconds())
	return nil
}
