// Package collector is pktspan's only door to the kernel: it detects what the kernel
// offers, loads and attaches the eBPF probes, reads their ring buffer, and decodes
// each record into a spanner.Event.
//
// Its files follow the work: probes.go is the probe table; attach_*.go load and attach
// the two probe families over the maps of kernel_objects.go; ring.go reads and decodes;
// stats.go and summary.go report; btf.go, dropreasons.go, kallsyms.go, clock.go,
// conntrack.go and host.go are the kernel facts the probes and the decoder need.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/collector/pcapfilter"
	"github.com/pktspan/pktspan/config"
)

// Collector owns the probes from Start to Shutdown.
type Collector struct {
	log         *slog.Logger
	filter      config.Filter
	expression  *pcapfilter.Filter // filter.expression, compiled; nil when none
	ringSize    int
	trackSize   int
	stackSize   int // drop stacks kept in the kernel until read; 0: --stack is off
	btfPath     string
	kallsyms    string
	backend     Backend
	functions   []string
	normalFrees []string
	correlate   *Correlation // nil: --correlate none

	// Kernel objects, released by Shutdown (or by a Start that fails).
	coll    *ebpf.Collection
	links   []link.Link
	closers []func() error // function probe collections and the shared maps
	reader  recordReader

	decoder  *Decoder
	clock    *MonoClock
	summary  Summary
	detached atomic.Bool
	// nftUnusable says why the table and chain of nft drops cannot be read here.
	nftUnusable error

	// followed is the kernel's set of namespaces --filter-container follows, from Start
	// until release; FollowNetns may run on another goroutine.
	followMu sync.Mutex
	followed *ebpf.Map

	eventsRead   atomic.Uint64
	decodeErrors atomic.Uint64
	detachTime   atomic.Int64 // nanoseconds the last detach took
	ringDelayMax atomic.Int64 // nanoseconds: the longest an event was seen waiting in the ring
}

// Option configures a Collector.
type Option func(*Collector)

// WithFilter sets the in-kernel filters.
func WithFilter(f config.Filter) Option { return func(c *Collector) { c.filter = f } }

// WithRingSize sets the ring buffer size in bytes (a power of two, page multiple).
func WithRingSize(n int) Option { return func(c *Collector) { c.ringSize = n } }

// WithTrackSize sets how many matching skbs the kernel remembers.
func WithTrackSize(n int) Option { return func(c *Collector) { c.trackSize = n } }

// WithStack records the kernel stack of each drop of a followed skb (--stack); the
// kernel keeps up to size of them until the decoder reads them.
func WithStack(size int) Option { return func(c *Collector) { c.stackSize = size } }

// WithBTF uses a kernel BTF file instead of /sys/kernel/btf/vmlinux.
func WithBTF(path string) Option { return func(c *Collector) { c.btfPath = path } }

// WithBackend chooses the function probe family. Tracepoints are attached with every
// backend.
func WithBackend(b Backend) Option { return func(c *Collector) { c.backend = b } }

// WithFunctions sets the kernel functions traced with entry and exit probes.
func WithFunctions(names []string) Option { return func(c *Collector) { c.functions = names } }

// WithNormalFreeReasons names kfree_skb reasons that are normal frees on this kernel,
// not drops, for the spans, export mode drops and --drops-only alike.
func WithNormalFreeReasons(names []string) Option {
	return func(c *Collector) { c.normalFrees = names }
}

// WithCorrelation attaches the request probes of --correlate http and has the decoder
// read the traceparent of each request they see.
func WithCorrelation(cr Correlation) Option { return func(c *Collector) { c.correlate = &cr } }

// WithLogger sets the logger; the collector adds component=collector.
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.log = l } }

// New returns a collector; nothing touches the kernel before Start.
func New(opts ...Option) *Collector {
	def := config.Default()
	c := &Collector{
		log:       slog.Default(),
		ringSize:  def.Probes.RingSize,
		trackSize: def.Probes.TrackSize,
		kallsyms:  defaultKallsyms,
		functions: def.Probes.Functions,
	}
	for _, o := range opts {
		o(c)
	}
	c.log = c.log.With("component", "collector")
	return c
}

