//go:build !amd64

package collector

import (
	"errors"

	"github.com/cilium/ebpf/btf"
)

// attachFunctions: the function probes read x86-64 registers (kprobes) and are built
// for amd64 only, so other architectures run with tracepoints alone.
func (c *Collector) attachFunctions(types *btf.Spec, inKernel bool, sigs []signature, fcfg filterCfg) error {
	if c.backend == "tracepoint" || len(c.functions) == 0 {
		return nil
	}
	for _, name := range c.functions {
		c.summary.Skipped = append(c.summary.Skipped, Skipped{name, "function probes are built for amd64 only"})
	}
	if c.backend != "auto" {
		return errors.New("--backend " + c.backend + ": function probes are built for amd64 only; use --backend tracepoint")
	}
	return nil
}
