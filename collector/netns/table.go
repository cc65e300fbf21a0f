package netns

import (
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// kind says which source learnt an owner; when two owners claim one namespace, the
// higher kind names it (a pod over the Docker container holding it, a container over an
// ip netns name given to its namespace).
type kind uint8

const (
	kindCgroup    kind = iota + 1 // a container ID read from a process's cgroup
	kindNetnsFile                 // a /run/netns file
	kindDocker                    // a Docker container
	kindPod                       // a CRI pod sandbox
	kindHost                      // the host's own namespace
)

// owner is what a source knows of one thing living in a network namespace.
type owner struct {
	key   string // the source's name for it: "docker/<id>", "netns/<name>", …
	inode uint32
	kind  kind
	// attrs name the namespace; nil for a member that does not own its namespace (a
	// container sharing another's, or the host's). Built once, never changed: a
	// snapshot hands it out as it is.
	attrs []attribute.KeyValue
	// aliases are the names --filter-container may give it: a container's name and
	// IDs, a pod's namespace/name.
	aliases []string
	since   time.Time // when it was learnt
	gone    time.Time // zero while it lives; it names its namespace until gone+grace
}

func (o *owner) alive() bool { return o.gone.IsZero() }

// beats says whether o rather than b names the namespace both claim: the living over
// the gone (the kernel reuses a freed namespace's inode), then the higher kind, then
// the one learnt last.
func (o *owner) beats(b *owner) bool {
	if o.alive() != b.alive() {
		return o.alive()
	}
	if o.kind != b.kind {
		return o.kind > b.kind
	}
	if !o.since.Equal(b.since) {
		return o.since.After(b.since)
	}
	return o.key > b.key
}

// goneRef queues an owner that went, in the order they went: expiry and eviction take
// the oldest first. A ref whose owner came back or was replaced is stale and skipped.
type goneRef struct {
	o    *owner
	gone time.Time
}

// table is every owner the namer knows, bounded by limit; the Namer's mutex guards it.
type table struct {
	limit   int
	grace   time.Duration
	owners  map[string]*owner
	goneQ   []goneRef
	evicted uint64 // owners dropped for the bound: forgotten early, or never kept
}

func newTable(limit int, grace time.Duration) *table {
	return &table{limit: limit, grace: grace, owners: make(map[string]*owner)}
}

func (t *table) get(key string) *owner { return t.owners[key] }

// lives says whether a living owner under key is in this namespace: nothing to learn.
func (t *table) lives(key string, inode uint32) bool {
	o := t.owners[key]
	return o != nil && o.alive() && o.inode == inode
}

// put records o under o.key. An owner already there in the same namespace takes o's
// names and lives again; one in another namespace (a restarted container) is retired
// under a key of its own, so that it still names its old namespace for the grace. A
// new owner needs room: the oldest gone owner is evicted for it, and without one it is
// not kept. put reports whether o is kept.
func (t *table) put(o owner, now time.Time) bool {
	if cur := t.owners[o.key]; cur != nil {
		if cur.inode == o.inode {
			cur.kind, cur.attrs, cur.aliases = o.kind, o.attrs, o.aliases
			if !cur.alive() {
				cur.gone, cur.since = time.Time{}, now
			}
			return true
		}
		t.markGone(cur, now)
		delete(t.owners, cur.key)
		cur.key += "#" + strconv.FormatInt(cur.gone.UnixNano(), 10)
		t.owners[cur.key] = cur
	}
	if len(t.owners) >= t.limit && !t.evictOldestGone() {
		t.evicted++
		return false
	}
	o.since, o.gone = now, time.Time{}
	t.owners[o.key] = &o
	if o.kind > kindCgroup && o.attrs != nil {
		t.retireGuesses(o.inode, now)
	}
	return true
}

// retireGuesses marks gone the cgroup owners of a namespace a runtime now names: the
// same container, seen first through its processes. Left living, one would outlive the
// runtime's owner after its death and name the namespace through the grace.
func (t *table) retireGuesses(inode uint32, now time.Time) {
	for _, o := range t.owners {
		if o.kind == kindCgroup && o.inode == inode {
			t.markGone(o, now)
		}
	}
}

// gone marks the owner under key as gone at now, if it lives.
func (t *table) gone(key string, now time.Time) {
	if o := t.owners[key]; o != nil {
		t.markGone(o, now)
	}
}

// goneExcept marks as gone every living owner whose key starts with prefix and is not
// in keep: what a full listing of a source no longer shows.
func (t *table) goneExcept(prefix string, keep map[string]bool, now time.Time) {
	for key, o := range t.owners {
		if o.alive() && len(key) >= len(prefix) && key[:len(prefix)] == prefix && !keep[key] {
			t.markGone(o, now)
		}
	}
}

func (t *table) markGone(o *owner, now time.Time) {
	if !o.alive() {
		return
	}
	o.gone = now
	t.goneQ = append(t.goneQ, goneRef{o, now})
	// Stale refs (owners that came back) leave with expiry; under churn within one
	// grace they are dropped here, so the queue stays within a few times the limit.
	if len(t.goneQ) > 2*t.limit+16 {
		t.goneQ = slices.DeleteFunc(t.goneQ, func(r goneRef) bool { return !t.current(r) })
	}
}

// current says whether r still stands for a gone owner in the table.
func (t *table) current(r goneRef) bool {
	return r.o.gone.Equal(r.gone) && t.owners[r.o.key] == r.o
}

// expire forgets the owners gone for longer than the grace, and reports whether any went.
func (t *table) expire(now time.Time) bool {
	changed := false
	for len(t.goneQ) > 0 {
		r := t.goneQ[0]
		if t.current(r) {
			if now.Sub(r.gone) < t.grace {
				break
			}
			delete(t.owners, r.o.key)
			changed = true
		}
		t.goneQ = t.goneQ[1:]
	}
	return changed
}

// evictOldestGone forgets the owner gone longest ago, if there is one.
func (t *table) evictOldestGone() bool {
	for len(t.goneQ) > 0 {
		r := t.goneQ[0]
		t.goneQ = t.goneQ[1:]
		if t.current(r) {
			delete(t.owners, r.o.key)
			t.evicted++
			return true
		}
	}
	return false
}

// names builds what NetnsAttrs hands out: for each namespace, the attributes of the
// owner that names it.
func (t *table) names() map[uint32][]attribute.KeyValue {
	best := make(map[uint32]*owner, len(t.owners))
	for _, o := range t.owners {
		if o.attrs == nil || o.inode == 0 {
			continue
		}
		if b := best[o.inode]; b == nil || o.beats(b) {
			best[o.inode] = o
		}
	}
	m := make(map[uint32][]attribute.KeyValue, len(best))
	for inode, o := range best {
		m[inode] = o.attrs
	}
	return m
}

// namedBy reports the namespaces some owner of another kind than k names, living or
// in its grace: those a cgroup scan need not look at.
func (t *table) namedBy(except kind) map[uint32]bool {
	m := make(map[uint32]bool)
	for _, o := range t.owners {
		if o.kind != except && o.attrs != nil {
			m[o.inode] = true
		}
	}
	return m
}

// followed returns the namespaces, sorted, in which a living owner called by one of
// names lives: the ones --filter-container follows.
func (t *table) followed(names map[string]bool) []uint32 {
	var out []uint32
	for _, o := range t.owners {
		if !o.alive() || o.inode == 0 {
			continue
		}
		for _, a := range o.aliases {
			if names[a] {
				out = append(out, o.inode)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
