package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/spanner"
)

// fakeStacks is the kernel's stacks map: frames by id, deleted on request.
type fakeStacks map[uint32][]uint64

func (f fakeStacks) Lookup(key, valueOut any) error {
	frames, ok := f[key.(uint32)]
	if !ok {
		return errors.New("key does not exist")
	}
	out := valueOut.(*[stackDepth]uint64)
	*out = [stackDepth]uint64{}
	copy(out[:], frames)
	return nil
}

func (f fakeStacks) Delete(key any) error {
	delete(f, key.(uint32))
	return nil
}

func dropRecord(t *testing.T, stackID int32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &bpf.TracepointsEvent{
		Skb: 0xffff1, Probe: probeKfreeSKB, DropReason: 12, Location: 0xffffffffc0a011f3, StackId: stackID,
	}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeGivesADropItsSymbolizedStackFromTheTracepointOnAndCountsStacksItCannotRead(t *testing.T) {
	d := testDecoder(t)
	// Innermost first: pktspan's program (no symbol of its own yet), the kernel's call
	// into it, then the drop.
	m := fakeStacks{7: {0xffffffffc0b00042, 0xffffffff81d00010, 0xffffffff81a00010, 0xffffffffc0a011f3, 0xffffffffc0a03020}}
	d.stacks = newStackTable(m, d.symbols)
	const want = "kfree_skb_reason+0x10\nnft_do_chain+0x1f3\nnft_immediate_eval+0x20"

	var ev spanner.Event
	steps := []struct {
		name      string
		id        int32
		want      string
		wantMiss  uint64
		wantInMap bool
	}{
		{"first read takes the stack out of the kernel's map", 7, want, 0, false},
		// A second drop with the same stack got the same id before the first was read.
		{"same id after the delete gives the stack last read there", 7, want, 0, false},
		{"id never stored is a miss", 9, "", 1, false},
		{"no stack id (-1) is neither a stack nor a miss", -1, "", 1, false},
	}
	for _, s := range steps {
		if err := d.Decode(dropRecord(t, s.id), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Stack != s.want {
			t.Errorf("%s: Stack = %q, want %q", s.name, ev.Stack, s.want)
		}
		if got := d.stacks.missed.Load(); got != s.wantMiss {
			t.Errorf("%s: missed = %d, want %d", s.name, got, s.wantMiss)
		}
		if _, ok := m[7]; ok != s.wantInMap {
			t.Errorf("%s: stack 7 still in the map = %v", s.name, ok)
		}
	}
}

func TestDecodeWithoutStackLeavesAStackIDUnread(t *testing.T) {
	d := testDecoder(t)
	var ev spanner.Event
	if err := d.Decode(dropRecord(t, 3), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Stack != "" {
		t.Errorf("Stack = %q without --stack", ev.Stack)
	}
}
