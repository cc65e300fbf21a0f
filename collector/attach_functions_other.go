//go:build !amd64

package collector

import (
	"errors"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// attachFunctions: the function probes read x86-64 registers (kprobes) and are built
// for amd64 only, so other architectures run with tracepoints alone.
func (c *Collector) attachFunctions(_ *btf.Cache, _ map[string]*ebpf.Map, types *btf.Spec, inKernel bool, sigs []signature, consts probeConsts) (int, error) {
	if c.backend == "tracepoint" {
		return 0, nil
	}
	for _, name := range slices.Concat(c.functions, []string{cloneFunction}) {
		c.summary.Skipped = append(c.summary.Skipped, Skipped{name, "function probes are built for amd64 only"})
	}
	if c.backend != "auto" {
		return 0, errors.New("--backend " + c.backend + ": function probes are built for amd64 only; use --backend tracepoint")
	}
	return 0, nil
}
