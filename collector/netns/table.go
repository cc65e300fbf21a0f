package netns

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
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
	// probe is a path whose inode is the namespace's while the owner lives (its
	// sandbox's namespace file, a process's ns/net link); "" when none is checked.
	probe string
	// from is when the owner came to life, as its runtime says (zero: unknown, since
	// ever): a packet seen well before then was another owner's.
	from  time.Time
	since time.Time // when it was learnt
	seen  time.Time // when it was last known to live: learnt, listed, its probe checked
	// gone is zero while it lives; it names its namespace's packets seen until gone
	// (and deathSlack), in spans exported until gone+grace.
	gone time.Time
	// renamed is when a source saw these attrs replace others (a rename's time, as its
	// event gives it); zero when it cannot tell, and then put takes the time it learns
	// of the change.
	renamed time.Time
	// past are the names it had before its renames, oldest first, each until its
	// rename: a packet is named as its namespace was when the packet was seen, though
	// the spanner exports it later. At most maxPastNames, none older than the grace.
	past []pastName
}

// pastName is a name an owner had until a rename.
type pastName struct {
	attrs []attribute.KeyValue
	until time.Time
}

// maxPastNames bounds the names an owner remembers: a container renamed more often
// than this within one grace names its oldest packets after a later name.
const maxPastNames = 8

func (o *owner) alive() bool { return o.gone.IsZero() }

// beats says whether o rather than b names the namespace both claim while both live:
// the higher kind, then the one learnt last.
func (o *owner) beats(b *owner) bool {
	if o.kind != b.kind {
		return o.kind > b.kind
	}
	if !o.since.Equal(b.since) {
		return o.since.After(b.since)
	}
	return o.key > b.key
}

// Slack around an owner's life as its runtime tells it. Docker records a container's
// start once its process runs, so its first packets may come a little before; the
// kernel may send a namespace's last segments as its sockets close after its death.
// Tighter than the time a runtime takes to make the next namespace, which may get the
// freed inode.
const (
	birthSlack = 100 * time.Millisecond
	deathSlack = 100 * time.Millisecond
)

// claim is one owner's hold on an inode under one name, as a snapshot keeps it: the
// packets seen from from to until (unix ns) were in its namespace.
type claim struct {
	from, until int64
	attrs       []attribute.KeyValue
}

// born is when o's claim begins (unix ns): its birth less the slack, or since ever.
func (o *owner) born() int64 {
	if o.from.IsZero() {
		return math.MinInt64
	}
	return o.from.Add(-birthSlack).UnixNano()
}

// claims are o's names over its life from born on, the latest first: each past name
// until the instant before its rename, the current one from the last rename to o's
// death and the slack. No instant has two names, so the order a lookup tries them in
// cannot change a packet's name; a name replaced at the very time it was given claims
// nothing.
func (o *owner) claims(born int64) []claim {
	until := int64(math.MaxInt64)
	if !o.alive() {
		until = o.gone.Add(deathSlack).UnixNano()
	}
	cs := make([]claim, 0, len(o.past)+1)
	attrs := o.attrs
	for i := len(o.past) - 1; i >= 0; i-- {
		renamed := o.past[i].until.UnixNano()
		cs = append(cs, claim{from: max(renamed, born), until: until, attrs: attrs})
		attrs, until = o.past[i].attrs, renamed-1
	}
	return append(cs, claim{from: born, until: until, attrs: attrs})
}

