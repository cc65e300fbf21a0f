package main

import (
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/bpfstats"
)

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

func TestPerCallComparisonsPairEachRoundWithItsOwnFloor(t *testing.T) {
	calls := func(ns ...float64) []window {
		var ws []window
		for _, n := range ns {
			ws = append(ws, window{bpf: bpfstats.Window{"net_dev_xmit": {Runtime: time.Duration(n * 1000), Count: 1000}}})
		}
		return ws
	}
	// Round 2's floor is high and so is its probe: paired by round, the ratio stays 2×.
	res := results{runs: map[string][]window{"floor": calls(30, 60, 31), "a": calls(60, 120, 62)}}
	if got := res.relative("a", "floor", "net_dev_xmit"); got != (spread{2, 2, 2}) {
		t.Errorf("relative = %v, want 2× in every round", got)
	}
	if got := res.extra("a", "floor", "net_dev_xmit"); got != (spread{31, 30, 60}) {
		t.Errorf("extra = %v, want a median of 31 ns (30–60)", got)
	}
	if got := res.extra("a", "floor", "consume_skb"); got != (spread{}) {
		t.Errorf("extra at a hook never called = %v, want nothing", got)
	}
}
