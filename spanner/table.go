package spanner

// slots is a slab of reusable records addressed by index (int32), so that indexes held
// elsewhere stay valid when the slab grows: a released slot is handed out again before
// the slab grows, and keeps the capacity of its record's slices.
type slots[V any] struct {
	slab []V
	free []int32
}

// alloc takes a slot, holding whatever its release left (a new one holds V's zero
// value); grown says the slab grew by it, so that slices parallel to it must grow too.
func (s *slots[V]) alloc() (i int32, grown bool) {
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
		return i, false
	}
	var zero V
	s.slab = append(s.slab, zero)
	return int32(len(s.slab) - 1), true
}

func (s *slots[V]) release(i int32) { s.free = append(s.free, i) }

// used is how many slots are taken.
func (s *slots[V]) used() int { return len(s.slab) - len(s.free) }

// table is a bounded map from K to slots of V, with an LRU order over the slots: the
// shape the packet, flow and alias tables need.
type table[K comparable, V any] struct {
	slots[V]
	index map[K]int32
	keys  []K // keys[i] is the key of slot i while it is used
	lru   lru
	limit int
}

func newTable[K comparable, V any](limit int) table[K, V] {
	return table[K, V]{index: make(map[K]int32, min(limit, 1024)), lru: newLRU(), limit: limit}
}

func (t *table[K, V]) full() bool { return len(t.index) >= t.limit }

// alloc takes a slot for k, most recently used; its value is whatever release left.
func (t *table[K, V]) alloc(k K) int32 {
	i, grown := t.slots.alloc()
	if grown {
		t.keys = append(t.keys, k)
		t.lru.grow()
	}
	t.keys[i] = k
	t.index[k] = i
	t.lru.pushFront(i)
	return i
}

// release frees slot i; the caller resets the value.
func (t *table[K, V]) release(i int32) {
	delete(t.index, t.keys[i])
	t.lru.remove(i)
	t.slots.release(i)
}