// rename keeps cur's attrs as a past name ending when o's began, at o.renamed or, when
// the source could not tell, now. Past names beyond the bound or older than the grace
// go, the first counted.
func (t *table) rename(cur *owner, o *owner, now time.Time) {
	at := o.renamed
	if at.IsZero() || at.After(now) {
		at = now
	}
	if n := len(cur.past); n > 0 && at.Before(cur.past[n-1].until) {
		at = cur.past[n-1].until
	}
	cur.past = slices.DeleteFunc(cur.past, func(p pastName) bool { return now.Sub(p.until) > t.grace })
	if len(cur.past) == maxPastNames {
		cur.past = slices.Delete(cur.past, 0, 1)
		t.evicted++
	}
	cur.past = append(cur.past, pastName{attrs: cur.attrs, until: at})
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
			if cur.attrs != nil && o.attrs != nil && !slices.Equal(cur.attrs, o.attrs) {
				t.rename(cur, &o, now)
			}
			cur.kind, cur.attrs, cur.aliases, cur.probe, cur.from, cur.seen = o.kind, o.attrs, o.aliases, o.probe, o.from, now
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
	o.since, o.seen, o.gone = now, now, time.Time{}
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

// gone marks the owner under key as gone at when, the time its runtime gives. One a
// probe found gone already, as of when it was last seen, died later, at when.
func (t *table) gone(key string, when time.Time) {
	o := t.owners[key]
	switch {
	case o == nil:
	case o.alive():
		t.markGone(o, when)
	case when.After(o.gone):
		o.gone = when
		t.goneQ = append(t.goneQ, goneRef{o, when})
	}
}

// goneExcept marks as gone every living owner whose key starts with prefix and is not
// in keep (what a full listing of a source no longer shows), as of when it was last
// known to live; those in keep were seen now.
func (t *table) goneExcept(prefix string, keep map[string]bool, now time.Time) {
	for key, o := range t.owners {
		if !o.alive() || !strings.HasPrefix(key, prefix) {
			continue
		}
		if keep[key] {
			o.seen = now
		} else {
			t.markGone(o, o.seen)
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

// claims builds what NetnsAttrs reads: for each namespace, the claims of its owners in
// the order a lookup tries them. Living owners are one namespace seen by several
// sources: the one that beats the others speaks for them, since the earliest birth any
// of them knows. Then the latest begun comes first: of two lives of a reused inode, the
// later one holds the packets seen since it began, the earlier one those before; of an
// owner's names, each holds the packets seen from its rename on.
func (t *table) claims() map[uint32][]claim {
	byInode := make(map[uint32][]*owner, len(t.owners))
	for _, o := range t.owners {
		if o.attrs != nil && o.inode != 0 {
			byInode[o.inode] = append(byInode[o.inode], o)
		}
	}
	m := make(map[uint32][]claim, len(byInode))
	for inode, owners := range byInode {
		type ranked struct {
			claim
			living bool
			kind   kind
		}
		var (
			rs     []ranked
			living *owner
			born   = int64(math.MaxInt64)
		)
		for _, o := range owners {
			if !o.alive() {
				for _, c := range o.claims(o.born()) {
					rs = append(rs, ranked{c, false, o.kind})
				}
				continue
			}
			if living == nil || o.beats(living) {
				living = o
			}
			born = min(born, o.born())
		}
		if living != nil {
			for _, c := range living.claims(born) {
				rs = append(rs, ranked{c, true, living.kind})
			}
		}
		slices.SortFunc(rs, func(a, b ranked) int {
			if c := cmp.Compare(b.from, a.from); c != 0 {
				return c
			}
			if a.living != b.living {
				if a.living {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.kind, a.kind)
		})
		cs := make([]claim, len(rs))
		for i, r := range rs {
			cs[i] = r.claim
		}
		m[inode] = cs
	}
	return m
}

// namedBy reports the namespaces a living owner of another kind than except names:
// those a cgroup scan need not look at.
func (t *table) namedBy(except kind) map[uint32]bool {
	m := make(map[uint32]bool)
	for _, o := range t.owners {
		if o.kind != except && o.attrs != nil && o.alive() {
			m[o.inode] = true
		}
	}
	return m
}

// probes lists the living owners whose namespace a path stands for, to check.
func (t *table) probes() []owner {
	var out []owner
	for _, o := range t.owners {
		if o.alive() && o.probe != "" {
			out = append(out, owner{key: o.key, inode: o.inode, probe: o.probe})
		}
	}
	return out
}

// checked applies a probe round done at now: the owners in dead are gone since they
// were last seen, the others seen now.
func (t *table) checked(probed []owner, dead map[string]bool, now time.Time) bool {
	changed := false
	for _, p := range probed {
		o := t.owners[p.key]
		if o == nil || !o.alive() || o.inode != p.inode {
			continue
		}
		if dead[p.key] {
			t.markGone(o, o.seen)
			changed = true
		} else {
			o.seen = now
		}
	}
	return changed
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
