package main

import (
	"maps"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// testdata/fdinfo is a pktspan process's fdinfo (tp_btf links, programs, a map, a file,
// an eventpoll), with one fentry-style tracing link added by hand.
func TestLinkedProgramsAreTheLinksProgramsByTracepoint(t *testing.T) {
	got, err := linkedPrograms("testdata/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[ebpf.ProgramID]string{
		188: "netif_receive_skb", 190: "net_dev_queue", 192: "net_dev_xmit", 186: "kfree_skb",
		189: "consume_skb", 187: "skb_copy_datagram_iovec", 191: "tcp_retransmit_skb",
		195: "", // a tracing link names no tracepoint: labelled by its program's name
	}
	if !maps.Equal(got, want) {
		t.Errorf("linked programs\n got %v\nwant %v", got, want)
	}
}

func TestParseFdinfoRejectsABadProgramID(t *testing.T) {
	if _, _, err := parseFdinfo([]byte("link_id:\t3\nprog_id:\tx\n")); err == nil {
		t.Error("prog_id x parsed")
	}
}

func TestSpreadIsMedianMinMax(t *testing.T) {
	for _, c := range []struct {
		xs         []float64
		want       spread
		verb, text string
	}{
		{[]float64{0.97}, spread{0.97, 0.97, 0.97}, "%.3f", "0.970"},
		{[]float64{3, 1, 2}, spread{2, 1, 3}, "%.3f", "2.000 (1.000–3.000)"},
		{[]float64{4, 1, 2, 3}, spread{2.5, 1, 4}, "%.3f", "2.500 (1.000–4.000)"},
		{nil, spread{}, "%.3f", "0.000"},
		{[]float64{1.25, 1, 1.4}, spread{1.25, 1, 1.4}, "%.0f", "1"}, // the spread only where it shows
	} {
		s := spreadOf(c.xs)
		if s != c.want || s.format(c.verb) != c.text {
			t.Errorf("spreadOf(%v) = %v %q, want %v %q", c.xs, s, s.format(c.verb), c.want, c.text)
		}
	}
}

func TestCallStatsPerCallAndTotal(t *testing.T) {
	w := bpfWindow{"kfree_skb": {runtime: 600, calls: 2}, "consume_skb": {runtime: 300, calls: 4}, "tcp_retransmit_skb": {}}
	if got := w.total(); got != (callStats{900, 6}) || got.nsPerCall() != 150 {
		t.Errorf("total %v, %v ns/call", got, got.nsPerCall())
	}
	if got := w["tcp_retransmit_skb"].nsPerCall(); got != 0 {
		t.Errorf("a hook never called costs %v ns/call", got)
	}
}

func TestParseStatCPUCountsAfterTheCommandName(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250, stime 75 ticks.
	line := "4242 (pkt span)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 1234 0 0\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (pktspan) S 1 2")); err == nil {
		t.Error("a short line parsed")
	}
}
