//go:build !amd64

package collector

import (
	"context"
	"errors"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// attachFunctions: the function probes read x86-64 registers (kprobes) and are built
// for amd64 only, so other architectures run with tracepoints alone.
func (c *Collector) attachFunctions(_ context.Context, _ *btf.Cache, _ map[string]*ebpf.Map, _ kernelBTF, functions []probe, _ probeConsts) (r functionsResult) {
	if c.backend == BackendTracepoint {
		return r
	}
	const why = "function probes are built for amd64 only"
	for _, p := range functions {
		r.skipped = append(r.skipped, Skipped{p.name(), why})
	}
	r.skipped = append(r.skipped, Skipped{cloneFunction, why})
	if c.backend != BackendAuto {
		r.err = errors.New("--backend " + c.backend.String() + ": function probes are built for amd64 only; use --backend tracepoint")
	}
	return r
}
