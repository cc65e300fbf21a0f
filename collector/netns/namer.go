// Package netns names network namespaces after their owners for pktspan's spans: the
// host's own namespace, ip netns names (/run/netns), Docker containers (the Engine API
// on its unix socket, following its event stream) and Kubernetes pods (a CRI runtime's
// gRPC API), and, for a namespace none of them knows, the container ID its processes'
// cgroup names. A Namer is a spanner.NetnsNamer: a lookup reads an immutable snapshot
// and never blocks or allocates; the snapshot is rebuilt in the background whenever an
// owner comes or goes.
package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/config"
)

// Where the host keeps what the sources read; tests point them elsewhere.
const (
	defaultProcRoot = "/proc"
	defaultNetnsDir = "/run/netns"
)

// defaultCRISockets are looked for when no CRI socket is configured: containerd's and
// CRI-O's.
var defaultCRISockets = []string{"/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}

// missRingSize bounds the namespaces a lookup miss reports to the background at once.
const missRingSize = 64

// missInterval is the shortest time between two searches for namespaces lookups missed.
const missInterval = time.Second

// Namer names network namespaces after their owners. Start it, then hand it to the
// spanner (spanner.WithNetnsNamer); it learns in the background until Shutdown or the
// end of Start's context.
type Namer struct {
	log          *slog.Logger
	dockerSocket string
	criSocket    string
	criDefaults  []string
	procRoot     string
	netnsDir     string
	resync       time.Duration
	grace        time.Duration
	limit        int
	follow       map[string]bool
	onFollow     func([]uint32) error

	// What NetnsAttrs reads: replaced whole, never changed.
	snap atomic.Pointer[snapshot]

	misses  atomic.Uint64
	evicted atomic.Uint64
	errors  atomic.Uint64

	// Lookups that missed leave their inode here and wake the background, which looks
	// for owners it has not heard of.
	missRing [missRingSize]atomic.Uint32
	missPos  atomic.Uint32
	missed   chan struct{}

	// hostInode is set by Start before any other goroutine runs, and only read after.
	hostInode uint32

	mu            sync.Mutex // guards what follows
	tab           *table
	lastFollowed  []uint32
	followedOnce  bool
	followFailing bool            // the last update of the followed set failed: warned once
	tried         map[uint32]bool // missed namespaces searched for since the last resync

	docker *dockerSource
	cris   []*criSource
	// sandboxes is set once Docker's sandbox directory is watched; Stats reads it.
	sandboxes  atomic.Pointer[sandboxWatch]
	sandboxDir string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type snapshot struct {
	claims map[uint32][]claim
}

// living says whether a living owner names the namespace.
func (s *snapshot) living(inode uint32) bool {
	for _, c := range s.claims[inode] {
		if c.until == math.MaxInt64 {
			return true
		}
	}
	return false
}

// Stats are the namer's counters.
type Stats struct {
	Names   int    // namespaces named now, gone owners in their grace included
	Misses  uint64 // lookups of a namespace with no known owner of the skb's time
	Evicted uint64 // owners forgotten before their grace ended, or not kept, to stay within the limit
	Errors  uint64 // failed runtime calls, lost event streams, namespaces that could not be read
}

// Option configures a Namer.
type Option func(*Namer)

// WithDockerSocket names Docker containers through the Engine API on this unix socket;
// "" leaves Docker out.
func WithDockerSocket(path string) Option { return func(n *Namer) { n.dockerSocket = path } }

// WithCRISocket names pods through the CRI runtime on this unix socket; "" looks for
// containerd's and CRI-O's default sockets.
func WithCRISocket(path string) Option { return func(n *Namer) { n.criSocket = path } }

// WithResync sets how often every owner is listed again.
func WithResync(d time.Duration) Option { return func(n *Namer) { n.resync = d } }

// WithGrace sets how long a gone owner still names its namespace.
func WithGrace(d time.Duration) Option { return func(n *Namer) { n.grace = d } }

// WithLimit bounds the owners kept, gone ones in their grace included.
func WithLimit(owners int) Option { return func(n *Namer) { n.limit = owners } }

// WithFollow calls set with the namespaces, sorted, that the containers (or pods, as
// namespace/pod) called by names live in now, each time that set changes: the first
// time from Start, then from the background.
func WithFollow(names []string, set func(inodes []uint32) error) Option {
	return func(n *Namer) {
		n.follow = make(map[string]bool, len(names))
		for _, name := range names {
			n.follow[name] = true
		}
		n.onFollow = set
	}
}

// WithLogger sets the logger; the namer adds component=netns.
func WithLogger(l *slog.Logger) Option { return func(n *Namer) { n.log = l } }

// withPaths points the host's paths elsewhere (tests).
func withPaths(procRoot, netnsDir string, criDefaults []string) Option {
	return func(n *Namer) { n.procRoot, n.netnsDir, n.criDefaults = procRoot, netnsDir, criDefaults }
}

// withSandboxDir points Docker's sandbox directory elsewhere (tests).
func withSandboxDir(dir string) Option { return func(n *Namer) { n.sandboxDir = dir } }

// New returns a namer that knows nothing until Start.
func New(opts ...Option) *Namer {
	def := config.Default()
	n := &Namer{
		log:          slog.Default(),
		dockerSocket: def.Netns.DockerSocket,
		criDefaults:  defaultCRISockets,
		procRoot:     defaultProcRoot,
		netnsDir:     defaultNetnsDir,
		sandboxDir:   defaultSandboxDir,
		resync:       def.Netns.Resync,
		grace:        def.Netns.Grace,
		limit:        def.Limits.NetnsNames,
		missed:       make(chan struct{}, 1),
		tried:        make(map[uint32]bool),
	}
	for _, o := range opts {
		o(n)
	}
	n.log = n.log.With("component", "netns")
	n.tab = newTable(n.limit, n.grace)
	n.snap.Store(&snapshot{claims: map[uint32][]claim{}})
	return n
}

// NetnsAttrs returns the attributes of the owner whose namespace had this inode when
// the skb was there, or nil when none is known. It reads the current snapshot: no
// lock, no allocation.
func (n *Namer) NetnsAttrs(inode uint32, atUnixNano int64) []attribute.KeyValue {
	if inode == 0 {
		return nil
	}
	for _, c := range n.snap.Load().claims[inode] {
		if c.from <= atUnixNano && atUnixNano <= c.until {
			return c.attrs
		}
	}
	n.misses.Add(1)
	n.missRing[n.missPos.Add(1)%missRingSize].Store(inode)
	select {
	case n.missed <- struct{}{}:
	default:
	}
	return nil
}

// Stats reads the counters.
func (n *Namer) Stats() Stats {
	return Stats{
		Names:   len(n.snap.Load().claims),
		Misses:  n.misses.Load(),
		Evicted: n.evicted.Load() + n.sourcesEvicted(),
		Errors:  n.errors.Load(),
	}
}

// sourcesEvicted counts what Docker's source forgot for its bounds: sandboxes and
// created containers.
func (n *Namer) sourcesEvicted() uint64 {
	var sum uint64
	if w := n.sandboxes.Load(); w != nil {
		sum += w.evicted.Load()
	}
	if n.docker != nil {
		sum += n.docker.created.evicted.Load()
	}
	return sum
}

// Start learns the owners there are now (a runtime that is missing or does not answer
// is one warning, never an error) and goes on learning in the background until ctx
// ends or Shutdown. It fails only when ctx ends first.
func (n *Namer) Start(ctx context.Context) error {
	bg, cancel := context.WithCancel(ctx)
	n.cancel = cancel

	now := time.Now()
	n.mu.Lock()
	n.hostInode = n.readHost()
	n.tab.put(hostOwner(n.hostInode), now)
	n.mu.Unlock()
	n.syncNetnsDir()
	if n.dockerSocket != "" {
		n.docker = n.startDocker(ctx)
	}
	n.cris = n.startCRI(ctx)
	n.scanCgroups(nil)
	n.publish()
	if err := ctx.Err(); err != nil {
		cancel()
		n.close()
		return fmt.Errorf("starting the netns namer: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.loop(bg)
	}()
	if n.docker != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.docker.run(bg)
		}()
	}
	return nil
}

// Shutdown stops the background work and waits for it until ctx ends. The snapshot
// stays: spans exported later are still named.
func (n *Namer) Shutdown(ctx context.Context) error {
	if n.cancel != nil {
		n.cancel()
	}
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		n.close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping the netns namer: %w", ctx.Err())
	}
}

