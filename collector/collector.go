// Package collector is pktspan's only door to the kernel: it detects what the kernel
// offers, loads and attaches the eBPF probes, reads their ring buffer, and decodes
// each record into a spanner.Event.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
)

// Handler receives decoded events and the passage of time, from one goroutine.
type Handler interface {
	HandleEvent(ev *spanner.Event)
	// Tick is called at least every tickEvery, also while events keep arriving.
	Tick(nowUnixNano int64)
}

const (
	tickEvery = 100 * time.Millisecond
	// clockEvery records, the reader looks at the clock to see whether a tick is due:
	// once per record would cost about as much as decoding it. A ring with fewer
	// records wakes the reader at the tick's deadline instead.
	clockEvery       = 64
	clockRefresh     = 10 * time.Second
	kernelBTFPath    = "/sys/kernel/btf/vmlinux"
	defaultKallsyms  = "/proc/kallsyms"
	defaultModules   = "/proc/modules"
	tracefsPath      = "/sys/kernel/tracing"
	debugTracefsPath = "/sys/kernel/debug/tracing"
)

// tracepoint is one kernel tracepoint and the two programs that can serve it.
type tracepoint struct {
	name   string // subsystem:event, as users know it
	event  string // the event name the kernel attaches by
	tpBTF  string // program names in bpf.Tracepoints
	rawTP  string
	needed bool // free events end packet spans: without them every packet times out
}

var tracepoints = []tracepoint{
	{"net:netif_receive_skb", "netif_receive_skb", bpf.TracepointsProgTpBtfNetifReceiveSkb, bpf.TracepointsProgRawTpNetifReceiveSkb, false},
	{"net:net_dev_queue", "net_dev_queue", bpf.TracepointsProgTpBtfNetDevQueue, bpf.TracepointsProgRawTpNetDevQueue, false},
	{"net:net_dev_xmit", "net_dev_xmit", bpf.TracepointsProgTpBtfNetDevXmit, bpf.TracepointsProgRawTpNetDevXmit, false},
	{"skb:kfree_skb", "kfree_skb", bpf.TracepointsProgTpBtfKfreeSkb, bpf.TracepointsProgRawTpKfreeSkb, true},
	{"skb:consume_skb", "consume_skb", bpf.TracepointsProgTpBtfConsumeSkb, bpf.TracepointsProgRawTpConsumeSkb, true},
	{"skb:skb_copy_datagram_iovec", "skb_copy_datagram_iovec", bpf.TracepointsProgTpBtfSkbCopyDatagramIovec, bpf.TracepointsProgRawTpSkbCopyDatagramIovec, false},
	{"tcp:tcp_retransmit_skb", "tcp_retransmit_skb", bpf.TracepointsProgTpBtfTcpRetransmitSkb, bpf.TracepointsProgRawTpTcpRetransmitSkb, false},
}

// cloneFunction is traced whenever a function backend runs, so that the clone of a
// followed skb (a packet tap's copy, a bridge's flood) is followed too.
const cloneFunction = "skb_clone"

// probeConsts are the .rodata values every probe copy shares.
type probeConsts struct {
	filter filterCfg
	kernel kernelCfg
}

// Collector owns the probes from Start to Shutdown.
type Collector struct {
	log         *slog.Logger
	filter      config.Filter
	ringSize    int
	trackSize   int
	pendingSize int
	btfPath     string
	kallsyms    string
	backend     string
	functions   []string
	normalFrees []string

	coll     *ebpf.Collection
	links    []link.Link
	closers  []func() error // function probe collections and their shared call map
	reader   *ringbuf.Reader
	decoder  *Decoder
	clock    *MonoClock
	summary  Summary
	detached atomic.Bool

	eventsRead   atomic.Uint64
	decodeErrors atomic.Uint64
	detachTime   atomic.Int64 // nanoseconds the last detach took
}

// Option configures a Collector.
type Option func(*Collector)

// WithFilter sets the in-kernel filters.
func WithFilter(f config.Filter) Option { return func(c *Collector) { c.filter = f } }

