package collector

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// retransmitTypes builds the BTF of a kernel whose tcp_retransmit_skb tracepoint takes
// args arguments after its context; none when args is negative.
func retransmitTypes(t *testing.T, args int) *btf.Spec {
	t.Helper()
	params := []btf.FuncParam{{Name: "__data", Type: &btf.Pointer{Target: &btf.Void{}}}}
	argTypes := []btf.Type{
		&btf.Pointer{Target: &btf.Struct{Name: "sock"}},
		&btf.Pointer{Target: &btf.Struct{Name: "sk_buff"}},
		&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
	}
	for _, typ := range argTypes[:max(args, 0)] {
		params = append(params, btf.FuncParam{Type: typ})
	}
	// Some type is needed for an empty kernel to marshal.
	types := []btf.Type{&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}
	if args >= 0 {
		types = append(types, &btf.Typedef{Name: "btf_trace_tcp_retransmit_skb",
			Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: params}}})
	}
	return specOf(t, types...)
}

// On 6.18 the tracepoint passes the outcome as a third argument; before, the program must
// not read past the second (the verifier would refuse it).
func TestRetransmitOutcomeIsReadOnlyWhereTheTracepointPassesIt(t *testing.T) {
	for _, c := range []struct {
		name string
		args int
		want uint8
	}{
		{"6.1: sock and skb", 2, 0},
		{"6.18: sock, skb and err", 3, 1},
		{"no such tracepoint", -1, 0},
	} {
		if got := (kernelBTF{types: retransmitTypes(t, c.args)}).retransmitHasErr(); got != c.want {
			t.Errorf("%s: retransmit_has_err = %d, want %d", c.name, got, c.want)
		}
	}
}