// Start checks privileges and kernel support, loads the probes and attaches them. It
// fails only when nothing useful can be attached, or when ctx ends first; whatever
// fails, nothing Start made stays in the kernel.
func (c *Collector) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			c.release()
		}
	}()
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the locked-memory limit for eBPF maps (this kernel charges them to RLIMIT_MEMLOCK, which only CAP_SYS_RESOURCE may raise): %w", err)
	}
	c.summary.Kernel = kernelRelease()
	c.summary.Tracefs = findTracefs()

	// One cache for every load below: each would otherwise parse the kernel's BTF
	// again (for CO-RE and for fentry targets), which was most of the attach time.
	cache := btf.NewCache()
	kb, err := c.loadBTF(cache)
	if err != nil {
		return err
	}
	facts, err := c.kernelFacts(kb)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("starting: %w", err)
	}

	spec, err := bpf.LoadTracepoints()
	if err != nil {
		return fmt.Errorf("loading embedded probes: %w", err)
	}
	c.sizeMaps(spec)
	facts.kcfg.PlainHeaderLoads = kb.plainHeaderLoads(spec, cache)
	c.summary.Headers = "read with bpf_probe_read_kernel"
	if facts.kcfg.PlainHeaderLoads != 0 {
		c.summary.Headers = "read with plain loads where programs are typed by BTF (bpf_rdonly_cast to no type)"
	}
	fcfg, err := encodeFilter(c.filter)
	if err != nil {
		return err
	}
	if c.expression != nil {
		fcfg.Pcap = 1
	}
	consts := probeConsts{filter: fcfg, kernel: facts.kcfg, ringWake: uint64(c.ringSize / ringWakeFraction),
		expression: c.expression}
	if err := setConsts(spec, consts, map[string]any{
		bpf.TracepointsVarWantStack:        c.wantStack(),
		bpf.TracepointsVarRetransmitHasErr: kb.retransmitHasErr(),
	}); err != nil {
		return err
	}
	c.summary.Filter = describeFilter(c.filter, c.expression != nil)

	start := time.Now()
	chosen := c.chooseTracepoints(spec, kb)
	shared, err := c.newSharedMaps(spec)
	if err != nil {
		return err
	}
	c.followMu.Lock()
	c.followed = shared[bpf.TracepointsMapFollowedNetns]
	c.followMu.Unlock()
	opts := kb.collectionOptions(cache, shared)
	// The two families load at once: loading leaves CPUs idle at times (the kernel
	// waits on trampoline and text updates), and the function loads are most of it.
	tpDone := make(chan tracepointsResult, 1)
	go func() { tpDone <- c.attachTracepoints(ctx, spec, opts, chosen) }()
	fn := c.attachFunctions(ctx, cache, shared, kb, facts.functions, consts)
	tp := <-tpDone
	c.adopt(tp, fn, shared[bpf.TracepointsMapNftFreed])
	if err := errors.Join(fn.err, tp.err); err != nil {
		return err
	}
	if c.correlate != nil {
		cr := c.attachCorrelate(ctx, opts, consts)
		c.adoptCorrelate(cr)
		if cr.err != nil {
			return cr.err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("attaching probes: %w", err)
	}
	c.summary.AttachTime = time.Since(start)
	if err := c.checkAttached(fn); err != nil {
		return err
	}
	r, err := ringbuf.NewReader(shared[bpf.TracepointsMapEvents])
	if err != nil {
		return fmt.Errorf("opening the ring buffer: %w", err)
	}
	c.reader = r
	return nil
}

// adopt takes what the two families made, so that release frees it whatever happens
// next, and gives the decoder the maps a drop's free reads beside the ring.
func (c *Collector) adopt(tp tracepointsResult, fn functionsResult, nftFreed *ebpf.Map) {
	c.coll = tp.coll
	c.links = append(tp.links, fn.links...)
	c.closers = append(c.closers, fn.closers...)
	c.summary.Attached = append(tp.attached, fn.attached...)
	c.summary.Skipped = append(c.summary.Skipped, append(tp.skipped, fn.skipped...)...)
	c.summary.NoBackend = fn.noBackend
	c.summary.Netfilter = c.netfilterSummary(len(fn.noBackend) > 0)
	if c.coll != nil && c.stackSize > 0 {
		c.decoder.stacks = newStackTable(c.coll.Maps[bpf.TracepointsMapStacks], c.decoder.symbols)
	}
	if c.isAttached(nftDoChain) {
		c.decoder.nft = newNftTable(nftFreed)
	}
}

// adoptCorrelate takes what attachCorrelate made, for Shutdown to release.
func (c *Collector) adoptCorrelate(cr correlateResult) {
	if cr.coll != nil {
		c.closers = append(c.closers, func() error { cr.coll.Close(); return nil })
	}
	c.links = append(c.links, cr.links...)
	c.summary.Attached = append(c.summary.Attached, cr.attached...)
	if c.correlate != nil {
		c.decoder.requests = newRequestDecoder(c.correlate.Trust)
	}
}

