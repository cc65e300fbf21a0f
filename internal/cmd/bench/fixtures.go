package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/spanner"
)

// Probe ids and kinds, as enum probe_id and enum event_kind in bpf/headers/pktspan.h.
const (
	probeNetifReceiveSKB = 1
	probeNetDevQueue     = 2
	probeNetDevXmit      = 3
	probeKfreeSKB        = 4
	probeConsumeSKB      = 5
	probeCopyDatagram    = 6
)

// Drop reasons of the fixture kernel: the values the decoder names through BTF.
const (
	reasonConsumed      = 2
	reasonNetfilterDrop = 12
	dropLocation        = 0xffffffffc0a011f3
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10

	protoTCP = 6
)

// Fixtures are ring buffer records exactly as the kernel writes them: the generated
// event struct in native byte order, one after another.
type Fixtures struct {
	Records  []byte
	Events   int
	Duration int64 // kernel nanoseconds from the first record to the last
}

// Record returns record i.
func (f *Fixtures) Record(i int) []byte {
	return f.Records[i*collector.EventSize : (i+1)*collector.EventSize]
}

// Host sides of the generated traffic: a client and a server namespace joined by veth.
type host struct {
	netns, ifindex uint32
	ifname         string
	addr           netip.Addr
}

var (
	clientHost = host{netns: 4026532176, ifindex: 2, ifname: "veth1a", addr: netip.MustParseAddr("198.18.0.1")}
	serverHost = host{netns: 4026532245, ifindex: 3, ifname: "veth1b", addr: netip.MustParseAddr("198.18.0.2")}
)

// genFlow is one TCP connection being played.
type genFlow struct {
	cport, sport uint16
	cseq, sseq   uint32
	step, rounds int
	dropped      bool // to a port an nft rule drops: one SYN, dropped on receive
}

// generator writes what this kernel's tracepoints report for TCP over veth, as seen
// by `pktspan --output console` on such traffic: a segment is queued and transmitted
// in the sender's namespace and received in the peer's; data is copied to the socket
// and consumed; a SYN is consumed; pure ACKs, SYN-ACKs and FINs are freed where no
// tracepoint sees them, so their skb address simply comes back for a later packet.
type generator struct {
	rng   *rand.Rand
	out   bytes.Buffer
	now   uint64
	n     int
	free  []uint64 // skb slab: most recently freed last
	port  uint16
	flows []*genFlow
}

// GenerateFixtures plays concurrent TCP connections (a handshake, request/response
// rounds with ACKs, a FIN exchange; one connection in 64 is a SYN dropped by
// netfilter) until about events records are written.
func GenerateFixtures(events int, seed uint64) *Fixtures {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: 1 << 40, port: 30000}
	for i := range 8192 {
		g.free = append(g.free, 0xffff888100000000+uint64(i)<<8)
	}
	g.rng.Shuffle(len(g.free), func(i, j int) { g.free[i], g.free[j] = g.free[j], g.free[i] })
	for range 256 {
		g.flows = append(g.flows, g.newFlow())
	}
	start := g.now
	for g.n < events {
		i := g.rng.IntN(len(g.flows))
		if g.play(g.flows[i]) {
			g.flows[i] = g.newFlow()
		}
	}
	return &Fixtures{Records: g.out.Bytes(), Events: g.n, Duration: int64(g.now - start)}
}

func (g *generator) newFlow() *genFlow {
	g.port++
	if g.port < 30000 {
		g.port = 30000
	}
	f := &genFlow{cport: g.port, sport: 8080, cseq: g.rng.Uint32(), sseq: g.rng.Uint32(), rounds: 2 + g.rng.IntN(40)}
	if g.rng.IntN(64) == 0 {
		f.sport, f.dropped = 81, true
	}
	return f
}

