package pcapfilter

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"
)

// Layout is where the translated program finds what it reads: the struct its first
// argument points to (bpf/headers/pktspan.h, struct pcap_packet).
type Layout struct {
	MemOffset  int // byte offset of the scratch memory M[0..15], 4 bytes each
	DataOffset int // byte offset of the packet's first byte
	Snap       int // bytes of packet the struct holds
}

// MaxInstructions bounds a translation: more than this many eBPF instructions would
// make the probes too large for the kernel's verifier to accept in reasonable time.
const MaxInstructions = 8192

// ErrTooLarge is returned for a program whose translation exceeds MaxInstructions.
var ErrTooLarge = errors.New("too large")

// The registers of a translation. The function it replaces receives the packet struct,
// the bytes of packet it holds and the packet's length (cBPF's len) in R1 to R3, and
// calls nothing, so R1 to R9 are all its own (the caller's R6 to R9 are saved by the
// kernel across the call).
const (
	regPkt    = asm.R1 // struct pcap_packet *
	regCaplen = asm.R2 // bytes of packet present
	regLen    = asm.R3 // the packet's length
	regA      = asm.R4 // cBPF's accumulator
	regX      = asm.R5 // cBPF's index register
	regTmp    = asm.R6 // an indirect load's offset
	regAddr   = asm.R7 // an indirect load's address
)

// jump targets beside cBPF instruction indexes.
const targetReject = -1

// block is one cBPF instruction's translation; jumps[i] is the cBPF index (or
// targetReject) that block instruction i jumps to.
type block struct {
	insns asm.Instructions
	jumps map[int]int
}

func (b *block) add(ins ...asm.Instruction) { b.insns = append(b.insns, ins...) }

// jump adds a jump whose offset is filled in once every block's place is known.
func (b *block) jump(ins asm.Instruction, target int) {
	if b.jumps == nil {
		b.jumps = map[int]int{}
	}
	b.jumps[len(b.insns)] = target
	b.add(ins)
}

// Translate turns a cBPF program (libpcap's output, checked by Compile) into the body of
// an eBPF function of the signature pcap_l2 and pcap_l3 have (bpf/headers/skb.h): it
// returns 0 for a packet the program rejects and non-zero for one it accepts. Loads
// past the bytes present, or past the layout's Snap, reject the packet, as a load past
// the end of the packet does in cBPF.
func Translate(prog []bpf.Instruction, l Layout) (asm.Instructions, error) {
	if len(prog) == 0 {
		return nil, errors.New("empty cBPF program")
	}
	blocks := make([]block, len(prog))
	for i, ins := range prog {
		if err := translateOne(&blocks[i], ins, i, len(prog), l); err != nil {
			return nil, fmt.Errorf("cBPF instruction %d (%v): %w", i, ins, err)
		}
	}

	// A prologue zeroing A and X, as cBPF starts; an epilogue rejecting.
	out := asm.Instructions{asm.Mov.Imm32(regA, 0), asm.Mov.Imm32(regX, 0)}
	starts := make([]int, len(prog))
	pos := len(out)
	for i := range blocks {
		starts[i] = pos
		pos += len(blocks[i].insns)
	}
	reject := pos
	if total := reject + 2; total > MaxInstructions {
		return nil, fmt.Errorf("%d eBPF instructions, more than %d: %w", total, MaxInstructions, ErrTooLarge)
	}
	// The verifier refuses unreachable instructions: the epilogue only when jumped to.
	rejects := false
	for i := range blocks {
		for j, ins := range blocks[i].insns {
			if target, ok := blocks[i].jumps[j]; ok {
				to := reject
				if target != targetReject {
					to = starts[target]
				} else {
					rejects = true
				}
				off := to - (starts[i] + j + 1)
				if off > math.MaxInt16 {
					return nil, fmt.Errorf("a jump of %d instructions: %w", off, ErrTooLarge)
				}
				ins.Offset = int16(off)
			}
			out = append(out, ins)
		}
	}
	if rejects {
		out = append(out, asm.Mov.Imm32(asm.R0, 0), asm.Return())
	}
	return out, nil
}

