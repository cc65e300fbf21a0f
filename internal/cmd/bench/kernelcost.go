package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pktspan/pktspan/internal/bpfstats"
	"github.com/pktspan/pktspan/internal/netns"
)

// kernelMode is how the kernel is traced during a window: by pktspan with args, or by
// programs of the harness's own (load: the floor, the references).
type kernelMode struct {
	key, title string
	args       []string
	load       func(hooks []string) (*bpfstats.Set, error)
}

// The harness's own modes: the floor every goal is held against, and two references that
// show what the goals leave room for on the machine at hand.
var (
	floorMode = kernelMode{key: "floor", title: "floor: an empty tp_btf program at each hook", load: bpfstats.LoadFloor}
	// The least any filter pays where pktspan reads the packet: (a)'s per-hook goal
	// cannot be met where this alone costs more than 1.5× the floor.
	readMode = kernelMode{key: "read", title: "reference: one 8-byte read of the IP header where pktspan's probes read it, empty elsewhere", load: bpfstats.LoadReading}
	// What each event's timestamp costs, which (b) pays at every hook of a followed skb.
	clockMode = kernelMode{key: "clock", title: "reference: one clock read at each hook", load: bpfstats.LoadClock}
)

// workload is traffic run for one window; run returns its rate. A traced window runs it
// twice: for d with the kernel's BPF statistics off, for the throughput, then for calls
// with them on, for the cost per call. The statistics cost every program call two clock
// reads (an empty socket filter under BPF_PROG_TEST_RUN took 110 ns a call with them and
// 32 without, on a 6.18 machine of BENCHMARKS.md): on during the throughput run, they
// would weigh on pktspan's throughput as they weigh on no user's.
type workload struct {
	name, unit string
	scale      float64 // the rate is printed divided by it
	d, calls   time.Duration
	run        func(d time.Duration) (float64, error)
}

// window is one mode's window of a workload.
type window struct {
	rate float64
	bpf  bpfstats.Window
	tr   tracedRun // pktspan's; zero for the floor
}

// results are a workload's rounds: base[i] and base[i+1] are round i's baselines (the
// windows without tracing around it), runs[mode][i] its window in mode.
type results struct {
	w    workload
	base []float64
	runs map[string][]window
}

// runRounds runs the workload's rounds: a baseline, every mode in an order rotated by
// one each round, a baseline; each round's last baseline is the next one's first.
func runRounds(rounds int, modes []kernelMode, w workload, in func(kernelMode, workload) (window, error)) (results, error) {
	work := func() (float64, error) { return w.run(w.d) }
	res := results{w: w, runs: map[string][]window{}}
	b, err := work()
	if err != nil {
		return res, err
	}
	res.base = append(res.base, b)
	for i := range rounds {
		for j := range modes {
			m := modes[(i+j)%len(modes)]
			win, err := in(m, w)
			if err != nil {
				return res, fmt.Errorf("%s, %s: %w", w.name, m.title, err)
			}
			res.runs[m.key] = append(res.runs[m.key], win)
		}
		if b, err = work(); err != nil {
			return res, err
		}
		res.base = append(res.base, b)
	}
	return res, nil
}

// throughput is mode's rate per round as a ratio to the mean of the round's baselines.
func (r results) throughput(mode string) spread {
	var xs []float64
	for i, win := range r.runs[mode] {
		xs = append(xs, win.rate/((r.base[i]+r.base[i+1])/2))
	}
	return spreadOf(xs)
}

// perCall is mode's ns per call at hook ("" for all hooks) over the rounds it was called in.
func (r results) perCall(mode, hook string) spread {
	var xs []float64
	for _, win := range r.runs[mode] {
		if c := win.stats(hook); c.Count > 0 {
			xs = append(xs, c.NsPerCall())
		}
	}
	return spreadOf(xs)
}

// relative is, per round, mode's ns per call at hook ("" for all hooks) over other's.
func (r results) relative(mode, other, hook string) spread {
	return r.perRound(mode, other, hook, func(c, o float64) float64 { return c / o })
}

