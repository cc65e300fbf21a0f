package spanner

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// t0 is the time of the first event of every scenario; rendered times are relative to it.
const t0 = int64(1_700_000_000_000_000_000)

// recordSink keeps deep copies of every group, since the Spanner reuses its buffers.
type recordSink struct{ groups [][]Span }

func (r *recordSink) Export(g []Span) {
	cp := make([]Span, len(g))
	for i, sp := range g {
		sp.Attrs = slices.Clone(sp.Attrs)
		sp.Events = slices.Clone(sp.Events)
		for k := range sp.Events {
			sp.Events[k].Attrs = slices.Clone(sp.Events[k].Attrs)
		}
		sp.Links = slices.Clone(sp.Links)
		cp[i] = sp
	}
	r.groups = append(r.groups, cp)
}

func (r *recordSink) Shutdown(context.Context) error { return nil }
func (r *recordSink) Stats() SinkStats               { return SinkStats{} }

func (r *recordSink) spans() []Span {
	var all []Span
	for _, g := range r.groups {
		all = append(all, g...)
	}
	return all
}

// counterIDs hands out 1, 2, 3… so that goldens do not depend on randomness.
func counterIDs() Option {
	var n uint64
	return WithIDSource(
		func() TraceID {
			n++
			var id TraceID
			binary.BigEndian.PutUint64(id[8:], n)
			return id
		},
		func() SpanID {
			n++
			var id SpanID
			binary.BigEndian.PutUint64(id[:], n)
			return id
		},
	)
}

// harness drives one Spanner with events placed at offsets from t0.
type harness struct {
	s    *Spanner
	sink *recordSink
}

var discardLog = slog.New(slog.DiscardHandler)

// newHarness is a harness whose IDs count up (counterIDs), for stable goldens.
func newHarness(opts ...Option) *harness {
	return randomHarness(append([]Option{counterIDs(), WithSKBIDKey(goldenSKBKey)}, opts...)...)
}

// goldenSKBKey keys the opaque skb IDs of goldens, so that they are the same every run.
var goldenSKBKey = [16]byte{'p', 'k', 't', 's', 'p', 'a', 'n'}

// randomHarness is a harness with the real random ID generators, as two hosts have.
func randomHarness(opts ...Option) *harness {
	sink := &recordSink{}
	return &harness{s: New(sink, append([]Option{WithLogger(discardLog)}, opts...)...), sink: sink}
}

// pkt describes what the hooks see of one skb; stage events copy it.
type pkt struct {
	skb     uint64
	tuple   Tuple
	tcp     TCP
	ifindex uint32
	ifname  string
	netns   uint32
	len     uint32
	mark    uint32
}

type mod func(*Event)

func (h *harness) ev(at time.Duration, p pkt, st *Stage, mods ...mod) {
	ev := Event{
		TimeUnixNano: t0 + int64(at),
		SKB:          p.skb,
		Stage:        st,
		Netns:        p.netns,
		Ifindex:      p.ifindex,
		Ifname:       p.ifname,
		Len:          p.len,
		Mark:         p.mark,
		Tuple:        p.tuple,
		TCP:          p.tcp,
	}
	for _, m := range mods {
		m(&ev)
	}
	h.s.HandleEvent(&ev)
}

func (h *harness) tick(at time.Duration)  { h.s.Tick(t0 + int64(at)) }
func (h *harness) flush(at time.Duration) { h.s.Flush(t0 + int64(at)) }

func enter(ev *Event) { ev.Kind = KindEnter }

func exit(ret int64) mod {
	return func(ev *Event) { ev.Kind, ev.Retval = KindExit, ret }
}

func drop(reason, location string) mod {
	return func(ev *Event) { ev.Drop, ev.DropReason, ev.Location = true, reason, location }
}