// jumpTo builds a jump of class JMP32 (cBPF compares 32-bit values); the offset comes later.
func jumpTo(op asm.JumpOp, src asm.Source, dst, srcReg asm.Register, k uint32) asm.Instruction {
	ins := asm.Instruction{OpCode: asm.OpCode(asm.Jump32Class).SetJumpOp(op).SetSource(src), Dst: dst}
	if src == asm.RegSource {
		ins.Src = srcReg
	} else {
		ins.Constant = int64(int32(k))
	}
	return ins
}

func always() asm.Instruction {
	return asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Ja)}
}

// loadPacket loads size bytes at the packet's offset k (plus X when indirect) into dst,
// in host order, rejecting the packet when they are not all present.
func loadPacket(b *block, dst asm.Register, k uint32, size int, indirect bool, l Layout) {
	sz := map[int]asm.Size{1: asm.Byte, 2: asm.Half, 4: asm.Word}[size]
	if uint64(k)+uint64(size) > uint64(l.Snap) {
		b.jump(always(), targetReject)
		return
	}
	if !indirect {
		// caplen < k+size: not present.
		b.jump(jumpTo(asm.JLT, asm.ImmSource, regCaplen, 0, k+uint32(size)), targetReject)
		b.add(asm.LoadMem(dst, regPkt, int16(l.DataOffset+int(k)), sz))
	} else {
		// tmp = X + k in 64 bits (no wrap); bounded for the verifier by Snap, then by caplen.
		b.add(asm.Mov.Reg32(regTmp, regX), asm.Add.Imm(regTmp, int32(k)))
		b.jump(asm.Instruction{OpCode: asm.JGT.Op(asm.ImmSource), Dst: regTmp, Constant: int64(l.Snap - size)}, targetReject)
		b.add(asm.Mov.Reg(regAddr, regTmp), asm.Add.Imm(regAddr, int32(size)))
		b.jump(asm.Instruction{OpCode: asm.JGT.Op(asm.RegSource), Dst: regAddr, Src: regCaplen}, targetReject)
		b.add(asm.Mov.Reg(regAddr, regPkt), asm.Add.Reg(regAddr, regTmp),
			asm.LoadMem(dst, regAddr, int16(l.DataOffset), sz))
	}
	if size > 1 {
		b.add(asm.HostTo(asm.BE, dst, sz))
	}
}

var aluOps = map[bpf.ALUOp]asm.ALUOp{
	bpf.ALUOpAdd: asm.Add, bpf.ALUOpSub: asm.Sub, bpf.ALUOpMul: asm.Mul, bpf.ALUOpDiv: asm.Div,
	bpf.ALUOpOr: asm.Or, bpf.ALUOpAnd: asm.And, bpf.ALUOpShiftLeft: asm.LSh, bpf.ALUOpShiftRight: asm.RSh,
	bpf.ALUOpMod: asm.Mod, bpf.ALUOpXor: asm.Xor,
}

// conds maps a cBPF condition to the eBPF jump taken when it holds; a condition eBPF
// lacks is its negation with the targets swapped.
var conds = map[bpf.JumpTest]struct {
	op     asm.JumpOp
	negate bool
}{
	bpf.JumpEqual: {asm.JEq, false}, bpf.JumpNotEqual: {asm.JNE, false},
	bpf.JumpGreaterThan: {asm.JGT, false}, bpf.JumpLessThan: {asm.JLT, false},
	bpf.JumpGreaterOrEqual: {asm.JGE, false}, bpf.JumpLessOrEqual: {asm.JLE, false},
	bpf.JumpBitsSet: {asm.JSet, false}, bpf.JumpBitsNotSet: {asm.JSet, true},
}

func reg(r bpf.Register) asm.Register {
	if r == bpf.RegX {
		return regX
	}
	return regA
}