// extra is, per round, how many ns a call of mode's at hook costs beyond other's: what
// a ratio to a floor hides where the floor itself is small.
func (r results) extra(mode, other, hook string) spread {
	return r.perRound(mode, other, hook, func(c, o float64) float64 { return c - o })
}

// perRound is f of mode's and other's ns per call at hook, for each round both were called.
func (r results) perRound(mode, other, hook string, f func(c, o float64) float64) spread {
	var xs []float64
	for i, win := range r.runs[mode] {
		c, o := win.stats(hook), r.runs[other][i].stats(hook)
		if c.Count > 0 && o.Count > 0 {
			xs = append(xs, f(c.NsPerCall(), o.NsPerCall()))
		}
	}
	return spreadOf(xs)
}

func (w window) stats(hook string) bpfstats.Calls {
	if hook == "" {
		return w.bpf.Total()
	}
	return w.bpf[hook]
}

// hooks are the hooks called in any of mode's windows, the floor's in its order first.
func (r results) hooks(mode string) []string {
	seen := map[string]bool{}
	for _, win := range r.runs[mode] {
		for h, c := range win.bpf {
			seen[h] = seen[h] || c.Count > 0
		}
	}
	var hs []string
	for _, h := range bpfstats.TracepointHooks {
		if seen[h] {
			hs = append(hs, h)
		}
		delete(seen, h)
	}
	var rest []string
	for h, called := range seen {
		if called {
			rest = append(rest, h)
		}
	}
	slices.Sort(rest)
	return append(hs, rest...)
}

// stat is the median over rounds of one of pktspan's final stats.
func (r results) stat(mode, name string) float64 {
	var xs []float64
	for _, win := range r.runs[mode] {
		v, _ := strconv.ParseFloat(win.tr.finalStats[name], 64)
		xs = append(xs, v)
	}
	return spreadOf(xs).med
}

// lostMax is the most events pktspan lost in one of mode's windows.
func (r results) lostMax(mode string) float64 {
	worst := 0.0
	for _, win := range r.runs[mode] {
		v, _ := strconv.ParseFloat(win.tr.finalStats["events_lost"], 64)
		worst = max(worst, v)
	}
	return worst
}

// cpuPerMillion is pktspan's CPU seconds per million events read, per round: its CPU from
// the window's start to its exit (draining and flushing included, start-up not).
func (r results) cpuPerMillion(mode string) spread {
	var xs []float64
	for _, win := range r.runs[mode] {
		if read, _ := strconv.ParseFloat(win.tr.finalStats["events_read"], 64); read > 0 {
			xs = append(xs, win.tr.windowCPU.Seconds()/read*1e6)
		}
	}
	return spreadOf(xs)
}

// cpuShare is pktspan's CPU from the window's start to its exit, in percent of a core
// over the window (both runs of the workload), per round.
func (r results) cpuShare(mode string) spread {
	var xs []float64
	for _, win := range r.runs[mode] {
		xs = append(xs, 100*win.tr.windowCPU.Seconds()/(r.w.d+r.w.calls).Seconds())
	}
	return spreadOf(xs)
}

// busyHooks are the hooks of mode taking at least 1% of its calls over the rounds: a
// hook called a few times a second costs what cold caches cost, noise beside the rest.
func (r results) busyHooks(mode string) (busy, rare []string) {
	all := r.callsPerSecond(mode, "")
	for _, h := range r.hooks(mode) {
		if r.callsPerSecond(mode, h)*100 >= all {
			busy = append(busy, h)
		} else {
			rare = append(rare, h)
		}
	}
	return busy, rare
}

// callsPerSecond is the mean rate of calls at hook ("" for all hooks) over mode's windows.
func (r results) callsPerSecond(mode, hook string) float64 {
	var calls uint64
	for _, win := range r.runs[mode] {
		calls += win.stats(hook).Count
	}
	return float64(calls) / (float64(len(r.runs[mode])) * r.w.calls.Seconds())
}