// normalFree is a kfree_skb the probes called a normal end (bpf/headers/drops.h).
func normalFree(reason, location string) mod {
	return func(ev *Event) { ev.NormalFree, ev.DropReason, ev.Location = true, reason, location }
}

// stack sets the drop's kernel stack (--stack).
func stack(frames string) mod {
	return func(ev *Event) { ev.Stack = frames }
}

// nft sets the nft table and chain of a drop (function backends).
func nft(table, chain string) mod {
	return func(ev *Event) { ev.NFT = NFT{table, chain} }
}

func nf(hook, pf uint8, verdict int32) mod {
	return func(ev *Event) { ev.Netfilter = Netfilter{Hook: hook, PF: pf, Verdict: verdict, Valid: true} }
}

func dev(ifindex uint32, ifname string, netns uint32) mod {
	return func(ev *Event) { ev.Ifindex, ev.Ifname, ev.Netns = ifindex, ifname, netns }
}

// ct sets the conntrack original tuple the hook saw.
func ct(tu Tuple) mod { return func(ev *Event) { ev.CT = tu } }

// seenAs sets the packet's tuple as this hook saw it (after a translation).
func seenAs(tu Tuple) mod { return func(ev *Event) { ev.Tuple = tu } }

// icmp sets the ICMP header's type and code, and the header an error quotes.
func icmp(typ, code uint8, quoted Tuple) mod {
	return func(ev *Event) { ev.ICMP, ev.Quoted = ICMP{Type: typ, Code: code}, quoted }
}

func segs(n uint16) mod { return func(ev *Event) { ev.Segments = n } }

// cloneOf marks the event as skb_clone's return, for a clone of parent.
func cloneOf(parent uint64) mod { return func(ev *Event) { ev.Parent = parent } }

// noTuple is an event from a hook that could not read the IP header.
func noTuple(ev *Event) { ev.Tuple, ev.TCP = Tuple{}, TCP{} }

