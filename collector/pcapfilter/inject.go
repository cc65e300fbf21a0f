package pcapfilter

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Filter is an expression's two translations: for packets that start with an Ethernet
// header and for those that start with the IP header.
type Filter struct {
	Expr     string
	Ethernet asm.Instructions
	RawIP    asm.Instructions
}

// New compiles expr for both link types and translates the programs for l. An
// expression libpcap cannot compile for Ethernet is refused with libpcap's message (an
// *Error); one that speaks of the link layer (ether, vlan, arp…) compiles for Ethernet
// only, and no packet without a link-layer header matches it.
func New(expr string, l Layout) (*Filter, error) {
	eth, err := Compile(expr, Ethernet)
	if err != nil {
		return nil, err
	}
	f := &Filter{Expr: expr}
	if f.Ethernet, err = Translate(eth, l); err != nil {
		return nil, fmt.Errorf("translating for %v: %w", Ethernet, err)
	}
	raw, err := Compile(expr, RawIP)
	var perr *Error
	switch {
	case errors.As(err, &perr):
		f.RawIP = asm.Instructions{asm.Mov.Imm32(asm.R0, 0), asm.Return()}
	case err != nil:
		return nil, err
	default:
		if f.RawIP, err = Translate(raw, l); err != nil {
			return nil, fmt.Errorf("translating for %v: %w", RawIP, err)
		}
	}
	return f, nil
}

// Inject replaces the body of the function symbol in prog with body, keeping the
// function's first instruction's metadata (its symbol, BTF function and line info). A
// program that does not call the function is left as it is.
func Inject(prog *ebpf.ProgramSpec, symbol string, body asm.Instructions) error {
	if len(body) == 0 {
		return errors.New("empty function body")
	}
	insns := prog.Instructions
	start := -1
	for i, ins := range insns {
		if ins.Symbol() == symbol {
			start = i
			break
		}
	}
	if start < 0 {
		return nil
	}
	end := len(insns)
	for i := start + 1; i < len(insns); i++ {
		if insns[i].Symbol() != "" {
			end = i
			break
		}
	}
	fn := make(asm.Instructions, len(body))
	copy(fn, body)
	fn[0] = fn[0].WithMetadata(insns[start].Metadata)
	out := make(asm.Instructions, 0, len(insns)-(end-start)+len(fn))
	out = append(out, insns[:start]...)
	out = append(out, fn...)
	out = append(out, insns[end:]...)
	prog.Instructions = out
	return nil
}