// play sends the flow's next segment and reports whether the connection is over.
func (g *generator) play(f *genFlow) bool {
	switch {
	case f.step == 0:
		f.step++
		if f.dropped {
			g.segment(f, true, tcpSYN, 0, segDropped)
			return true
		}
		g.segment(f, true, tcpSYN, 0, segConsumed)
		f.cseq++
	case f.step == 1:
		f.step++
		g.segment(f, false, tcpSYN|tcpACK, 0, segFreedUnseen)
		f.sseq++
	case f.step == 2:
		f.step++
		g.segment(f, true, tcpACK, 0, segFreedUnseen)
	case f.step < 3+4*f.rounds:
		// A round: request, its ACK, response, its ACK.
		fromClient := (f.step-3)%4 < 2
		isData := (f.step-3)%2 == 0
		f.step++
		if isData {
			n := uint32(64 + g.rng.IntN(1400))
			g.segment(f, fromClient, tcpPSH|tcpACK, n, segDelivered)
			if fromClient {
				f.cseq += n
			} else {
				f.sseq += n
			}
		} else {
			g.segment(f, fromClient, tcpACK, 0, segFreedUnseen)
		}
	default:
		f.step++
		switch f.step - (3 + 4*f.rounds) {
		case 1:
			g.segment(f, true, tcpFIN|tcpACK, 0, segFreedUnseen)
			f.cseq++
		case 2:
			g.segment(f, false, tcpFIN|tcpACK, 0, segFreedUnseen)
			f.sseq++
		case 3:
			g.segment(f, true, tcpACK, 0, segFreedUnseen)
			return true
		}
	}
	return false
}

// segEnd says how a segment's skb ends.
type segEnd int

const (
	segFreedUnseen segEnd = iota
	segConsumed           // consume_skb after the receive
	segDelivered          // copied to the socket, then consumed
	segDropped            // kfree_skb with NETFILTER_DROP on the receive side
)

func (g *generator) segment(f *genFlow, fromClient bool, flags uint8, payload uint32, end segEnd) {
	src, dst := clientHost, serverHost
	sport, dport := f.cport, f.sport
	seq, ack := f.cseq, f.sseq
	if !fromClient {
		src, dst = dst, src
		sport, dport = dport, sport
		seq, ack = ack, seq
	}
	if flags&tcpACK == 0 {
		ack = 0
	}
	// The slab hands out one of its most recently freed objects.
	last := len(g.free) - 1
	j := last - g.rng.IntN(64)
	skb := g.free[j]
	g.free[j] = g.free[last]
	g.free = g.free[:last]
	ev := bpf.TracepointsEvent{
		Skb: skb, L3: 4, L4: protoTCP, Sport: sport, Dport: dport,
		TcpFlags: flags, TcpSeq: seq, TcpAck: ack, Len: 52 + payload,
		Saddr: addr16(src.addr), Daddr: addr16(dst.addr),
	}
	at := func(h host, probe uint16) {
		ev.Netns, ev.Ifindex, ev.Ifname = h.netns, h.ifindex, ifname(h.ifname)
		ev.Probe = probe
		ev.Cpu = uint32(g.n & 1)
		g.emit(&ev)
	}
	at(src, probeNetDevQueue)
	at(src, probeNetDevXmit)
	// veth hands the skb to the peer: its len loses the Ethernet header it gained.
	ev.Len -= 14
	at(dst, probeNetifReceiveSKB)
	switch end {
	case segDelivered:
		at(dst, probeCopyDatagram)
		ev.DropReason, ev.FreeClass = reasonConsumed, uint8(bpf.TracepointsFreeClassFREE_CONSUMED)
		at(dst, probeConsumeSKB)
	case segConsumed:
		ev.DropReason, ev.FreeClass = reasonConsumed, uint8(bpf.TracepointsFreeClassFREE_CONSUMED)
		at(dst, probeConsumeSKB)
	case segDropped:
		// kfree_skb runs where the netfilter hook ran: no device, the namespace kept.
		ev.Ifindex, ev.Ifname = 0, [16]int8{}
		ev.Probe, ev.DropReason, ev.Location = probeKfreeSKB, reasonNetfilterDrop, dropLocation
		g.emit(&ev)
	}
	g.free = append(g.free, skb)
}

