package spanner

// alias names a flow by the key of a translated tuple (NAT), so that a packet seen only
// with that tuple, such as a reply before it reaches the NAT box, joins the flow. The
// aliases of a flow form a list, so that they go with the flow and one evicted alone
// unlinks at once.
type alias struct {
	flow       int32
	prev, next int32 // neighbours in the flow's list, -1 at its ends
}

// aliasOf returns the flow that key names as an alias.
func (s *Spanner) aliasOf(key flowKey) (int32, bool) {
	ai, ok := s.aliases.index[key]
	if !ok {
		return -1, false
	}
	s.aliases.lru.moveFront(ai)
	return s.aliases.slab[ai].flow, true
}

// learnAlias remembers the key of t, a tuple seen on a packet of w, as another name of
// w's flow, unless it is the flow's own key. NAT keeps the protocol: a tuple of another
// one, such as an ICMP error's, which carries the conntrack entry of the connection it
// reports on, names no translation. The least recently used alias makes room.
func (s *Spanner) learnAlias(w *window, t Tuple) {
	k, _ := newFlowKey(t)
	if k == w.key || k.proto != w.key.proto {
		return
	}
	fi, ok := s.flows.index[w.key]
	if !ok {
		return // the flow is forgotten; its late packets teach nothing
	}
	if ai, ok := s.aliases.index[k]; ok {
		s.aliases.lru.moveFront(ai)
		if s.aliases.slab[ai].flow != fi {
			// NAT gave the translated tuple to another connection.
			s.unlinkAlias(ai)
			s.linkAlias(ai, fi)
		}
		return
	}
	if s.aliases.full() {
		ai := s.aliases.lru.tail
		s.unlinkAlias(ai)
		s.aliases.release(ai)
		s.stats.aliasesEvicted.Add(1)
	}
	s.linkAlias(s.aliases.alloc(k), fi)
	s.stats.aliasesLearned.Add(1)
}

// linkAlias puts alias ai at the head of flow fi's list.
func (s *Spanner) linkAlias(ai, fi int32) {
	f := &s.flows.slab[fi]
	s.aliases.slab[ai] = alias{flow: fi, prev: -1, next: f.aliases}
	if f.aliases >= 0 {
		s.aliases.slab[f.aliases].prev = ai
	}
	f.aliases = ai
}

// unlinkAlias takes alias ai out of its flow's list.
func (s *Spanner) unlinkAlias(ai int32) {
	a := s.aliases.slab[ai]
	if a.prev >= 0 {
		s.aliases.slab[a.prev].next = a.next
	} else {
		s.flows.slab[a.flow].aliases = a.next
	}
	if a.next >= 0 {
		s.aliases.slab[a.next].prev = a.prev
	}
}

// dropAliases forgets the aliases of a flow's list starting at ai.
func (s *Spanner) dropAliases(ai int32) {
	for ai >= 0 {
		next := s.aliases.slab[ai].next
		s.aliases.release(ai)
		ai = next
	}
}
