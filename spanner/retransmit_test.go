package spanner

import (
	"net/netip"
	"testing"
)

func TestSegmentFoldChangesWithEveryFieldOfTheKey(t *testing.T) {
	tab := newSegmentTable(8)
	base := segmentKey{
		tuple: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 80, Proto: protoTCP},
		seq:   1001,
	}
	change := map[string]func(k *segmentKey){
		"source":           func(k *segmentKey) { k.tuple.Src = netip.MustParseAddr("198.18.0.3") },
		"destination":      func(k *segmentKey) { k.tuple.Dst = netip.MustParseAddr("fd00::2") },
		"source port":      func(k *segmentKey) { k.tuple.SrcPort++ },
		"destination port": func(k *segmentKey) { k.tuple.DstPort++ },
		"protocol":         func(k *segmentKey) { k.tuple.Proto = protoUDP },
		"sequence":         func(k *segmentKey) { k.seq++ },
		"syn":              func(k *segmentKey) { k.syn = true },
		"direction":        func(k *segmentKey) { k.tuple.Src, k.tuple.Dst = k.tuple.Dst, k.tuple.Src },
	}
	for name, f := range change {
		k := base
		f(&k)
		if tab.fold(&k) == tab.fold(&base) {
			t.Errorf("changing the %s leaves the fold as it was", name)
		}
	}
}

func TestSegmentTableTellsApartKeysThatFoldAlike(t *testing.T) {
	tab := newSegmentTable(8)
	a := segmentKey{tuple: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 1, DstPort: 2, Proto: protoTCP}, seq: 7}
	b := a
	b.seq = 8
	h, at, _ := tab.search(&a)
	if tab.add(h, at, segment{key: a, lastSKB: 0xa}) {
		t.Fatal("adding to an empty table forgot a segment")
	}
	// b folds as a does: its fold names a's slot.
	tab.index[tab.fold(&b)] = tab.index[tab.fold(&a)]
	if _, ok := tab.find(b); ok {
		t.Fatal("find matched a segment whose key only folds alike")
	}
	h, at, found := tab.search(&b)
	if found {
		t.Fatal("search found a segment whose key only folds alike")
	}
	if !tab.add(h, at, segment{key: b, lastSKB: 0xb}) {
		t.Error("adding a segment that folds with another did not report forgetting it")
	}
	if i, ok := tab.find(b); !ok || tab.slab[i].lastSKB != 0xb {
		t.Errorf("find(b) = %d, %v after adding it", i, ok)
	}
	if _, ok := tab.find(a); ok {
		t.Error("the segment b displaced is still found")
	}
	if n := tab.used(); n != 1 {
		t.Errorf("%d slots used, want 1", n)
	}
}
