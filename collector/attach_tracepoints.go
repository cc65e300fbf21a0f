package collector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// tracepointsResult is what attachTracepoints did.
type tracepointsResult struct {
	coll     *ebpf.Collection
	links    []link.Link
	attached []Attached
	skipped  []Skipped
	err      error
}

// chooseTracepoints keeps one program per tracepoint this kernel has in spec and
// deletes the rest, so loading never fails on a tracepoint the kernel lacks: tp_btf
// where the types are the running kernel's, raw_tp otherwise.
func (c *Collector) chooseTracepoints(spec *ebpf.CollectionSpec, kb kernelBTF) []probe {
	var chosen []probe
	for _, p := range tracepointProbes() {
		switch {
		case !kb.hasTracepoint(p.target):
			delete(spec.Programs, p.tpBTF)
			delete(spec.Programs, p.rawTP)
			c.summary.Skipped = append(c.summary.Skipped, Skipped{p.name(), "not on this kernel"})
			c.log.Warn("tracepoint not on this kernel, skipped", "tracepoint", p.name())
			continue
		case kb.inKernel:
			delete(spec.Programs, p.rawTP)
		default:
			delete(spec.Programs, p.tpBTF)
		}
		chosen = append(chosen, p)
	}
	return chosen
}

// attachTracepoints loads the tracepoint family and attaches the chosen tracepoints.
// It runs beside attachFunctions, so it leaves the Collector alone; what it made is
// in the result even when it fails, for the caller to release.
func (c *Collector) attachTracepoints(ctx context.Context, spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, chosen []probe) tracepointsResult {
	start := time.Now()
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			c.log.Debug("verifier log", "log", fmt.Sprintf("%+v", verr))
		}
		return tracepointsResult{err: fmt.Errorf("loading eBPF probes into the kernel: %w", err)}
	}
	r := tracepointsResult{coll: coll}
	for _, p := range chosen {
		if err := ctx.Err(); err != nil {
			r.err = fmt.Errorf("attaching tracepoints: %w", err)
			return r
		}
		l, via, err := attachTracepoint(coll, p)
		if err != nil {
			r.skipped = append(r.skipped, Skipped{p.name(), err.Error()})
			c.log.Warn("tracepoint not attached", "tracepoint", p.name(), "error", err)
			continue
		}
		r.links = append(r.links, l)
		r.attached = append(r.attached, Attached{p.name(), via})
	}
	c.log.Debug("tracepoints attached", "took", time.Since(start))
	return r
}

// attachTracepoint attaches whichever of p's two programs chooseTracepoints kept.
func attachTracepoint(coll *ebpf.Collection, p probe) (link.Link, string, error) {
	if prog := coll.Programs[p.tpBTF]; prog != nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return nil, "", fmt.Errorf("attaching tp_btf %s: %w", p.target, err)
		}
		return l, "tp_btf", nil
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: p.target, Program: coll.Programs[p.rawTP]})
	if err != nil {
		return nil, "", fmt.Errorf("attaching raw_tp %s: %w", p.target, err)
	}
	return l, "raw_tp", nil
}