// WithRingSize sets the ring buffer size in bytes (a power of two, page multiple).
func WithRingSize(n int) Option { return func(c *Collector) { c.ringSize = n } }

// WithTrackSize sets how many matching skbs the kernel remembers.
func WithTrackSize(n int) Option { return func(c *Collector) { c.trackSize = n } }

// WithPendingSize sets for how many skbs the kernel holds events back in drops-only
// mode (config.Filter.DropsOnly) until their free says whether they were dropped.
func WithPendingSize(n int) Option { return func(c *Collector) { c.pendingSize = n } }

// WithBTF uses a kernel BTF file instead of /sys/kernel/btf/vmlinux.
func WithBTF(path string) Option { return func(c *Collector) { c.btfPath = path } }

// WithBackend chooses the function probe family: auto, fentry, kprobe or tracepoint
// (no function probes). Tracepoints are attached in every mode.
func WithBackend(b string) Option { return func(c *Collector) { c.backend = b } }

// WithFunctions sets the kernel functions traced with entry and exit probes.
func WithFunctions(names []string) Option { return func(c *Collector) { c.functions = names } }

// WithNormalFreeReasons names kfree_skb reasons that are normal frees on this kernel,
// not drops, for the spans, export mode drops and --drops-only alike.
func WithNormalFreeReasons(names []string) Option {
	return func(c *Collector) { c.normalFrees = names }
}

// WithLogger sets the logger; the collector adds component=collector.
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.log = l } }

// New returns a collector; nothing touches the kernel before Start.
func New(opts ...Option) *Collector {
	def := config.Default()
	c := &Collector{
		log:         slog.Default(),
		ringSize:    def.Probes.RingSize,
		trackSize:   def.Probes.TrackSize,
		pendingSize: def.Probes.PendingSize,
		kallsyms:    defaultKallsyms,
		backend:     def.Probes.Backend,
		functions:   def.Probes.Functions,
	}
	for _, o := range opts {
		o(c)
	}
	c.log = c.log.With("component", "collector")
	return c
}

// Summary says what Start found and attached.
type Summary struct {
	Kernel      string
	BTF         string   // where kernel types came from
	Tracefs     string   // mount point, or "" when not mounted
	DropReasons int      // values of enum skb_drop_reason known
	NormalFrees []string // reasons configured as normal frees, not drops
	// Conntrack says whether events carry their conntrack entry's original tuple, and
	// where struct nf_conn's layout came from, or why not.
	Conntrack  string
	Attached   []Attached
	Skipped    []Skipped
	AttachTime time.Duration
	Filter     string
}

// Attached is one probe in place.
type Attached struct{ Name, Via string }

// Skipped is one probe that could not be attached, and why.
type Skipped struct{ Name, Reason string }

// String renders the summary as the lines pktspan prints at start.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s, BTF from %s, %d drop reasons", s.Kernel, s.BTF, s.DropReasons)
	if len(s.NormalFrees) > 0 {
		fmt.Fprintf(&b, " (normal frees, not drops: %s)", strings.Join(s.NormalFrees, ","))
	}
	if s.Tracefs == "" {
		b.WriteString(", tracefs not mounted (not needed: tracepoints attach through BTF)")
	}
	fmt.Fprintf(&b, "\nconntrack: %s", s.Conntrack)
	fmt.Fprintf(&b, "\nattached %d probes in %s:", len(s.Attached), s.AttachTime.Round(100*time.Microsecond))
	for _, a := range s.Attached {
		fmt.Fprintf(&b, "\n  %-30s %s", a.Name, a.Via)
	}
	for _, k := range s.Skipped {
		fmt.Fprintf(&b, "\n  %-30s skipped: %s", k.Name, k.Reason)
	}
	fmt.Fprintf(&b, "\nfilter: %s", s.Filter)
	return b.String()
}

// Summary returns what Start attached.
func (c *Collector) Summary() Summary { return c.summary }

