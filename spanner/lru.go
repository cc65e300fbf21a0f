package spanner

// lru orders the slots of a table from most to least recently used. Its links live in a
// slice parallel to the table's slab, so touching or moving an entry allocates nothing.
type lru struct {
	links      []link
	head, tail int32 // most and least recently used slot, -1 when empty
}

type link struct{ prev, next int32 }

func newLRU() lru { return lru{head: -1, tail: -1} }

// grow adds the links of one new slot at the end of the slab.
func (l *lru) grow() { l.links = append(l.links, link{-1, -1}) }

func (l *lru) pushFront(i int32) {
	l.links[i] = link{prev: -1, next: l.head}
	if l.head >= 0 {
		l.links[l.head].prev = i
	} else {
		l.tail = i
	}
	l.head = i
}

func (l *lru) pushBack(i int32) {
	l.links[i] = link{prev: l.tail, next: -1}
	if l.tail >= 0 {
		l.links[l.tail].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (l *lru) remove(i int32) {
	k := l.links[i]
	if k.prev >= 0 {
		l.links[k.prev].next = k.next
	} else {
		l.head = k.next
	}
	if k.next >= 0 {
		l.links[k.next].prev = k.prev
	} else {
		l.tail = k.prev
	}
	l.links[i] = link{-1, -1}
}

func (l *lru) moveFront(i int32) {
	if l.head != i {
		l.remove(i)
		l.pushFront(i)
	}
}

func (l *lru) moveBack(i int32) {
	if l.tail != i {
		l.remove(i)
		l.pushBack(i)
	}
}
