package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/pktspan/pktspan/spanner"
)

const (
	memFlows       = 1_000_000
	memCheckpoints = 4
)

// memSample is one reading of the memory case. rss is read right after a forced
// collection that returns free pages to the kernel, so it is what the spanner keeps;
// peak is the process's high-water mark (VmHWM), which includes garbage the collector
// had not yet reclaimed between checkpoints.
type memSample struct {
	flows                         int
	rss, peak, heapInuse, heapSys uint64
}

// runMemory is the memory case's own process: one million distinct TCP flows through
// a spanner at its default limits into a sink that keeps nothing. Each flow sends a SYN
// (received and consumed) and gets a SYN-ACK whose free no tracepoint sees, so both the
// flow table and the packet table fill up and then evict. It prints one line per
// checkpoint, and one for the empty spanner first.
func runMemory(w io.Writer) error {
	sp := spanner.New(&countSink{}, spanner.WithLogger(discardLog))
	sample := func(flows int) {
		s := readMem()
		fmt.Fprintf(w, "mem %d %d %d %d %d\n", flows, s.rss, s.peak, s.heapInuse, s.heapSys)
	}
	sample(0)
	recv := &spanner.Stage{Name: "net:netif_receive_skb"}
	consume := &spanner.Stage{Name: "skb:consume_skb", Free: true}
	server := netip.MustParseAddr("198.19.255.254")
	now, nextTick := int64(1_700_000_000_000_000_000), int64(0)
	var ev spanner.Event
	for i := range memFlows {
		// 198.18.0.0/15 gives each flow its own client address and port pair.
		client := netip.AddrFrom4([4]byte{198, 18 + byte(i>>24&1), byte(i >> 8), byte(i)})
		tu := spanner.Tuple{Src: client, Dst: server, SrcPort: uint16(1024 + i%60000), DstPort: 443, Proto: protoTCP}
		for k, st := range []*spanner.Stage{recv, consume, recv} {
			now += 1000
			ev = spanner.Event{TimeUnixNano: now, SKB: 0xffff888000000000 + uint64(i)<<9 + uint64(k/2)<<8,
				Stage: st, Netns: 4026531840, Ifindex: 2, Ifname: "eth0", Len: 60, Tuple: tu, TCP: spanner.TCP{Flags: tcpSYN, Seq: uint32(i)}}
			if k == 2 {
				ev.Tuple.Src, ev.Tuple.Dst, ev.Tuple.SrcPort, ev.Tuple.DstPort = tu.Dst, tu.Src, tu.DstPort, tu.SrcPort
				ev.TCP = spanner.TCP{Flags: tcpSYN | tcpACK, Seq: 7, Ack: uint32(i) + 1}
			}
			sp.HandleEvent(&ev)
		}
		if now >= nextTick {
			sp.Tick(now)
			nextTick = now + tickEvery
		}
		if (i+1)%(memFlows/memCheckpoints) == 0 {
			sample(i + 1)
		}
	}
	return nil
}

// readMem collects garbage, returns free memory to the kernel, and reads this process's
// resident set, its peak and the Go heap.
func readMem() memSample {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s := memSample{heapInuse: m.HeapInuse, heapSys: m.Sys}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			for _, f := range []struct {
				key string
				dst *uint64
			}{{"VmRSS:", &s.rss}, {"VmHWM:", &s.peak}} {
				if v, ok := strings.CutPrefix(l, f.key); ok {
					kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					*f.dst = kb << 10
				}
			}
		}
	}
	return s
}

func memoryCase(r *report) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := exec.Command(self, "-memory").Output()
	if err != nil {
		return fmt.Errorf("memory process: %w", err)
	}
	var samples []memSample
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var s memSample
		if _, err := fmt.Sscanf(sc.Text(), "mem %d %d %d %d %d", &s.flows, &s.rss, &s.peak, &s.heapInuse, &s.heapSys); err == nil {
			samples = append(samples, s)
		}
	}
	if len(samples) != memCheckpoints+1 {
		return fmt.Errorf("memory process printed %q", out)
	}
	const mib = 1 << 20
	r.section("4. memory: one million distinct flows through the spanner at default limits (16384 flows, 65536 packets), no-op sink")
	base := samples[0]
	r.add("  RSS is read after a forced GC that returns free pages (what the spanner keeps); peak is VmHWM")
	r.add("  empty spanner (baseline): RSS %.0f MiB, Go heap in use %.0f MiB, Go sys %.0f MiB",
		float64(base.rss)/mib, float64(base.heapInuse)/mib, float64(base.heapSys)/mib)
	for _, s := range samples[1:] {
		r.add("  after %7d flows: RSS %4.0f MiB (%.2fx baseline), peak %4.0f MiB, Go heap in use %4.0f MiB, Go sys %4.0f MiB",
			s.flows, float64(s.rss)/mib, float64(s.rss)/float64(base.rss), float64(s.peak)/mib, float64(s.heapInuse)/mib, float64(s.heapSys)/mib)
	}
	first, last := samples[1], samples[len(samples)-1]
	growth := float64(last.rss) / float64(first.rss)
	r.add("  RSS at 1M / at 250k: %.2fx (flat ≤1.10x: %s); peak RSS ≤256 MiB: %s", growth, met(growth <= 1.1), met(last.peak <= 256*mib))
	return nil
}