// Start checks privileges and kernel support, loads the probes and attaches them.
// It fails only when nothing useful can be attached.
func (c *Collector) Start(ctx context.Context) (err error) {
	// Whatever fails, nothing Start made stays in the kernel.
	defer func() {
		if err != nil {
		}
	}()
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the locked-memory limit for eBPF maps: %w", err)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	c.summary.Kernel = unix.ByteSliceToString(uts.Release[:])
	c.summary.Tracefs = findTracefs()

	// One cache for every load below: each would otherwise parse the kernel's BTF
	// again (for CO-RE and for fentry targets), which was most of the attach time.
	cache := btf.NewCache()
	kernelTypes, inKernel, err := c.loadBTF(cache)
	if err != nil {
		return err
	}
	reasons, err := NewDropReasons(kernelTypes)
	if err != nil {
		return err
	}
	if err := reasons.TreatAsNormal(c.normalFrees); err != nil {
		return err
	}
	c.summary.DropReasons = len(reasons.names)
	c.summary.NormalFrees = c.normalFrees
	kcfg, conntrack, err := newKernelCfg(kernelTypes, inKernel, c.summary.BTF, reasons)
	if err != nil {
		return err
	}
	c.summary.Conntrack = conntrack
	syms, err := NewKallsyms(c.kallsyms, defaultModules)
	if err != nil {
		return err
	}
	if c.clock, err = NewMonoClock(); err != nil {
		return err
	}
	sigs := resolveSignatures(kernelTypes, c.functions)
	functions := make([]Function, len(c.functions))
	for i, name := range c.functions {
		functions[i] = Function{Name: name, Ret: sigs[i].ret}
	}
	c.decoder = NewDecoder(reasons, syms, c.clock, functions)

	spec, err := bpf.LoadTracepoints()
	if err != nil {
		return fmt.Errorf("loading embedded probes: %w", err)
	}
	spec.Maps[bpf.TracepointsMapEvents].MaxEntries = uint32(c.ringSize)
	spec.Maps[bpf.TracepointsMapTracked].MaxEntries = uint32(c.trackSize)
	// Without drops-only the pending map is never used: one entry keeps it cheap.
	spec.Maps[bpf.TracepointsMapPending].MaxEntries = 1
	if c.filter.DropsOnly {
		spec.Maps[bpf.TracepointsMapPending].MaxEntries = uint32(c.pendingSize)
	}
	fcfg, err := encodeFilter(c.filter)
	if err != nil {
		return err
	}
	if err := setConsts(spec, probeConsts{fcfg, kcfg}, nil); err != nil {
		return err
	}
	c.summary.Filter = describeFilter(c.filter, c.pendingSize)

	start := time.Now()
	chosen := c.chooseTracepoints(spec, kernelTypes, inKernel)
	shared, err := c.newSharedMaps(spec)
	if err != nil {
		return err
	}
	opts := ebpf.CollectionOptions{Cache: cache, MapReplacements: shared}
	if !inKernel {
		opts.Programs.KernelTypes = kernelTypes
	}
	// The two families load at once: loading leaves CPUs idle at times (the kernel
	// waits on trampoline and text updates), and the function loads are most of it.
	tpDone := make(chan tracepointsResult, 1)
	go func() { tpDone <- c.attachTracepoints(spec, opts, chosen) }()
	functionsAttached, err := c.attachFunctions(cache, shared, kernelTypes, inKernel, sigs, probeConsts{fcfg, kcfg})
	tp := <-tpDone
	c.coll = tp.coll
	c.links = append(tp.links, c.links...)
	c.summary.Attached = append(tp.attached, c.summary.Attached...)
	c.summary.Skipped = append(tp.skipped, c.summary.Skipped...)
	if err == nil {
		err = tp.err
	}
	if err != nil {
		return err
	}
	c.summary.AttachTime = time.Since(start)
	if len(c.links) == 0 {
		return errors.New("no probe could be attached: see the warnings above")
	}
	if (c.backend == "fentry" || c.backend == "kprobe") && functionsAttached == 0 && len(c.functions) > 0 {
		return fmt.Errorf("--backend %s: no function could be attached (see the warnings above); use --backend auto or tracepoint", c.backend)
	}
	for _, tp := range tracepoints {
		if tp.needed && !c.isAttached(tp.name) {
			c.log.Warn("packet spans will end by timeout only", "missing", tp.name)
		}
	}
	if c.reader, err = ringbuf.NewReader(shared[bpf.TracepointsMapEvents]); err != nil {
		return fmt.Errorf("opening the ring buffer: %w", err)
	}
	return nil
}

