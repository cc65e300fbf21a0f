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
	names  []string // by value; "" where the enum has no such value
	normal []bool   // by value: frees on the normal path, not drops
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
	r := &DropReasons{names: make([]string, max+1), normal: make([]bool, max+1), unknown: make(map[uint32]string)}
	for v, name := range values {
		if v <= max {
			name = strings.TrimPrefix(name, "SKB_DROP_REASON_")
			r.names[v] = strings.TrimPrefix(name, "SKB_")
			r.normal[v] = r.names[v] == "NOT_DROPPED_YET" || r.names[v] == "CONSUMED"
		}
	}
	return r
}

// TreatAsNormal makes the named reasons normal frees, not drops: some kernels free
// packets on their normal path with a reason (6.18 frees the handshake's last ACK as
// NOT_SPECIFIED). Every name must be one of this kernel's.
func (r *DropReasons) TreatAsNormal(names []string) error {
	for _, name := range names {
		v := slices.Index(r.names, name)
		if v < 0 || name == "" {
			return fmt.Errorf("probes.normal_free_reasons: %q is not a drop reason of this kernel (enum skb_drop_reason without its SKB_DROP_REASON_ prefix, such as NOT_SPECIFIED)", name)
		}
		r.normal[v] = true
	}
	return nil
}

// Name returns the reason's name and whether it is a drop at all: NOT_DROPPED_YET,
// CONSUMED and the reasons given to TreatAsNormal are frees on the normal path.
func (r *DropReasons) Name(v uint32) (string, bool) {
	name := ""
	if int(v) < len(r.names) {
		name = r.names[v]
	}
	if name != "" {
		return name, !r.normal[v]
	}
	if name == "" {
		var ok bool
		if name, ok = r.unknown[v]; !ok {
			if len(r.unknown) >= maxUnknownReasons {
				clear(r.unknown)
			}
			name = "REASON_" + strconv.FormatUint(uint64(v), 10)
			r.unknown[v] = name
		}
	}
	return name, true
}

// NotDrops returns the values whose names are normal frees, for the probes to tell a
// drop from a free as Name does.
func (r *DropReasons) NotDrops() []uint32 {
	var out []uint32
	for v, normal := range r.normal {
		if normal {
			out = append(out, uint32(v))
		}
	}
	return out
}