// emit appends ev as the kernel writes it; events come 0.2 to 2 µs apart.
func (g *generator) emit(ev *bpf.TracepointsEvent) {
	g.now += 200 + g.rng.Uint64N(1800)
	ev.TsNs = g.now
	g.out.Write(unsafe.Slice((*byte)(unsafe.Pointer(ev)), collector.EventSize))
	g.n++
}

func addr16(a netip.Addr) (b [16]uint8) {
	copy(b[:], a.AsSlice())
	return b
}

func ifname(s string) (b [16]int8) {
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

// shiftClock converts the fixtures' kernel times to wall time; replaying the fixtures
// again moves the offset on, so time never runs backwards for the spanner.
type shiftClock struct{ offset int64 }

func (c *shiftClock) WallNano(mono uint64) int64 { return int64(mono) + c.offset }

// symbols names the one drop location the fixtures use, as kallsyms would.
type symbols struct{}

func (symbols) Symbolize(addr uint64) string {
	if addr == dropLocation {
		return "nft_do_chain+0x1f3"
	}
	return fmt.Sprintf("%#x", addr)
}

// NewDecoder returns the collector's decoder with the fixture kernel's drop reasons,
// made into BTF the way the running kernel describes them.
func NewDecoder(clock collector.Clock) (*collector.Decoder, error) {
	enum := &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: []btf.EnumValue{
		{Name: "SKB_NOT_DROPPED_YET", Value: 0},
		{Name: "SKB_CONSUMED", Value: reasonConsumed},
		{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 3},
		{Name: "SKB_DROP_REASON_NO_SOCKET", Value: 4},
		{Name: "SKB_DROP_REASON_NETFILTER_DROP", Value: reasonNetfilterDrop},
	}}
	b, err := btf.NewBuilder([]btf.Type{enum}, nil)
	if err != nil {
		return nil, fmt.Errorf("building drop reason BTF: %w", err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("building drop reason BTF: %w", err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("reading drop reason BTF: %w", err)
	}
	reasons, err := collector.NewDropReasons(spec)
	if err != nil {
		return nil, err
	}
	return collector.NewDecoder(reasons, symbols{}, clock, nil), nil
}

// feeder plays the fixtures one event at a time, forever: each pass moves the clock on.
type feeder struct {
	f     *Fixtures
	clock *shiftClock
	dec   *collector.Decoder
	sp    *spanner.Spanner
	i     int
	ev    spanner.Event
	tick  int64
}

func newFeeder(f *Fixtures, out spanner.Sink) (*feeder, error) {
	clock := &shiftClock{}
	dec, err := NewDecoder(clock)
	if err != nil {
		return nil, err
	}
	return &feeder{f: f, clock: clock, dec: dec, sp: spanner.New(out, spanner.WithLogger(discardLog))}, nil
}

// decode decodes the next event only.
func (d *feeder) decode() error {
	err := d.dec.Decode(d.f.Record(d.i), &d.ev)
	if err != nil {
		err = fmt.Errorf("fixture record %d: %w", d.i, err)
	}
	if d.i++; d.i == d.f.Events {
		d.i = 0
		d.clock.offset += d.f.Duration + passGap
	}
	return err
}

// next decodes the next event and hands it to the spanner, ticking as the collector does.
func (d *feeder) next() error {
	if err := d.decode(); err != nil {
		return err
	}
	d.sp.HandleEvent(&d.ev)
	if t := d.ev.TimeUnixNano; t >= d.tick {
		d.sp.Tick(t)
		d.tick = t + tickEvery
	}
	return nil
}

// checkDecodes makes sure every fixture decodes, so a layout change fails loudly here
// instead of skewing the figures.
func checkDecodes(f *Fixtures) error {
	d, err := newFeeder(f, &countSink{})
	if err != nil {
		return err
	}
	for range f.Events {
		if err := d.decode(); err != nil {
			return err
		}
	}
	return nil
}