func (c *Collector) isAttached(name string) bool {
	for _, a := range c.summary.Attached {
		if a.Name == name {
			return true
		}
	}
	return false
}

// setConsts writes the filter, the kernel facts and extra into cs's .rodata; both
// families name the first two alike.
func setConsts(cs *ebpf.CollectionSpec, consts probeConsts, extra map[string]any) error {
	values := map[string]any{bpf.TracepointsVarFilter: consts.filter, bpf.TracepointsVarKcfg: consts.kernel}
	maps.Copy(values, extra)
	for v, val := range values {
		if err := cs.Variables[v].Set(val); err != nil {
			return fmt.Errorf("setting %s: %w", v, err)
		}
	}
	return nil
}

func closeLinks(links []link.Link) {
	for _, l := range links {
		_ = l.Close()
	}
}

// newSharedMaps makes the maps both probe families use (the ring buffer, tracked skbs,
// counters, drops-only's pending events), keyed by their names in spec.
func (c *Collector) newSharedMaps(spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	shared := map[string]*ebpf.Map{}
	for _, name := range []string{bpf.TracepointsMapEvents, bpf.TracepointsMapTracked, bpf.TracepointsMapCounters,
		bpf.TracepointsMapPending, bpf.TracepointsMapPendingScratch} {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			return nil, fmt.Errorf("creating map %s: %w", name, err)
		}
		// Every collection using it holds its own copy.
		c.closers = append(c.closers, m.Close)
		shared[name] = m
	}
	return shared, nil
}

// tracepointsResult is what attachTracepoints did.
type tracepointsResult struct {
	coll     *ebpf.Collection
	links    []link.Link
	attached []Attached
	skipped  []Skipped
	err      error
}

// attachTracepoints loads the tracepoint family and attaches the chosen tracepoints.
// It runs beside attachFunctions, so it leaves the Collector alone.
func (c *Collector) attachTracepoints(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, chosen []tracepoint) tracepointsResult {
	start := time.Now()
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			c.log.Debug("verifier log", "log", fmt.Sprintf("%+v", verr))
		}
		return tracepointsResult{err: fmt.Errorf("loading eBPF probes into the kernel: %w", err)}
	}
	r := tracepointsResult{coll: coll}
	for _, tp := range chosen {
		l, via, err := attach(coll, tp)
		if err != nil {
			r.skipped = append(r.skipped, Skipped{tp.name, err.Error()})
			c.log.Warn("tracepoint not attached", "tracepoint", tp.name, "error", err)
			continue
		}
		r.links = append(r.links, l)
		r.attached = append(r.attached, Attached{tp.name, via})
	}
	c.log.Debug("tracepoints attached", "took", time.Since(start))
	return r
}

// loadBTF returns the kernel's types and whether they are the running kernel's own
// (then tp_btf programs can attach; otherwise only raw tracepoints can).
func (c *Collector) loadBTF(cache *btf.Cache) (*btf.Spec, bool, error) {
	if c.btfPath != "" {
		spec, err := btf.LoadSpec(c.btfPath)
		if err != nil {
			return nil, false, fmt.Errorf("reading BTF from --btf %s: %w", c.btfPath, err)
		}
		c.summary.BTF = c.btfPath
		return spec, false, nil
	}
	if _, err := os.Stat(kernelBTFPath); err != nil {
		return nil, false, fmt.Errorf("%w: %s is missing; use a kernel built with CONFIG_DEBUG_INFO_BTF=y or pass --btf FILE with this kernel's BTF", errNoBTF, kernelBTFPath)
	}
	spec, err := cache.Kernel()
	if err != nil {
		return nil, false, fmt.Errorf("reading kernel BTF from %s: %w", kernelBTFPath, err)
	}
	c.summary.BTF = kernelBTFPath
	return spec, true, nil
}