// close releases the runtime connections.
func (n *Namer) close() {
	for _, c := range n.cris {
		c.close()
	}
	if n.docker != nil {
		n.docker.api.close()
	}
	if w := n.sandboxes.Load(); w != nil {
		w.close()
	}
}

// loop relists the owners every resync, forgets gone ones after their grace, and looks
// for the owners of namespaces lookups missed.
func (n *Namer) loop(ctx context.Context) {
	resync := time.NewTicker(n.resync)
	defer resync.Stop()
	expire := time.NewTicker(min(max(n.grace/4, 10*time.Millisecond), time.Second))
	defer expire.Stop()
	var (
		lastMiss  time.Time
		missTimer <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			n.syncNetnsDir()
			n.syncCRI(ctx)
			n.mu.Lock()
			clear(n.tried)
			n.mu.Unlock()
			n.scanCgroups(nil)
			n.publish()
		case <-expire.C:
			n.checkProbes()
		case <-n.missed:
			if wait := missInterval - time.Since(lastMiss); wait > 0 {
				if missTimer == nil {
					missTimer = time.After(wait)
				}
				continue
			}
			lastMiss = time.Now()
			n.learnMissed(ctx)
		case <-missTimer:
			missTimer = nil
			lastMiss = time.Now()
			n.learnMissed(ctx)
		}
	}
}

