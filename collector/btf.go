package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"

	"github.com/pktspan/pktspan/config"
)

const kernelBTFPath = "/sys/kernel/btf/vmlinux"

var errNoBTF = errors.New("no kernel BTF")

// kernelBTF is the kernel's types and whether they are the running kernel's own: then
// tp_btf and fentry programs can attach; with --btf FILE only raw tracepoints and
// kprobes can, relocated against the file.
type kernelBTF struct {
	types    *btf.Spec
	inKernel bool
}

// loadBTF reads the kernel's types from --btf or /sys/kernel/btf/vmlinux (through
// cache, which every load shares).
func (c *Collector) loadBTF(cache *btf.Cache) (kernelBTF, error) {
	if c.btfPath != "" {
		spec, err := loadBTFFile(c.btfPath)
		if err != nil {
			return kernelBTF{}, fmt.Errorf("reading BTF from --btf %s: %w", c.btfPath, err)
		}
		c.summary.BTF = c.btfPath
		return kernelBTF{types: spec}, nil
	}
	if _, err := os.Stat(kernelBTFPath); err != nil {
		return kernelBTF{}, fmt.Errorf("%w: %s is missing; use a kernel built with CONFIG_DEBUG_INFO_BTF=y or pass --btf FILE with this kernel's BTF", errNoBTF, kernelBTFPath)
	}
	spec, err := cache.Kernel()
	if err != nil {
		return kernelBTF{}, fmt.Errorf("reading kernel BTF from %s: %w", kernelBTFPath, err)
	}
	c.summary.BTF = kernelBTFPath
	return kernelBTF{types: spec, inKernel: true}, nil
}

// collectionOptions are the options of every probe load: the shared BTF cache, the
// maps both families use, and the kernel types to relocate against when they are not
// the running kernel's.
func (kb kernelBTF) collectionOptions(cache *btf.Cache, shared map[string]*ebpf.Map) ebpf.CollectionOptions {
	opts := ebpf.CollectionOptions{Cache: cache, MapReplacements: shared}
	if !kb.inKernel {
		opts.Programs.KernelTypes = kb.types
	}
	return opts
}

// hasTracepoint reports whether the kernel has the tracepoint event.
func (kb kernelBTF) hasTracepoint(event string) bool {
	var typedef *btf.Typedef
	return kb.types.TypeByName("btf_trace_"+event, &typedef) == nil
}

// retransmitHasErr is the probes' retransmit_has_err constant: 1 when the kernel's
// tcp_retransmit_skb tracepoint passes the retransmission's outcome, a third argument
// after the socket and the skb (6.18), so that its program may read it.
func (kb kernelBTF) retransmitHasErr() uint8 {
	var typedef *btf.Typedef
	if kb.types.TypeByName("btf_trace_tcp_retransmit_skb", &typedef) != nil {
		return 0
	}
	ptr, ok := typedef.Type.(*btf.Pointer)
	if !ok {
		return 0
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	// The prototype's first parameter is the tracepoint's context.
	if !ok || len(proto.Params) < 4 {
		return 0
	}
	return 1
}

// loadBTFFile reads a --btf file of at most config.MaxBTFBytes into memory and parses
// it there, so a device or a file growing under pktspan cannot fill memory.
func loadBTFFile(path string) (*btf.Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, config.MaxBTFBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > config.MaxBTFBytes {
		return nil, fmt.Errorf("larger than %d bytes", config.MaxBTFBytes)
	}
	return btf.LoadSpecFromReader(bytes.NewReader(b))
}

// plainHeaderLoads is kcfg.plain_header_loads: 1 when the kernel accepts the probe
// program that casts a pointer to no type with bpf_rdonly_cast, so that programs typed
// by BTF read packet headers with plain loads. The probe is loaded alone and closed;
// a kernel without the kfunc, or one that refuses the cast, gives 0 and the helper
// reads. BTF from --btf poisons every kfunc call: 0 there too.
// The probe leaves spec: on a kernel without the kfunc it could not load with the rest.
func (kb kernelBTF) plainHeaderLoads(spec *ebpf.CollectionSpec, cache *btf.Cache) uint32 {
	ps := spec.Programs[bpf.TracepointsProgProbeUntypedCast]
	delete(spec.Programs, bpf.TracepointsProgProbeUntypedCast)
	if !kb.inKernel || ps == nil {
		return 0
	}
	probe := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{ps.Name: ps}, Types: spec.Types, ByteOrder: spec.ByteOrder}
	coll, err := ebpf.NewCollectionWithOptions(probe, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		return 0
	}
	coll.Close()
	return 1
}
