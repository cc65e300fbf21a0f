package collector

import (
	"fmt"
	"maps"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/collector/pcapfilter"
)

// probeConsts are the .rodata values every probe copy shares.
type probeConsts struct {
	filter filterCfg
	kernel kernelCfg
	// ringWake is the fill of the ring, in bytes, past which an event wakes the reader.
	ringWake uint64
	// expression is filter.expression's programs, or nil.
	expression *pcapfilter.Filter
}

// setConsts writes the filter, the kernel facts and extra into cs's .rodata, and puts
// filter.expression's programs in place; both families name the first two alike.
func setConsts(cs *ebpf.CollectionSpec, consts probeConsts, extra map[string]any) error {
	if consts.expression != nil {
		if err := injectExpression(cs, consts.expression); err != nil {
			return err
		}
	}
	values := map[string]any{bpf.TracepointsVarFilter: consts.filter, bpf.TracepointsVarKcfg: consts.kernel,
		bpf.TracepointsVarRingWakeBytes: consts.ringWake}
	maps.Copy(values, extra)
	for v, val := range values {
		if err := cs.Variables[v].Set(val); err != nil {
			return fmt.Errorf("setting %s: %w", v, err)
		}
	}
	return nil
}

// sharedMapNames are the maps every probe family uses: the ring buffer, tracked skbs,
// counters, drops-only's trail, drop records and last drop, the nft names nft_do_chain's probes leave for a
// drop's free, --filter-container's followed namespaces, the count of what is followed, and
// filter.expression's scratch. skb.h declares them for all alike.
var sharedMapNames = []string{bpf.TracepointsMapEvents, bpf.TracepointsMapTracked, bpf.TracepointsMapCounters,
	bpf.TracepointsMapTrail, bpf.TracepointsMapDropScratch, bpf.TracepointsMapLastDrop, bpf.TracepointsMapNftDrops, bpf.TracepointsMapNftFreed,
	bpf.TracepointsMapFollowedNetns, bpf.TracepointsMapFollowedLive, bpf.TracepointsMapPcapScratch}

// newSharedMaps makes the maps both probe families use, keyed by their names in spec.
func (c *Collector) newSharedMaps(spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	shared := map[string]*ebpf.Map{}
	for _, name := range sharedMapNames {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return nil, fmt.Errorf("creating map %s: %w", name, err)
		}
		// Every collection using it holds its own copy.
		c.closers = append(c.closers, m.Close)
		shared[name] = m
	}
	return shared, nil
}

func closeLinks(links []link.Link) {
	for _, l := range links {
		_ = l.Close()
	}
}
