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
	tab := newSegmentTable(segmentWays) // one set: every key shares it
	a := segmentKey{tuple: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 1, DstPort: 2, Proto: protoTCP}, seq: 7}
	b := a
	b.seq = 8
	h, at, _ := tab.search(&a)
	if tab.add(h, at, segment{key: a, lastSKB: 0xa}) {
		t.Fatal("adding to an empty table forgot a segment")
	}
	// b folds as a does: a's slot holds b's fold.
	i, _ := tab.find(a)
	tab.folds[i] = tab.fold(&b)
	if _, ok := tab.find(b); ok {
		t.Fatal("find matched a segment whose key only folds alike")
	}
	h, at, found := tab.search(&b)
	if found || at != i {
		t.Fatalf("search(b) = slot %d, found %v; want a's slot %d, not found", at, found, i)
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
	used := 0
	for _, u := range tab.used {
		if u != 0 {
			used++
		}
	}
	if used != 1 {
		t.Errorf("%d slots used, want 1", used)
	}
}

func TestSegmentTableHoldsAtMostItsLimitAndForgetsASetsLeastRecentlyUsed(t *testing.T) {
	for _, limit := range []int{1, 2, 3, 4, 10, 65536} {
		if got := len(newSegmentTable(limit).slab); got > limit || got < (limit+1)/2 {
			t.Errorf("a table of %d segments has %d slots", limit, got)
		}
	}
	tab := newSegmentTable(segmentWays) // one set
	key := func(seq uint32) segmentKey {
		return segmentKey{tuple: Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 1, DstPort: 2, Proto: protoTCP}, seq: seq}
	}
	add := func(seq uint32) bool {
		k := key(seq)
		h, at, _ := tab.search(&k)
		return tab.add(h, at, segment{key: k})
	}
	for seq := range uint32(segmentWays) {
		if add(seq) {
			t.Fatalf("adding segment %d of %d forgot one", seq+1, segmentWays)
		}
	}
	i, _ := tab.find(key(0))
	tab.touch(i) // 0 used again: 1 is now the least recently used
	if !add(segmentWays) {
		t.Error("adding to a full set did not report forgetting a segment")
	}
	for seq := range uint32(segmentWays + 1) {
		if _, ok := tab.find(key(seq)); ok != (seq != 1) {
			t.Errorf("segment %d found: %v; want only 1, the least recently used, forgotten", seq, ok)
		}
	}
}
