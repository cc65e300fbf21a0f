package collector

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/collector/pcapfilter"
	"github.com/pktspan/pktspan/config"
)

// The placeholders skb.h calls for filter.expression: one per link type.
const (
	pcapEthernetFunc = "pcap_l2"
	pcapRawIPFunc    = "pcap_l3"
)

// pcapLayout is struct pcap_packet's, where the translated programs load from.
var pcapLayout = func() pcapfilter.Layout {
	var p bpf.TracepointsPcapPacket
	return pcapfilter.Layout{
		MemOffset:  int(unsafe.Offsetof(p.Mem)),
		DataOffset: int(unsafe.Offsetof(p.Data)),
		Snap:       len(p.Data),
	}
}()

// CompileExpression compiles filter.expression for the probes (WithExpression), once,
// before anything touches the kernel. libpcap's refusal of the expression, and an
// expression too large for the probes, are configuration errors.
func CompileExpression(expr string) (*pcapfilter.Filter, error) {
	f, err := pcapfilter.New(expr, pcapLayout)
	var perr *pcapfilter.Error
	switch {
	case errors.As(err, &perr):
		return nil, &config.Error{Key: "filter.expression", Value: shortExpr(expr), Reason: "is refused by libpcap: " + perr.Msg}
	case errors.Is(err, pcapfilter.ErrTooLarge):
		return nil, &config.Error{Key: "filter.expression", Value: shortExpr(expr),
			Reason: "is too large for the kernel's verifier (" + err.Error() + "); shorten it or use the --filter-* flags"}
	case err != nil:
		return nil, fmt.Errorf("filter.expression %q: %w", shortExpr(expr), err)
	}
	return f, nil
}

// shortExpr keeps an error about a long expression one readable line.
func shortExpr(expr string) string {
	const keep = 60
	if r := []rune(expr); len(r) > keep {
		return string(r[:keep]) + "…"
	}
	return expr
}

// WithExpression evaluates f, filter.expression compiled by CompileExpression, in the
// kernel at each skb's first sighting, AND-ed with the other filters.
func WithExpression(f *pcapfilter.Filter) Option { return func(c *Collector) { c.expression = f } }

// injectExpression puts f's programs in place of the placeholders in every program of
// cs that calls them.
func injectExpression(cs *ebpf.CollectionSpec, f *pcapfilter.Filter) error {
	for name, prog := range cs.Programs {
		if err := pcapfilter.Inject(prog, pcapEthernetFunc, f.Ethernet); err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
		if err := pcapfilter.Inject(prog, pcapRawIPFunc, f.RawIP); err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
	}
	return nil
}