// checkAttached fails when what was attached cannot do the job, and warns when packet
// spans can only end by timeout.
func (c *Collector) checkAttached(fn functionsResult) error {
	if len(c.links) == 0 {
		return errors.New("no probe could be attached: see the warnings above")
	}
	if c.backend.forced() && fn.functions == 0 && len(c.functions) > 0 {
		return fmt.Errorf("--backend %s: no function could be attached (see the warnings above); use --backend auto or tracepoint", c.backend)
	}
	for _, p := range tracepointProbes() {
		if p.needed && !c.isAttached(p.name()) {
			c.log.Warn("packet spans will end by timeout only", "missing", p.name())
		}
	}
	return nil
}

// kernelFacts are what the probes and the decoder need to know of this kernel.
type kernelFacts struct {
	kcfg      kernelCfg
	functions []probe // the configured functions, with what BTF says of them
}

// kernelFacts reads drop reasons, conntrack's layout, kallsyms, the clock offset and
// the configured functions' prototypes, and makes the decoder from them.
func (c *Collector) kernelFacts(kb kernelBTF) (kernelFacts, error) {
	reasons, err := NewDropReasons(kb.types)
	if err != nil {
		return kernelFacts{}, err
	}
	syms, err := NewKallsyms(c.kallsyms, defaultModules)
	if err != nil {
		return kernelFacts{}, err
	}
	frees, missing, err := normalFreeTable(reasons, syms, c.normalFrees)
	if err != nil {
		return kernelFacts{}, err
	}
	c.summary.DropReasons = len(reasons.names)
	c.summary.NormalFrees = c.normalFrees
	if len(missing) > 0 {
		c.log.Debug("normal frees of functions this kernel lacks do not apply", "functions", missing)
	}
	kcfg, conntrack := newKernelCfg(kb.types, kb.inKernel, c.summary.BTF, frees)
	c.summary.Conntrack = conntrack
	if c.backend != BackendTracepoint {
		source, err := nftLayout(kb.types, kb.inKernel, c.summary.BTF, &kcfg)
		if err != nil {
			kcfg.NftPktSkb, kcfg.NftChainTable, kcfg.NftChainName, kcfg.NftTableName = 0, 0, 0, 0
			c.nftUnusable = err
		} else {
			c.summary.Netfilter = "the nft table and chain of a drop read (struct nft_chain from " + source + ")"
		}
	}
	if c.clock, err = NewMonoClock(); err != nil {
		return kernelFacts{}, err
	}
	functions := resolveFunctions(kb.types, c.functions)
	c.decoder = newDecoder(reasons, syms, c.clock, functions)
	return kernelFacts{kcfg: kcfg, functions: functions}, nil
}

// sizeMaps sets the configured sizes of the maps the families share.
func (c *Collector) sizeMaps(spec *ebpf.CollectionSpec) {
	spec.Maps[bpf.TracepointsMapEvents].MaxEntries = uint32(c.ringSize)
	spec.Maps[bpf.TracepointsMapTracked].MaxEntries = uint32(c.trackSize)
	spec.Maps[bpf.TracepointsMapStacks].MaxEntries = 1
	if c.stackSize > 0 {
		spec.Maps[bpf.TracepointsMapStacks].MaxEntries = uint32(c.stackSize)
	}
}

// wantStack is the probes' want_stack constant: 1 under --stack.
func (c *Collector) wantStack() uint8 {
	if c.stackSize > 0 {
		return 1
	}
	return 0
}

func (c *Collector) isAttached(name string) bool {
	for _, a := range c.summary.Attached {
		if a.Name == name {
			return true
		}
	}
	return false
}

// Shutdown detaches the probes (if Run has not) and frees every kernel object. It
// returns when that is done or ctx ends, whichever comes first; the release then goes
// on in the background (a process that exits frees the rest). Calling it again does
// nothing.
func (c *Collector) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.release()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("detaching probes: %w", ctx.Err())
	}
}

// release detaches the probes and frees every kernel object Start made.
func (c *Collector) release() {
	c.detach()
	c.followMu.Lock()
	c.followed = nil
	c.followMu.Unlock()
	if c.reader != nil {
		_ = c.reader.Close()
	}
	for _, cl := range c.closers {
		_ = cl()
	}
	if c.coll != nil {
		c.coll.Close()
	}
	c.reader, c.coll, c.closers = nil, nil, nil
}
