package collector

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// DropReasons names the values of the running kernel's enum skb_drop_reason.
type DropReasons struct {
	names []string // by value; "" where the enum has no such value
	// unknown caches names made up for values the enum lacks (other subsystems' reasons).
	unknown map[uint32]string
}

const maxUnknownReasons = 256

// NewDropReasons builds the table from enum skb_drop_reason in spec (the kernel's BTF).
func NewDropReasons(spec *btf.Spec) (*DropReasons, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("finding enum skb_drop_reason in kernel BTF: %w", err)
	}
	values := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		values[uint32(v.Value)] = v.Name
	}
	return dropReasonsFrom(values), nil
}

// dropReasonsFrom takes the enum's values as BTF names them (SKB_DROP_REASON_NO_SOCKET,
// SKB_CONSUMED, SKB_NOT_DROPPED_YET) and keeps the names users know (NO_SOCKET).
func dropReasonsFrom(values map[uint32]string) *DropReasons {
	var max uint32
	for v := range values {
		if v < 1<<16 && v > max {
			max = v
		}
	}
	r := &DropReasons{names: make([]string, max+1), unknown: make(map[uint32]string)}
	for v, name := range values {
		if v <= max {
			name = strings.TrimPrefix(name, "SKB_DROP_REASON_")
			r.names[v] = strings.TrimPrefix(name, "SKB_")
		}
	}
	return r
}

// Value returns the value of the reason named name on this kernel.
func (r *DropReasons) Value(name string) (uint32, bool) {
	v := slices.Index(r.names, name)
	if v < 0 || name == "" {
		return 0, false
	}
	return uint32(v), true
}

// Name returns the reason's name; a value the enum lacks gets REASON_<value>. Whether
// the free is a drop is the probes' decision (bpf/headers/drops.h).
func (r *DropReasons) Name(v uint32) string {
	if int(v) < len(r.names) && r.names[v] != "" {
		return r.names[v]
	}
	name, ok := r.unknown[v]
	if !ok {
		if len(r.unknown) >= maxUnknownReasons {
			clear(r.unknown)
		}
		name = "REASON_" + strconv.FormatUint(uint64(v), 10)
		r.unknown[v] = name
	}
	return name
}