// checkProbes finds the owners whose namespace went without their runtime saying so
// (pods, ip netns, processes: nothing streams their deaths), and forgets those gone
// for longer than the grace.
func (n *Namer) checkProbes() {
	n.mu.Lock()
	probed := n.tab.probes()
	n.mu.Unlock()
	dead := make(map[string]bool)
	for _, p := range probed {
		if inode, err := inodeOf(p.probe); err != nil || inode != p.inode {
			dead[p.key] = true
		}
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	died := n.tab.checked(probed, dead, now)
	if expired := n.tab.expire(now); died || expired {
		n.publishLocked()
	}
}

// learnMissed looks for the owners of the namespaces lookups missed, once per
// namespace until the next resync: ip netns names, pods, and processes' cgroups.
func (n *Namer) learnMissed(ctx context.Context) {
	snap := n.snap.Load()
	n.mu.Lock()
	want := make(map[uint32]bool)
	for i := range n.missRing {
		inode := n.missRing[i].Load()
		if inode != 0 && !snap.living(inode) && !n.tried[inode] {
			want[inode] = true
		}
	}
	if len(n.tried)+len(want) > n.limit {
		clear(n.tried)
	}
	maps.Copy(n.tried, want)
	n.mu.Unlock()
	if len(want) == 0 {
		return
	}
	n.syncNetnsDir()
	n.syncCRI(ctx)
	n.scanCgroups(want)
	n.publish()
}

// publish rebuilds the snapshot from the table.
func (n *Namer) publish() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishLocked()
}

func (n *Namer) publishLocked() {
	n.tab.expire(time.Now())
	n.snap.Store(&snapshot{claims: n.tab.claims()})
	n.evicted.Store(n.tab.evicted)
	if n.onFollow == nil {
		return
	}
	set := n.tab.followed(n.follow)
	if n.followedOnce && slices.Equal(set, n.lastFollowed) {
		return
	}
	if err := n.onFollow(set); err != nil {
		n.errors.Add(1)
		if !n.followFailing {
			n.log.Warn("followed containers' namespaces not updated; retried at the next change or resync", "error", err)
		}
		n.followFailing = true
		return
	}
	n.lastFollowed, n.followedOnce, n.followFailing = set, true, false
	n.log.Debug("followed containers' namespaces", "inodes", set)
}

// put records an owner a source learnt, logging what it names.
func (n *Namer) put(o owner) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.putLocked(o)
}

func (n *Namer) putLocked(o owner) {
	if !n.tab.put(o, time.Now()) {
		n.log.Debug("namespace owner not kept: the table is full of living owners", "owner", o.key, "inode", o.inode)
		return
	}
	if o.attrs != nil {
		n.log.Debug("namespace named", "inode", o.inode, "owner", o.key)
	}
}

// fail counts an error of a source and logs it at debug level: a runtime that stays
// down would otherwise repeat the same line every resync.
func (n *Namer) fail(msg string, err error, args ...any) {
	n.errors.Add(1)
	n.log.Debug(msg, append(args, "error", err)...)
}

// errGone is a source's answer for an owner that went before it could be read.
var errGone = errors.New("gone")
