package kernelmatrix

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pktspan/pktspan/internal/bpfstats"
)

// The VM scenario's cost measurement (matrix-scenario --cost): its file in the run's
// output directory, and its modes.
const (
	CostFile       = "cost.json"
	CostFloor      = "floor"      // an empty tp_btf program at each tracepoint
	CostNothing    = "nothing"    // pktspan with a filter matching no lab packet
	CostEverything = "everything" // pktspan following every lab packet
)

// Cost is what one backend's programs cost per call in one boot: each mode's BPF
// statistics by hook (a tracepoint, or a program's name where the link names no
// tracepoint: fentry_skb_0, kprobe_skb_1, …).
type Cost struct {
	Backend string
	Modes   map[string]bpfstats.Window
}

// Table prints a mode's hooks, busiest first, with ns per call and calls, and all
// hooks together.
func (c Cost) Table(mode string) string {
	w := c.Modes[mode]
	hooks := slices.SortedFunc(maps.Keys(w), func(a, b string) int {
		return cmp.Or(cmp.Compare(w[b].Count, w[a].Count), cmp.Compare(a, b))
	})
	var b strings.Builder
	for _, h := range hooks {
		if w[h].Count > 0 {
			fmt.Fprintf(&b, "  %-28s %8.0f ns/call %9d calls\n", h, w[h].NsPerCall(), w[h].Count)
		}
	}
	t := w.Total()
	fmt.Fprintf(&b, "  %-28s %8.0f ns/call %9d calls\n", "all", t.NsPerCall(), t.Count)
	return b.String()
}

// PerCall is a mode's mean run time per call, all hooks together.
func (c Cost) PerCall(mode string) float64 { return c.Modes[mode].Total().NsPerCall() }

// PerPacket is a mode's run time of every program over the packets sent, in ns: each
// packet is queued once (net_dev_queue), whatever else a backend probes, so it compares
// backends whose programs differ in number and kind.
func (c Cost) PerPacket(mode string) float64 {
	w := c.Modes[mode]
	if w["net_dev_queue"].Count == 0 {
		return 0
	}
	return float64(w.Total().Runtime.Nanoseconds()) / float64(w["net_dev_queue"].Count)
}