// ringDelay is the worst kernel-event-to-user-space delay pktspan reported over mode's
// windows (its ring_delay_max_us), or "not reported" by a pktspan without that stat.
func (r results) ringDelay(mode string) string {
	worst, seen := 0, false
	for _, win := range r.runs[mode] {
		if v, err := strconv.Atoi(win.tr.finalStats["ring_delay_max_us"]); err == nil {
			worst, seen = max(worst, v), true
		}
	}
	if !seen {
		return "not reported"
	}
	return fmt.Sprintf("%d µs", worst)
}

func kernelCase(r *report, o options) error {
	rounds, tcpD, udpD, callsD := 3, 10*time.Second, 5*time.Second, 3*time.Second
	if o.short {
		rounds, tcpD, udpD, callsD = 1, 2*time.Second, 2*time.Second, time.Second
	}
	r.section(fmt.Sprintf("3. kernel cost: BPF run time per call (kernel statistics, on for a run of %s after each window's) beside an empty program's, throughput (statistics off) as a ratio to no tracing; %d round(s), TCP %s and UDP %s windows", callsD, rounds, tcpD, udpD))
	if why := kernelSkip(o); why != "" {
		r.add("  skipped: %s", why)
		return nil
	}
	if _, err := exec.LookPath("nft"); err != nil {
		r.add("  skipped: nft is not installed (the UDP flood's drop rule needs it)")
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
	otlp := []string{"--otlp-endpoint", rcv.Addr, "--otlp-insecure"}
	modes := []kernelMode{
		floorMode,
		// Port 9 (discard) carries no test traffic: every skb is looked at, none matches.
		{key: "a", title: "(a) filter matching nothing (--filter-port 9 --output none)", args: []string{"--filter-port", "9", "--output", "none"}},
		// Every test packet followed; the kernel holds each skb's events until its free
		// and sends only drops.
		{key: "b", title: "(b) --drops-only on the test link, OTLP", args: append([]string{"--filter-addr", testLink, "--drops-only", "--output", "none"}, otlp...)},
		// Every test packet traced and exported; the exporter's own loopback traffic
		// stays out, so the figure is not a feedback loop.
		{key: "c", title: "(c) every test packet traced, OTLP", args: append([]string{"--filter-addr", testLink, "--output", "none"}, otlp...)},
		expressionMode,
		clockMode,
	}
	// A kernel that refuses the reading program's untyped pointer has no cheaper read to
	// compare with: the reference is left out, and says why.
	if s, err := readMode.load(bpfstats.TracepointHooks); err != nil {
		r.add("  reference %q left out: %v", readMode.title, err)
	} else {
		if err := s.Close(); err != nil {
			return err
		}
		modes = append(modes, readMode)
	}
	in := func(m kernelMode, w workload) (window, error) {
		var win window
		// The programs' statistics are sampled around fn, and count only its second run.
		fn := func() (err error) {
			if win.rate, err = w.run(w.d); err != nil {
				return err
			}
			return bpfstats.During(func() error { _, err := w.run(w.calls); return err })
		}
		var err error
		if m.load != nil {
			win.bpf, err = bpfstats.With(m.load, bpfstats.TracepointHooks, fn)
			return win, err
		}
		win.tr, err = withPktspan(o.pktspan, m.args, fn)
		win.bpf = win.tr.bpf
		return win, err
	}

	tcp, err := runRounds(rounds, modes, workload{"TCP, iperf3 over veth", "Gbit/s", 1e9, tcpD, callsD,
		func(d time.Duration) (float64, error) { return runIperf(hosts.Client, server, d) }}, in)
	if err != nil {
		return err
	}
	udp, err := udpDropRounds(hosts, rounds, modes, udpD, callsD, in)
	if err != nil {
		return err
	}
	for _, m := range modes[1:] {
		if win := tcp.runs[m.key][0]; win.tr.attached != "" {
			attachLines = append(attachLines, win.tr.attached)
			stopTimes = append(stopTimes, win.tr.stopDuration)
		}
	}
	for _, res := range []results{tcp, udp} {
		reportWorkload(r, res, modes)
	}
	reportKernelGoals(r, tcp, udp)
	reportExpressionCost(r, tcp)
	reportExpressionCost(r, udp)
	return nil
}

// udpDropRounds runs the rounds of a UDP flood from the client into an nft rule in the
// server's namespace that drops it, the rule there only for these windows (an nft base
// chain costs every packet).
func udpDropRounds(hosts *netns.Pair, rounds int, modes []kernelMode, d, calls time.Duration, in func(kernelMode, workload) (window, error)) (results, error) {
	ctx := context.Background()
	if err := hosts.Server.Nft(ctx, udpDropRules); err != nil {
		return results{}, err
	}
	res, err := runRounds(rounds, modes, workload{fmt.Sprintf("UDP flood into an nft drop (64-byte datagrams to port %d)", udpDropPort), "k packets/s dropped", 1e3, d, calls,
		func(d time.Duration) (float64, error) { return udpFlood(ctx, hosts, d) }}, in)
	if _, delErr := hosts.Server.Exec(ctx, "nft", "delete", "table", "inet", udpDropTable); delErr != nil {
		err = errors.Join(err, delErr)
	}
	return res, err
}

// udpDropPort is the flood's destination: not port 9, which (a) filters on.
const (
	udpDropPort  = 5299
	udpDropTable = "pktspan_bench_udp"
)

var udpDropRules = fmt.Sprintf(`table inet %s {
	counter dropped {}
	chain input {
		type filter hook input priority 0; policy accept;
		udp dport %d counter name "dropped" drop
	}
}
`, udpDropTable, udpDropPort)

// udpFlood sends 64-byte datagrams from the client as fast as one thread can for d and
// returns how many per second the server's rule dropped: what crossed the stack.
func udpFlood(ctx context.Context, hosts *netns.Pair, d time.Duration) (float64, error) {
	before, err := nftDropped(ctx, hosts.Server)
	if err != nil {
		return 0, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	start := time.Now()
	payload := make([]byte, 64)
	err = netns.Dial(sendCtx, hosts.Client, "udp", netns.LabServer.Addr(), udpDropPort, func(c net.Conn) error {
		for n := 0; n%1024 != 0 || time.Since(start) < d; n++ {
			if _, err := c.Write(payload); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("udp flood: %w", err)
	}
	elapsed := time.Since(start)
	after, err := nftDropped(ctx, hosts.Server)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / elapsed.Seconds(), nil
}

// nftDropped reads the flood rule's counter.
func nftDropped(ctx context.Context, ns *netns.NS) (uint64, error) {
	out, err := ns.Exec(ctx, "nft", "-j", "list", "counter", "inet", udpDropTable, "dropped")
	if err != nil {
		return 0, err
	}
	var res struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("nft counter: %w: %.200s", err, out)
	}
	for _, o := range res.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft counter: none in %.200s", out)
}

// reportWorkload prints a workload's throughput and ns per call per hook for each mode,
// pktspan's beside the floor's: medians of rounds, with their spread.
func reportWorkload(r *report, res results, modes []kernelMode) {
	var bs []float64
	for _, b := range res.base {
		bs = append(bs, b/res.w.scale)
	}
	base := spreadOf(bs)
	r.add("  %s: no tracing %.2f %s (median of %d baselines, %.2f–%.2f)", res.w.name, base.med, res.w.unit, len(bs), base.lo, base.hi)
	for _, m := range modes {
		line := fmt.Sprintf("    %s: throughput %s of no tracing", m.title, res.throughput(m.key).format("%.3f"))
		if m.args != nil {
			line += fmt.Sprintf("; events_read=%.0f events_lost=%.0f (most in a round %.0f)",
				res.stat(m.key, "events_read"), res.stat(m.key, "events_lost"), res.lostMax(m.key))
			line += fmt.Sprintf(", pktspan %s%% of a core", res.cpuShare(m.key).format("%.0f"))
			if m.key == "c" {
				line += fmt.Sprintf(", %s s of CPU per million events", res.cpuPerMillion(m.key).format("%.2f"))
			}
			line += ", worst ring delay " + res.ringDelay(m.key)
		}
		r.add("%s", line)
		for _, h := range append(res.hooks(m.key), "") {
			name := h
			if h == "" {
				name = "all hooks"
			}
			line := fmt.Sprintf("      %-24s %s ns/call", name, res.perCall(m.key, h).format("%.0f"))
			if m.key != floorMode.key {
				if f := res.relative(m.key, floorMode.key, h); f.med > 0 {
					line += fmt.Sprintf(", %s the floor (%+.0f ns)", f.format("%.2f×"), res.extra(m.key, floorMode.key, h).med)
				}
			}
			r.add("%s, %s calls/s", line, si(res.callsPerSecond(m.key, h)))
		}
	}
}

// reportKernelGoals prints issue 14's goals, each met or not by the medians of rounds.
func reportKernelGoals(r *report, tcp, udp results) {
	r.add("  goals (medians of rounds):")
	worst, worstHook := 0.0, "no hook called"
	busy, rare := tcp.busyHooks("a")
	for _, h := range busy {
		if f := tcp.relative("a", floorMode.key, h); f.med > worst {
			worst, worstHook = f.med, h
		}
	}
	r.add("    (a) TCP, every hook ≤1.5× the floor: worst %s at %.2f×, %+.0f ns (%s; hooks under 1%% of the calls left out: %s)",
		worstHook, worst, tcp.extra("a", floorMode.key, worstHook).med, met(worst > 0 && worst <= 1.5), strings.Join(rare, ", "))
	if _, ok := tcp.runs[readMode.key]; ok {
		var reads []string
		for _, h := range bpfstats.ReadingHooks {
			if f := tcp.relative(readMode.key, floorMode.key, h); f.med > 0 {
				reads = append(reads, fmt.Sprintf("%s %.2f× (%+.0f ns)", h, f.med, tcp.extra(readMode.key, floorMode.key, h).med))
			}
		}
		r.add("      the least a read of the packet costs here, × the floor: %s", strings.Join(reads, ", "))
	}
	a := tcp.throughput("a").med
	r.add("    (a) TCP throughput ≥0.99: %.3f (%s)", a, met(a >= 0.99))
	kfree := udp.perCall("b", "kfree_skb").med
	r.add("    (b) UDP drop flood, ≤600 ns per kfree_skb call: %.0f ns (%s); (a) %.0f, (c) %.0f, floor %.0f ns",
		kfree, met(kfree > 0 && kfree <= 600), udp.perCall("a", "kfree_skb").med, udp.perCall("c", "kfree_skb").med, udp.perCall(floorMode.key, "kfree_skb").med)
	ba := tcp.relative("b", "a", "").med
	r.add("    (b) TCP, ≤1.2× (a) per call, all hooks: %.2f× (%s)", ba, met(ba > 0 && ba <= 1.2))
	r.add("      one clock read costs %+.0f ns a call over the floor here, all hooks; 1.2× (a) leaves %+.0f ns a call over (a)",
		tcp.extra(clockMode.key, floorMode.key, "").med, 0.2*tcp.perCall("a", "").med)
	b := tcp.throughput("b").med
	r.add("    (b) TCP throughput ≥0.95: %.3f (%s)", b, met(b >= 0.95))
	c := tcp.perCall("c", "").med
	r.add("    (c) TCP, ≤800 ns per call, all hooks: %.0f ns (%s)", c, met(c > 0 && c <= 800))
	ct := tcp.throughput("c").med
	r.add("    (c) TCP throughput ≥0.75: %.3f (%s)", ct, met(ct >= 0.75))
	lost := tcp.lostMax("c")
	r.add("    (c) TCP, no event lost at the default ring size: %.0f lost in the worst round (%s)", lost, met(lost == 0))
	r.add("    (c) TCP, pktspan's CPU per million events: %s s; worst kernel-to-user-space delay: %s",
		tcp.cpuPerMillion("c").format("%.2f"), tcp.ringDelay("c"))
}

// si prints a count with a k or M suffix.
func si(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.0fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
