package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/bpfstats"
)

func TestExpressionCostIsARatioToTheFlagsInTheSameRound(t *testing.T) {
	win := func(ns time.Duration) window {
		return window{bpf: bpfstats.Window{"net_dev_queue": {Runtime: ns * 1000, Count: 1000}}}
	}
	res := results{w: workload{name: "TCP"}, runs: map[string][]window{
		"a": {win(40), win(50)},
		"e": {win(60), win(100)},
	}}
	var r report
	reportExpressionCost(&r, res)
	out := strings.Join(r.lines, "\n")
	for _, want := range []string{"net_dev_queue            1.75× (1.50×–2.00×)", "all hooks                1.75×"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
