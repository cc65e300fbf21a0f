package bpf

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// trailEvent is an event as the trail keeps it, for the harness.
type trailEvent struct {
	skb            uint64
	probe          uint16
	l3, l4         uint8
	seq, ack       uint32
	flags          uint8
	ifindex, netns uint32
}

// The probes' look back through a CPU's trail, compiled for the host from the header
// they include, takes a drop's own events and stops where its skb's life began.
func TestTrailWalkTakesTheDroppedSkbsOwnEventsOnly(t *testing.T) {
	const a, b = 0xffff0000a, 0xffff0000b
	queue, receive := uint16(TracepointsProbeIdPROBE_NET_DEV_QUEUE), uint16(TracepointsProbeIdPROBE_NETIF_RECEIVE_SKB)
	consume, copied := uint16(TracepointsProbeIdPROBE_CONSUME_SKB), uint16(TracepointsProbeIdPROBE_SKB_COPY_DATAGRAM_IOVEC)
	fn := uint16(TracepointsProbeIdPROBE_FUNC_BASE)
	udp := func(skb uint64, probe uint16, ifindex uint32) trailEvent {
		return trailEvent{skb: skb, probe: probe, l3: 4, l4: 17, ifindex: ifindex, netns: 1}
	}
	tcp := func(skb uint64, probe uint16, seq uint32, ifindex uint32) trailEvent {
		return trailEvent{skb: skb, probe: probe, l3: 4, l4: 6, seq: seq, ack: 7, flags: 0x10, ifindex: ifindex, netns: 1}
	}
	copy := trailEvent{skb: a, probe: copied} // copies keep no tuple (on_copy_trail)
	udpDrop, tcpDrop := trailEvent{skb: a, l3: 4, l4: 17}, trailEvent{skb: a, l3: 4, l4: 6, seq: 2, ack: 7, flags: 0x10}
	many := make([]trailEvent, 70)
	for i := range many {
		many[i] = trailEvent{skb: a, probe: fn}
	}
	cases := []struct {
		name      string
		trail     []trailEvent
		drop      trailEvent
		want      []uint64 // ts of the events taken, newest first
		delivered bool
		cut       bool
		unmatched bool // no event taken carries a tuple: none matched the filters
	}{
		{"another skb's events are passed over", []trailEvent{udp(a, queue, 2), udp(b, receive, 3), udp(a, receive, 3)}, udpDrop,
			[]uint64{3, 1}, false, false, false},
		{"the tombstone of a free at the address ends the look back", []trailEvent{udp(a, receive, 3), {skb: a, probe: consume}, udp(a, receive, 3)}, udpDrop,
			[]uint64{3}, false, false, false},
		{"a second receive on one device began the life", []trailEvent{udp(a, receive, 3), udp(a, fn, 0), udp(a, receive, 3), udp(a, fn, 0)}, udpDrop,
			[]uint64{4, 3}, false, false, false},
		{"loopback's queueing and receive on one device are one life", []trailEvent{udp(a, queue, 1), udp(a, receive, 1)}, udpDrop,
			[]uint64{2, 1}, false, false, false},
		{"another TCP segment at the address ends the look back", []trailEvent{tcp(a, receive, 1, 3), tcp(a, receive, 2, 4)}, tcpDrop,
			[]uint64{2}, false, false, false},
		{"an event without a protocol says nothing of identity", []trailEvent{tcp(a, receive, 2, 3), {skb: a, probe: fn}}, tcpDrop,
			[]uint64{2, 1}, false, false, false},
		{"copies to a reader after delivery make the skb delivered", []trailEvent{udp(a, receive, 3), copy, copy}, udpDrop,
			[]uint64{3, 2, 1}, true, false, false},
		{"a copy older than an event that is no copy was an earlier skb's", []trailEvent{copy, udp(a, receive, 3)}, udpDrop,
			[]uint64{2}, false, false, false},
		{"copies alone say nothing of the filters", []trailEvent{copy}, udpDrop,
			[]uint64{1}, true, false, true},
		{"a life longer than the trail is cut, and says so", many, udpDrop,
			tsRange(70, 7), false, true, true},
		{"an empty trail gives nothing", nil, udpDrop, nil, false, false, true},
	}
	bin := buildHarness(t, "trail")
	var in bytes.Buffer
	for _, c := range cases {
		fmt.Fprintln(&in, "trail", len(c.trail))
		for _, e := range c.trail {
			fmt.Fprintln(&in, e.skb, e.probe, e.l3, e.l4, e.seq, e.ack, e.flags, e.ifindex, e.netns)
		}
		d := c.drop
		fmt.Fprintln(&in, "drop", d.skb, d.l3, d.l4, d.seq, d.ack, d.flags)
	}
	run := exec.Command(bin)
	run.Stdin = &in
	out, err := run.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("harness answered %d cases of %d:\n%s", len(lines), len(cases), out)
	}
	for i, c := range cases {
		f := strings.Fields(lines[i])
		var got []uint64
		for _, s := range f[4:] {
			ts, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ts)
		}
		if n, _ := strconv.Atoi(f[0]); n != len(got) || !slices.Equal(got, c.want) || (f[1] == "1") != c.delivered || (f[2] == "1") != c.cut || (f[3] == "0") != c.unmatched {
			t.Errorf("%s: took %v (n %s, delivered %s, cut %s, matched %s); want %v, delivered %v, cut %v, unmatched %v",
				c.name, got, f[0], f[1], f[2], f[3], c.want, c.delivered, c.cut, c.unmatched)
		}
	}
}

// tsRange is from, from-1, … down to to.
func tsRange(from, to uint64) []uint64 {
	var r []uint64
	for ts := from; ts >= to; ts-- {
		r = append(r, ts)
	}
	return r
}