// chooseTracepoints keeps one program per available tracepoint in spec and deletes
// the rest, so loading never fails on a tracepoint this kernel lacks.
func (c *Collector) chooseTracepoints(spec *ebpf.CollectionSpec, types *btf.Spec, inKernel bool) []tracepoint {
	var chosen []tracepoint
	for _, tp := range tracepoints {
		var typedef *btf.Typedef
		exists := types.TypeByName("btf_trace_"+tp.event, &typedef) == nil
		switch {
		case !exists:
			delete(spec.Programs, tp.tpBTF)
			delete(spec.Programs, tp.rawTP)
			c.summary.Skipped = append(c.summary.Skipped, Skipped{tp.name, "not on this kernel"})
			c.log.Warn("tracepoint not on this kernel, skipped", "tracepoint", tp.name)
			continue
		case inKernel:
			delete(spec.Programs, tp.rawTP)
		default:
			delete(spec.Programs, tp.tpBTF)
		}
		chosen = append(chosen, tp)
	}
	return chosen
}

func attach(coll *ebpf.Collection, tp tracepoint) (link.Link, string, error) {
	if prog := coll.Programs[tp.tpBTF]; prog != nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return nil, "", fmt.Errorf("attaching tp_btf %s: %w", tp.event, err)
		}
		return l, "tp_btf", nil
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp.event, Program: coll.Programs[tp.rawTP]})
	if err != nil {
		return nil, "", fmt.Errorf("attaching raw_tp %s: %w", tp.event, err)
	}
	return l, "raw_tp", nil
}

// Run reads events into h until ctx ends, then detaches the probes, drains what is
// left in the ring buffer into h, and returns.
func (c *Collector) Run(ctx context.Context, h Handler) error {
	var (
		rec       ringbuf.Record
		ev        spanner.Event
		records   uint
		nextTick  = time.Now().Add(tickEvery)
		nextClock = time.Now().Add(clockRefresh)
	)
	c.reader.SetDeadline(nextTick)
	for {
		err := c.reader.ReadInto(&rec)
		switch {
		case err == nil:
			c.handle(rec.RawSample, &ev, h)
			if records++; records%clockEvery != 0 {
				continue
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrFlushed):
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
		now := time.Now()
		if now.Before(nextTick) {
			continue
		}
		if now.After(nextClock) {
			_ = c.clock.Refresh()
			nextClock = now.Add(clockRefresh)
		}
		h.Tick(now.UnixNano())
		nextTick = now.Add(tickEvery)
		if ctx.Err() != nil && !c.detached.Load() {
			// Detach first so the ring stops filling, then read until the flush
			// marker: every event the kernel wrote reaches h.
			c.detach()
			if err := c.reader.Flush(); err != nil {
				return fmt.Errorf("draining the ring buffer: %w", err)
			}
			c.reader.SetDeadline(time.Time{})
			continue
		}
		if !c.detached.Load() {
			c.reader.SetDeadline(nextTick)
		}
	}
}

func (c *Collector) handle(raw []byte, ev *spanner.Event, h Handler) {
	c.eventsRead.Add(1)
	if err := c.decoder.Decode(raw, ev); err != nil {
		if c.decodeErrors.Add(1) == 1 {
			c.log.Warn("undecodable event (counted in stats from now on)", "error", err)
		}
		return
	}
	h.HandleEvent(ev)
}

func (c *Collector) detach() {
	if c.detached.Swap(true) {
		return
	}
	start := time.Now()
	closeLinks(c.links)
	c.links = nil
	c.detachTime.Store(int64(time.Since(start)))
}

// Shutdown detaches the probes (if Run has not) and frees every kernel object; Start
// does the same when it fails part way. Calling it again does nothing.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.detach()
	c.close()
	return nil
}

func (c *Collector) close() {
	if c.reader != nil {
		_ = c.reader.Close()
	}
	for _, cl := range c.closers {
		_ = cl()
	}
	c.closers = nil
	if c.coll != nil {
		c.coll.Close()
	}
	c.reader, c.coll = nil, nil
}

