package collector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"
)

// kernelCfg is the kernel's struct kernel_cfg: what the probes need from the running
// kernel's BTF, written into their .rodata.
type kernelCfg = bpf.TracepointsKernelCfg

// ctTupleRead is how many bytes of struct nf_conntrack_tuple the probes read: the
// fields located here must lie within.
const ctTupleRead = uint32(bpf.TracepointsLimitsCT_TUPLE_READ)

// moduleBTFDir holds the BTF of loaded modules, split on top of vmlinux's.
const moduleBTFDir = "/sys/kernel/btf"

// errNoConntrack says the kernel has no conntrack field in struct sk_buff.
var errNoConntrack = errors.New("kernel built without conntrack (CONFIG_NF_CONNTRACK)")

// conntrackLayout finds where the probes read the ORIGINAL direction's tuple of a struct
// nf_conn: nf_conn.tuplehash[IP_CT_DIR_ORIGINAL].tuple, and in it the addresses, ports,
// address family and protocol. It checks that every field fits the probes' read.
func conntrackLayout(types *btf.Spec, cfg *kernelCfg) error {
	var conn *btf.Struct
	if err := types.TypeByName("nf_conn", &conn); err != nil {
		return fmt.Errorf("finding struct nf_conn: %w", err)
	}
	hashes, hashType, err := fieldOffset(conn, "tuplehash")
	if err != nil {
		return err
	}
	arr, ok := hashType.(*btf.Array)
	if !ok || arr.Nelems < 1 {
		return fmt.Errorf("nf_conn.tuplehash is %v, want an array", hashType)
	}
	tupleIn, tupleType, err := fieldOffset(arr.Type, "tuple")
	if err != nil {
		return err
	}
	cfg.CtTuple = hashes + tupleIn // index 0: IP_CT_DIR_ORIGINAL
	fields := []struct {
		dst         *uint16
		path        []string
		size, align uint32
	}{
		{&cfg.CtSrcAddr, []string{"src", "u3"}, 16, 4},
		{&cfg.CtSrcPort, []string{"src", "u", "all"}, 2, 2},
		{&cfg.CtL3num, []string{"src", "l3num"}, 2, 2},
		{&cfg.CtDstAddr, []string{"dst", "u3"}, 16, 4},
		{&cfg.CtDstPort, []string{"dst", "u", "all"}, 2, 2},
		{&cfg.CtProtonum, []string{"dst", "protonum"}, 1, 1},
	}
	for _, f := range fields {
		off, typ, err := fieldOffset(tupleType, f.path...)
		if err != nil {
			return err
		}
		size, err := btf.Sizeof(typ)
		if err != nil {
			return fmt.Errorf("sizing nf_conntrack_tuple.%v: %w", f.path, err)
		}
		if uint32(size) != f.size || off%f.align != 0 || off+f.size > ctTupleRead {
			return fmt.Errorf("nf_conntrack_tuple.%v: %d bytes at offset %d, want %d aligned to %d within %d",
				f.path, size, off, f.size, f.align, ctTupleRead)
		}
		*f.dst = uint16(off)
	}
	return nil
}

// fieldOffset returns the byte offset and type of the field at path inside t, looking
// through anonymous structs and unions as C does.
func fieldOffset(t btf.Type, path ...string) (uint32, btf.Type, error) {
	var total uint32
	for _, name := range path {
		off, member, ok := findMember(t, name)
		if !ok {
			return 0, nil, fmt.Errorf("%v has no field %q", t, name)
		}
		total += off
		t = member
	}
	return total, btf.UnderlyingType(t), nil
}

func findMember(t btf.Type, name string) (uint32, btf.Type, bool) {
	var members []btf.Member
	switch c := btf.UnderlyingType(t).(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return 0, nil, false
	}
	for _, m := range members {
		if m.Name == name && m.BitfieldSize == 0 {
			return m.Offset.Bytes(), m.Type, true
		}
	}
	for _, m := range members {
		if m.Name != "" {
			continue
		}
		if off, typ, ok := findMember(m.Type, name); ok {
			return m.Offset.Bytes() + off, typ, true
		}
	}
	return 0, nil, false
}

// conntrackTypes returns the BTF that holds struct nf_conn, and names it: the kernel's
// own (built in, or --btf FILE), else the loaded nf_conntrack module's. Module BTF
// exists for the running kernel only, so not with --btf.
func conntrackTypes(kernel *btf.Spec, inKernel bool, kernelSource string) (*btf.Spec, string, error) {
	var skb *btf.Struct
	if err := kernel.TypeByName("sk_buff", &skb); err != nil {
		return nil, "", fmt.Errorf("finding struct sk_buff: %w", err)
	}
	if _, _, err := fieldOffset(skb, "_nfct"); err != nil {
		return nil, "", errNoConntrack
	}
	var conn *btf.Struct
	if kernel.TypeByName("nf_conn", &conn) == nil {
		return kernel, kernelSource, nil
	}
	if !inKernel {
		return nil, "", fmt.Errorf("struct nf_conn is not in %s", kernelSource)
	}
	return moduleTypes(kernel, "nf_conntrack")
}

// newKernelCfg gathers the probes' kernel facts: conntrack's layout (or why tuples
// cannot be read: the probes then leave them empty) and the kfree_skb frees that are
// not drops (normalFreeTable, which keeps within their array).
func newKernelCfg(kernel *btf.Spec, inKernel bool, kernelSource string, frees []bpf.TracepointsNormalFree) (kernelCfg, string) {
	var cfg kernelCfg
	types, source, err := conntrackTypes(kernel, inKernel, kernelSource)
	if err == nil {
		err = conntrackLayout(types, &cfg)
	}
	summary := "original tuples read (struct nf_conn from " + source + ")"
	if err != nil {
		cfg = kernelCfg{} // ct_tuple 0: the probes leave the tuples empty
		summary = "tuples not read: " + err.Error()
	}
	for i, f := range frees {
		cfg.NormalFrees[i] = f
	}
	cfg.N_normalFrees = uint32(len(frees))
	cfg.NormalReasonsHigh, cfg.NormalReasons = normalReasonBits(frees)
	return cfg, summary
}