func translateOne(b *block, ins bpf.Instruction, i, n int, l Layout) error {
	mem := func(k uint32) (int16, error) {
		if k >= 16 {
			return 0, fmt.Errorf("scratch memory M[%d] does not exist", k)
		}
		return int16(l.MemOffset + 4*int(k)), nil
	}
	// A cBPF jump skips instructions after the next one; it must land inside the program.
	target := func(skip uint32) (int, error) {
		t := i + 1 + int(skip)
		if t >= n {
			return 0, fmt.Errorf("jumps past the end of the program")
		}
		return t, nil
	}
	switch ins := ins.(type) {
	case bpf.LoadConstant:
		b.add(asm.Mov.Imm32(reg(ins.Dst), int32(ins.Val)))
	case bpf.LoadScratch:
		off, err := mem(uint32(ins.N))
		if err != nil {
			return err
		}
		b.add(asm.LoadMem(reg(ins.Dst), regPkt, off, asm.Word))
	case bpf.StoreScratch:
		off, err := mem(uint32(ins.N))
		if err != nil {
			return err
		}
		b.add(asm.StoreMem(regPkt, off, reg(ins.Src), asm.Word))
	case bpf.LoadAbsolute:
		loadPacket(b, regA, ins.Off, ins.Size, false, l)
	case bpf.LoadIndirect:
		loadPacket(b, regA, ins.Off, ins.Size, true, l)
	case bpf.LoadMemShift:
		// X = 4 * (P[k] & 0xf): an IPv4 header's length.
		loadPacket(b, regX, ins.Off, 1, false, l)
		b.add(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
	case bpf.LoadExtension:
		if ins.Num != bpf.ExtLen {
			return errors.New("a Linux extension other than len, which libpcap does not emit for offline use")
		}
		b.add(asm.Mov.Reg32(regA, regLen))
	case bpf.ALUOpConstant:
		op, ok := aluOps[ins.Op]
		if !ok {
			return fmt.Errorf("unknown ALU operation %d", ins.Op)
		}
		switch {
		case (ins.Op == bpf.ALUOpDiv || ins.Op == bpf.ALUOpMod) && ins.Val == 0:
			return errors.New("division by the constant 0")
		case (ins.Op == bpf.ALUOpShiftLeft || ins.Op == bpf.ALUOpShiftRight) && ins.Val >= 32:
			b.add(asm.Mov.Imm32(regA, 0))
		default:
			b.add(op.Imm32(regA, int32(ins.Val)))
		}
	case bpf.ALUOpX:
		op, ok := aluOps[ins.Op]
		if !ok {
			return fmt.Errorf("unknown ALU operation %d", ins.Op)
		}
		if ins.Op == bpf.ALUOpDiv || ins.Op == bpf.ALUOpMod {
			// cBPF ends the program, rejecting, on a division by zero.
			b.jump(jumpTo(asm.JEq, asm.ImmSource, regX, 0, 0), targetReject)
		}
		b.add(op.Reg32(regA, regX))
	case bpf.NegateA:
		b.add(asm.Neg.Imm32(regA, 0))
	case bpf.TAX:
		b.add(asm.Mov.Reg32(regX, regA))
	case bpf.TXA:
		b.add(asm.Mov.Reg32(regA, regX))
	case bpf.Jump:
		t, err := target(ins.Skip)
		if err != nil {
			return err
		}
		b.jump(always(), t)
	case bpf.JumpIf:
		return condJump(b, ins.Cond, asm.ImmSource, ins.Val, ins.SkipTrue, ins.SkipFalse, target)
	case bpf.JumpIfX:
		return condJump(b, ins.Cond, asm.RegSource, 0, ins.SkipTrue, ins.SkipFalse, target)
	case bpf.RetConstant:
		v := int32(0)
		if ins.Val != 0 {
			v = 1
		}
		b.add(asm.Mov.Imm32(asm.R0, v), asm.Return())
	case bpf.RetA:
		b.add(asm.Mov.Reg32(asm.R0, regA), asm.Return())
	default:
		return errors.New("not an instruction libpcap emits")
	}
	return nil
}

func condJump(b *block, cond bpf.JumpTest, src asm.Source, k uint32, skipTrue, skipFalse uint8,
	target func(uint32) (int, error)) error {
	c, ok := conds[cond]
	if !ok {
		return fmt.Errorf("unknown jump condition %d", cond)
	}
	yes, err := target(uint32(skipTrue))
	if err != nil {
		return err
	}
	no, err := target(uint32(skipFalse))
	if err != nil {
		return err
	}
	if c.negate {
		yes, no = no, yes
	}
	b.jump(jumpTo(c.op, src, regA, regX, k), yes)
	b.jump(always(), no)
	return nil
}