// Stats are the collector's counters: what the kernel sent and what was lost.
type Stats struct {
	EventsRead   uint64
	EventsLost   uint64 // ring buffer full: the kernel could not write them
	DecodeErrors uint64
	Tracked      uint64 // skbs the kernel started following
	TrackFailed  uint64 // skbs that matched but could not be remembered
	TrackStale   uint64 // remembered skbs freed unseen, forgotten when their address came back
	CallsFull    uint64 // function entries whose exit could not be awaited (call map full)
	// Drops-only mode (filter.drops_only): what became of the events the kernel held
	// back until their skb's free.
	HeldEvents    uint64 // events held back
	HeldSent      uint64 // held events sent because their skb was dropped
	HeldDiscarded uint64 // events discarded because their skb was freed normally (or unseen)
	HeldOverflow  uint64 // skbs with more events than the kernel holds per skb: the later ones lost
	HeldEvicted   uint64 // skbs whose held events were lost from a full pending map
	DetachTime    time.Duration
}

// Stats reads the counters, summing the kernel's per-CPU values.
func (c *Collector) Stats() Stats {
	s := Stats{EventsRead: c.eventsRead.Load(), DecodeErrors: c.decodeErrors.Load(), DetachTime: time.Duration(c.detachTime.Load())}
	if c.coll == nil {
		return s
	}
	m := c.coll.Maps[bpf.TracepointsMapCounters]
	sum := func(id uint32) uint64 {
		var per []uint64
		if err := m.Lookup(id, &per); err != nil {
			return 0
		}
		var t uint64
		for _, v := range per {
			t += v
		}
		return t
	}
	s.EventsLost = sum(counterRingbufFull)
	s.Tracked = sum(counterTrackInsert)
	s.TrackFailed = sum(counterTrackFail)
	s.TrackStale = sum(counterTrackStale)
	s.CallsFull = sum(counterCallsFull)
	s.HeldEvents = sum(counterHeld)
	s.HeldSent = sum(counterHeldSent)
	s.HeldDiscarded = sum(counterHeldDiscarded)
	s.HeldOverflow = sum(counterHeldOverflow)
	s.HeldEvicted = sum(counterHeldEvicted)
	return s
}

// heldMax is HELD_MAX in bpf/headers/pktspan.h: the events of one skb drops-only mode
// sends at most, its free included.
const heldMax = len(bpf.TracepointsPending{}.Events) + 1

// Counter indexes, mirroring enum counter_id in bpf/headers/pktspan.h.
const (
	counterRingbufFull uint32 = iota
	counterTrackInsert
	counterTrackDelete
	counterTrackFail
	counterTrackStale
	counterCallsFull
	counterHeld
	counterHeldSent
	counterHeldDiscarded
	counterHeldOverflow
	counterHeldEvicted
)

func checkPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
		if has(unix.CAP_SYS_ADMIN) || (has(unix.CAP_BPF) && has(unix.CAP_PERFMON)) {
			return nil
		}
	}
	return errors.New("pktspan needs root, or CAP_BPF and CAP_PERFMON, to load eBPF probes: run it with sudo")
}

func findTracefs() string {
	for _, p := range []string{tracefsPath, debugTracefsPath} {
		if _, err := os.Stat(p + "/events"); err == nil {
			return p
		}
	}
	return ""
}

func describeFilter(f config.Filter, pendingSize int) string {
	var parts []string
	add := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, key+"="+strings.Join(vals, ","))
		}
	}
	itoa := func(ns []int) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = strconv.Itoa(n)
		}
		return out
	}
	add("addr", f.Addr)
	add("port", itoa(f.Port))
	add("proto", f.Proto)
	add("iface", f.Iface)
	add("netns", f.Netns)
	add("vlan", itoa(f.VLAN))
	add("mark", f.Mark)
	desc := strings.Join(parts, " ")
	if len(parts) == 0 {
		desc = "none (every IP packet)"
	}
	if f.DropsOnly {
		desc += fmt.Sprintf("; drops only: the kernel holds the events of up to %d skbs (%d each, the free included) until their free",
			pendingSize, heldMax)
	}
	return desc
}
