package pcapfilter

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"
)

var layout = Layout{MemOffset: 0, DataOffset: 64, Snap: 256}

func TestNewRefusesWithLibpcapsOwnMessage(t *testing.T) {
	for _, tt := range []struct{ expr, msg string }{
		{"tcp port foo", "unknown port 'foo'"},
		{"tcp and", "can't parse filter expression: syntax error"},
		{"host 300.1.1.1", "invalid IPv4 address '300.1.1.1'"},
	} {
		_, err := New(tt.expr, layout)
		var perr *Error
		if !errors.As(err, &perr) || perr.Msg != tt.msg {
			t.Errorf("New(%q) = %v, want libpcap's %q", tt.expr, err, tt.msg)
		}
	}
}

// An expression about the link layer has no meaning for a packet without one.
func TestLinkLayerExpressionsMatchNoPacketWithoutALinkLayer(t *testing.T) {
	for _, expr := range []string{"vlan", "ether host 02:00:00:00:00:01", "not vlan"} {
		f, err := New(expr, layout)
		if err != nil {
			t.Fatalf("New(%q): %v", expr, err)
		}
		want := asm.Instructions{asm.Mov.Imm32(asm.R0, 0), asm.Return()}
		if !slices.EqualFunc(f.RawIP, want, func(a, b asm.Instruction) bool { return a.OpCode == b.OpCode && a.Constant == b.Constant }) {
			t.Errorf("New(%q).RawIP =\n%v\nwant a program returning 0", expr, f.RawIP)
		}
	}
}

func TestTranslateRefusesWhatItCannotRunFaithfully(t *testing.T) {
	for _, tt := range []struct {
		name string
		prog []bpf.Instruction
	}{
		{"a Linux extension", []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtProto}, bpf.RetA{}}},
		{"scratch memory past M[15]", []bpf.Instruction{bpf.StoreScratch{Src: bpf.RegA, N: 16}, bpf.RetA{}}},
		{"a jump past the end", []bpf.Instruction{bpf.Jump{Skip: 1}, bpf.RetA{}}},
		{"a division by the constant 0", []bpf.Instruction{bpf.ALUOpConstant{Op: bpf.ALUOpDiv, Val: 0}, bpf.RetA{}}},
		{"nothing", nil},
	} {
		if _, err := Translate(tt.prog, layout); err == nil {
			t.Errorf("Translate(%s) = nil error", tt.name)
		}
	}
}

func TestTranslateRefusesProgramsTooLargeForTheVerifier(t *testing.T) {
	prog := make([]bpf.Instruction, 0, MaxInstructions)
	for range MaxInstructions / 2 {
		prog = append(prog, bpf.LoadAbsolute{Off: 12, Size: 2})
	}
	prog = append(prog, bpf.RetA{})
	if _, err := Translate(prog, layout); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Translate(%d loads) = %v, want ErrTooLarge", len(prog), err)
	}
}

// A jump lands on the first instruction of its target's translation; a load past what
// the layout holds rejects the packet without reading.
func TestTranslateLaysOutJumpsAndBounds(t *testing.T) {
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 300, Size: 1},                                // past Snap: reject
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 7, SkipTrue: 1, SkipFalse: 0}, // to 2 or 3
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 262144},
	}
	got, err := Translate(prog, layout)
	if err != nil {
		t.Fatal(err)
	}
	// prologue (2), reject jump (1), JEQ + JA (2), ret 0 (2), ret 1 (2), epilogue (2)
	if len(got) != 11 {
		t.Fatalf("Translate() = %d instructions, want 11:\n%v", len(got), got)
	}
	if op := got[2].OpCode; op.JumpOp() != asm.Ja || got[2].Offset != 11-2-1-2 {
		t.Errorf("the load past Snap is %v, want a jump to the epilogue at 9", got[2])
	}
	if got[3].OpCode.JumpOp() != asm.JEq || got[3].OpCode.Class() != asm.Jump32Class || got[3].Offset != 7-3-1 {
		t.Errorf("the JEQ is %v, want a 32-bit compare jumping to 7", got[3])
	}
	if got[4].OpCode.JumpOp() != asm.Ja || got[4].Offset != 5-4-1 {
		t.Errorf("the JEQ's false branch is %v, want a jump to 5", got[4])
	}
}

func TestInjectReplacesTheFunctionBodyAndKeepsTheRest(t *testing.T) {
	prog := &ebpf.ProgramSpec{Instructions: asm.Instructions{
		asm.Call.Label("placeholder"),
		asm.Return().WithSymbol("main"),
		asm.Mov.Imm(asm.R0, 3).WithSymbol("placeholder"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 4).WithSymbol("after"),
		asm.Return(),
	}}
	body := asm.Instructions{asm.Mov.Imm(asm.R0, 9), asm.Mov.Imm(asm.R1, 9), asm.Return()}
	if err := Inject(prog, "placeholder", body); err != nil {
		t.Fatal(err)
	}
	got := prog.Instructions
	if len(got) != 7 || got[2].Symbol() != "placeholder" || got[2].Constant != 9 || got[5].Symbol() != "after" {
		t.Errorf("after Inject:\n%v", got)
	}
}