var (
	stRecv    = &Stage{Name: "net:netif_receive_skb", Pass: PassReceive}
	stIPRcv   = &Stage{Name: "ip_rcv_core", Pointer: true}
	stNF      = &Stage{Name: "nf_hook_slow", NFHook: true}
	stLocal   = &Stage{Name: "ip_local_deliver"}
	stTCPRcv  = &Stage{Name: "tcp_v4_rcv"}
	stUDPRcv  = &Stage{Name: "udp_rcv"}
	stOutput  = &Stage{Name: "ip_output"}
	stQueue   = &Stage{Name: "net:net_dev_queue", Pass: PassQueue}
	stXmit    = &Stage{Name: "net:net_dev_xmit"}
	stCopy    = &Stage{Name: "skb:skb_copy_datagram_iovec", Deliver: true}
	stKfree   = &Stage{Name: "skb:kfree_skb", Free: true}
	stConsume = &Stage{Name: "skb:consume_skb", Free: true}
	stForward = &Stage{Name: "ip_forward"}
	stClone   = &Stage{Name: "skb_clone", Clone: true}
	stRetx    = &Stage{Name: "tcp:tcp_retransmit_skb", Retransmit: true}
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// render draws every exported span as one indented tree per trace, traces in the order
// they first reached the sink, followed by the non-zero counters.
func render(spans []Span, st Stats) string {
	traceNo := map[TraceID]int{}
	var traces []TraceID
	byID := map[SpanID]Span{}
	for _, sp := range spans {
		if _, ok := traceNo[sp.TraceID]; !ok {
			traces = append(traces, sp.TraceID)
			traceNo[sp.TraceID] = len(traces)
		}
		byID[sp.SpanID] = sp
	}
	children := map[SpanID][]Span{}
	var tops []Span
	for _, sp := range spans {
		if _, ok := byID[sp.ParentID]; ok && sp.ParentID != (SpanID{}) {
			children[sp.ParentID] = append(children[sp.ParentID], sp)
		} else {
			tops = append(tops, sp)
		}
	}
	for _, c := range children {
		slices.SortStableFunc(c, func(a, b Span) int { return compareInt(a.StartUnixNano, b.StartUnixNano) })
	}

	var b strings.Builder
	var draw func(sp Span, depth int)
	draw = func(sp Span, depth int) {
		ind := strings.Repeat("  ", depth)
		fmt.Fprintf(&b, "%s%s [%s .. %s]", ind, sp.Name, rel(sp.StartUnixNano), rel(sp.EndUnixNano))
		if sp.Kind != SpanKindInternal {
			fmt.Fprintf(&b, " kind=%d", sp.Kind)
		}
		if want := roleByName(sp.Name); sp.Role != want {
			fmt.Fprintf(&b, " ROLE %d, WANT %d", sp.Role, want)
		}
		switch sp.Status {
		case StatusError:
			fmt.Fprintf(&b, " ERROR %q", sp.StatusDescription)
		case StatusOK:
			b.WriteString(" OK")
		}
		if sp.ParentID != (SpanID{}) {
			if _, ok := byID[sp.ParentID]; !ok {
				b.WriteString(" (parent not exported)")
			}
		}
		b.WriteByte('\n')
		for _, kv := range sortedAttrs(sp.Attrs) {
			fmt.Fprintf(&b, "%s  | %s\n", ind, kv)
		}
		for _, e := range sp.Events {
			fmt.Fprintf(&b, "%s  @ %s %s %s\n", ind, e.Name, rel(e.TimeUnixNano), strings.Join(sortedAttrs(e.Attrs), " "))
		}
		for _, l := range sp.Links {
			target := "unknown span"
			if ls, ok := byID[l.SpanID]; ok && ls.TraceID == l.TraceID {
				target = ls.Name
				for _, kv := range ls.Attrs {
					if kv.Key == attrkey.SKBAddress {
						target += " " + kv.Value.AsString()
					}
				}
			}
			fmt.Fprintf(&b, "%s  -> link to trace %d %q\n", ind, traceNo[l.TraceID], target)
		}
		for _, c := range children[sp.SpanID] {
			draw(c, depth+1)
		}
	}
	for _, tr := range traces {
		// Every span of a trace must carry the same random flag.
		kind := ""
		for _, sp := range spans {
			if sp.TraceID != tr {
				continue
			}
			k := "derived"
			if sp.RandomTraceID {
				k = "random"
			}
			switch kind {
			case "", k:
				kind = k
			default:
				kind = "MIXED RANDOM FLAGS"
			}
		}
		fmt.Fprintf(&b, "trace %d (%s id)\n", traceNo[tr], kind)
		for _, sp := range tops {
			if sp.TraceID == tr {
				draw(sp, 1)
			}
		}
	}
	b.WriteString("stats\n")
	v := reflect.ValueOf(st)
	for i := range v.NumField() {
		if n := v.Field(i).Uint(); n != 0 {
			fmt.Fprintf(&b, "  %s=%d\n", v.Type().Field(i).Name, n)
		}
	}
	return b.String()
}

// roleByName is the role a span of this name must have; a golden never shows a role, so
// every scenario checks the spanner's roles without showing them.
func roleByName(name string) SpanRole {
	switch {
	case strings.HasPrefix(name, "flow "):
		return RoleFlow
	case name == packetSpanName:
		return RolePacket
	case name == exchangeSpanName:
		return RoleExchange
	}
	return RoleStage
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func rel(ns int64) string { return "+" + time.Duration(ns-t0).String() }

func sortedAttrs(kvs []attribute.KeyValue) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		v := kv.Value.String()
		if kv.Value.Type() == attribute.STRING {
			v = strconv.Quote(v)
		}
		out = append(out, string(kv.Key)+"="+v)
	}
	slices.Sort(out)
	return out
}

// checkGolden compares got with testdata/name.golden, or rewrites it under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatalf("write golden: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("span tree differs from %s (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
