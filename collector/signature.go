package collector

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf/btf"
)

// maxSkbArg is the last argument position the function probes can read the skb from.
const maxSkbArg = 4

// RetKind says how to read a function's return value from the 64-bit register value the
// exit probe reports.
type RetKind uint8

const (
	Ret64      RetKind = iota // 64-bit integers, as they are
	RetInt32                  // int and smaller signed types: sign-extended (-EPERM stays negative)
	RetUint32                 // unsigned int and smaller: the low 32 bits
	RetVoid                   // nothing to report
	RetPointer                // a pointer, as it is, reported in hex
)

// signature is what the probes need to know of a kernel function, from its BTF prototype.
type signature struct {
	skbArg int
	ret    RetKind
	err    error // why the function cannot be traced
}

// resolveFunctions returns the probes of the configured functions (function i has
// probe id probeFuncBase+i), each with its skb argument and return kind from BTF, or
// why it cannot be traced.
func resolveFunctions(types *btf.Spec, names []string) []probe {
	probes := make([]probe, len(names))
	for i, name := range names {
		sig := resolveSignature(types, name)
		probes[i] = functionProbe(i, name, sig.skbArg, sig.ret)
		probes[i].unusable = sig.err
	}
	return probes
}

// cloneProbe is skb_clone's probe, unusable unless skb_clone takes the skb first and
// returns the clone.
func cloneProbe(types *btf.Spec) probe {
	p := fixedProbes[slices.IndexFunc(fixedProbes, func(p probe) bool { return p.id == probeSKBClone })]
	sig := resolveSignature(types, cloneFunction)
	p.unusable = sig.err
	if sig.err == nil && (sig.skbArg != 0 || sig.ret != RetPointer) {
		p.unusable = errors.New("its prototype is not struct sk_buff *skb_clone(struct sk_buff *, ...)")
	}
	return p
}

// resolveSignature finds which argument of the kernel function name is a struct
// sk_buff *, and the kind of its return value. A function missing from BTF is absent
// or inlined everywhere.
func resolveSignature(types *btf.Spec, name string) signature {
	var fn *btf.Func
	if err := types.TypeByName(name, &fn); err != nil {
		return signature{err: errors.New("not in kernel BTF (inlined or missing)")}
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return signature{err: errors.New("BTF has no prototype for it")}
	}
	sig := signature{skbArg: -1, ret: retKind(proto.Return)}
	for i, p := range proto.Params {
		ptr, ok := btf.UnderlyingType(p.Type).(*btf.Pointer)
		if !ok {
			continue
		}
		if s, ok := btf.UnderlyingType(ptr.Target).(*btf.Struct); ok && s.Name == "sk_buff" {
			sig.skbArg = i
			break
		}
	}
	switch {
	case sig.skbArg < 0:
		sig.err = errors.New("takes no struct sk_buff * argument")
	case sig.skbArg > maxSkbArg:
		sig.err = fmt.Errorf("its struct sk_buff * is argument %d; probes read arguments 1 to %d", sig.skbArg+1, maxSkbArg+1)
	}
	return sig
}

func retKind(t btf.Type) RetKind {
	if t == nil {
		return RetVoid
	}
	switch u := btf.UnderlyingType(t).(type) {
	case *btf.Void:
		return RetVoid
	case *btf.Int:
		if u.Size > 4 {
			return Ret64
		}
		if u.Encoding&btf.Signed != 0 {
			return RetInt32
		}
		return RetUint32
	case *btf.Pointer:
		return RetPointer
	case *btf.Enum:
		if u.Size > 4 {
			return Ret64
		}
		if u.Signed {
			return RetInt32
		}
		return RetUint32
	}
	return Ret64
}
