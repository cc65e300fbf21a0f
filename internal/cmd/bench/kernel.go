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
	"strings"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/internal/bpfstats"
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

// tracedRun is one pktspan process that ran during a kernel case's window.
type tracedRun struct {
	attached     string // pktspan's "attached N probes in Xms"
	finalStats   map[string]string
	cpu          time.Duration
	windowCPU    time.Duration   // from the window's start to exit: without start-up
	stopDuration time.Duration   // SIGTERM to exit: detach, drain, flush
	bpf          bpfstats.Window // its programs' statistics over the window (zero unless enabled)
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
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w: %.200s", err, out)
	}
	if res.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3 received nothing: %q", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// procCPU is the user and system time of process pid so far, all its threads.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("pktspan's CPU time: %w", err)
	}
	return parseStatCPU(b)
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every Linux ABI.
const userHZ = 100

// parseStatCPU reads utime and stime from a /proc/PID/stat line; they are the 14th and
// 15th fields, counted after the command name, which may itself hold spaces and ")".
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/PID/stat: no command name in %.100q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/PID/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

var (
	attachedRE = regexp.MustCompile(`attached \d+ probes in [^:]+`)
	statRE     = regexp.MustCompile(`(\w+)=(\d+)`)
)

// withPktspan runs pktspan with args, waits until it is attached, runs fn, stops
// pktspan with SIGTERM and returns what its final stats line said and what its
// programs cost over fn (sampled right before and after it: attach and warm-up are left
// out).
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
	var startCPU time.Duration
	fnErr := func() error {
		progs, err := bpfstats.OfProcess(cmd.Process.Pid)
		if err != nil {
			return err
		}
		if startCPU, err = procCPU(cmd.Process.Pid); err != nil {
			return errors.Join(err, progs.Close())
		}
		tr.bpf, err = bpfstats.Measure(progs, fn)
		return errors.Join(err, progs.Close())
	}()
	stop := time.Now()
	if err := p.Stop(syscall.SIGTERM, time.Minute); err != nil {
		return tr, errors.Join(fnErr, fmt.Errorf("pktspan: %w: %s", err, stderr.String()))
	}
	tr.stopDuration = time.Since(stop)
	tr.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	tr.windowCPU = tr.cpu - startCPU
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
