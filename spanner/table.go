package spanner

// table is a bounded map from K to slots of V in a slab, with an LRU order over the
// slots: the shape both the packet and the flow tables need. Slots are indexes (int32)
// so the LRU links and the callers' references stay valid when the slab grows.
type table[K comparable, V any] struct {
	index map[K]int32
	slab  []V
	keys  []K // keys[i] is the key of slot i while it is used
	free  []int32
	lru   lru
	limit int
}

func newTable[K comparable, V any](limit int) table[K, V] {
	return table[K, V]{index: make(map[K]int32, min(limit, 1024)), lru: newLRU(), limit: limit}
}

func (t *table[K, V]) full() bool { return len(t.index) >= t.limit }

// alloc takes a slot for k, most recently used; its value is whatever release left.
func (t *table[K, V]) alloc(k K) int32 {
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		var zero V
		i = int32(len(t.slab))
		t.slab = append(t.slab, zero)
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
	t.free = append(t.free, i)
}
