// Command pktspan follows packets through the Linux network stack with eBPF and
// exports each packet's journey as OpenTelemetry spans.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/collector/netns"
	"github.com/pktspan/pktspan/collector/pcapfilter"
	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/sink"
)

// Exit codes, as docs/DESIGN.md fixes them.
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

// flushTimeout bounds how long a stop waits for queued spans to leave, detachTimeout
// how long it waits for the probes to leave the kernel (the process's exit frees the
// rest).
const (
	flushTimeout  = 10 * time.Second
	detachTimeout = 10 * time.Second
)

func main() {
	cfg, err := config.Load(config.NewFlagSet(), os.Args[1:], os.Environ())
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(exitOK)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitConfig)
	}
	ctx, stopping := stopOnSignals()
	if err := run(ctx, cfg, stopping); err != nil {
		fmt.Fprintln(os.Stderr, "pktspan:", err)
		var cerr *config.Error
		if errors.As(err, &cerr) {
			os.Exit(exitConfig)
		}
		os.Exit(exitError)
	}
}

// stopOnSignals returns a context the first SIGINT or SIGTERM cancels, so that pktspan
// stops in order (detach, drain, flush), and the stop's progress, which a second signal
// reports as it exits at once: a user pressing Ctrl-C again wants out, not a wait for
// a collector that does not answer.
func stopOnSignals() (context.Context, *stopProgress) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &stopProgress{}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "pktspan: second %v: exiting at once, abandoning %s\n", sig, p.abandoned())
		os.Exit(exitError)
	}()
	return ctx, p
}

// stopProgress is what an orderly stop still has to do, for a forced exit to say.
type stopProgress struct {
	mu      sync.Mutex
	phase   string
	pending func() int64 // spans not yet sent; nil without OTLP
}

func (p *stopProgress) set(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

func (p *stopProgress) abandoned() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	what := "the orderly stop"
	if p.phase != "" {
		what = p.phase
	}
	if p.pending != nil {
		what += fmt.Sprintf(" and %d spans not yet sent over OTLP", p.pending())
	}
	return what + " (the kernel removes the probes when pktspan exits)"
}

// run wires collector → spanner → sinks and runs until ctx ends, then stops in order:
// detach and drain the kernel side, end open spans, flush the sinks.
func run(ctx context.Context, cfg config.Config, stopping *stopProgress) error {
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration may not match what was meant", "component", "pktspan", "warning", w.Error())
	}

	backend, err := collector.ParseBackend(cfg.Probes.Backend)
	if err != nil {
		return &config.Error{Key: "probes.backend", Value: cfg.Probes.Backend, Reason: err.Error()}
	}
	var expression *pcapfilter.Filter
	if cfg.Filter.Expression != "" {
		if expression, err = collector.CompileExpression(cfg.Filter.Expression); err != nil {
			return err
		}
	}
	sinks, err := newSinks(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, s := range sinks {
		if o, ok := s.Sink.(*sink.OTLP); ok {
			stopping.mu.Lock()
			stopping.pending = o.Pending
			stopping.mu.Unlock()
		}
	}
	out := sinks.multi()
	spOpts := []spanner.Option{
		spanner.WithLimits(cfg.Limits.Flows, cfg.Limits.Packets, cfg.Limits.Stages),
		spanner.WithWindow(cfg.Trace.IdleTimeout, cfg.Trace.MaxDuration, cfg.Trace.MaxPackets, cfg.Trace.CloseGrace),
		spanner.WithPacketTimeout(cfg.Trace.PacketTimeout),
		spanner.WithExport(exportPolicy(cfg)),
		spanner.WithNATAliases(cfg.Limits.Aliases),
		spanner.WithLogger(log),
	}
	if cfg.Export.SKBAddress {
		spOpts = append(spOpts, spanner.WithSKBAddressExported())
	}
	colOpts := []collector.Option{
		collector.WithFilter(cfg.Filter),
		collector.WithRingSize(cfg.Probes.RingSize),
		collector.WithTrackSize(cfg.Probes.TrackSize),
		collector.WithBTF(cfg.BTF),
		collector.WithBackend(backend),
		collector.WithFunctions(cfg.Probes.Functions),
		collector.WithNormalFreeReasons(cfg.Probes.NormalFreeReasons),
		collector.WithLogger(log),
	}
	if expression != nil {
		colOpts = append(colOpts, collector.WithExpression(expression))
	}
	if cfg.Probes.Stack {
		colOpts = append(colOpts, collector.WithStack(cfg.Probes.StackSize))
	}
	if cfg.Correlate.Mode == "http" {
		trust, err := cfg.Correlate.ParseTrust()
		if err != nil {
			return err
		}
		colOpts = append(colOpts, collector.WithCorrelation(collector.Correlation{Bytes: cfg.Correlate.Bytes, Trust: trust}))
		spOpts = append(spOpts, spanner.WithCorrelation(spanner.CorrelateSettings{
			MaxPackets: cfg.Correlate.MaxPackets, Linger: cfg.Correlate.Linger, Exchanges: cfg.Limits.Exchanges,
		}))
	}
	col := collector.New(colOpts...)
	namerOpts := []netns.Option{
		netns.WithDockerSocket(cfg.Netns.DockerSocket),
		netns.WithCRISocket(cfg.Netns.CRISocket),
		netns.WithResync(cfg.Netns.Resync),
		netns.WithGrace(cfg.Netns.Grace),
		netns.WithLimit(cfg.Limits.NetnsNames),
		netns.WithLogger(log),
	}
	if len(cfg.Filter.Container) > 0 {
		namerOpts = append(namerOpts, netns.WithFollow(cfg.Filter.Container, col.FollowNetns))
	}
	namer := netns.New(namerOpts...)
	sp := spanner.New(out, append(spOpts, spanner.WithNetnsNamer(namer))...)
	// Whatever Start made stays no longer than this run, also when Start fails.
	defer stopCollector(col, log)
	if err := col.Start(ctx); err != nil {
		shutdownSink(out, log)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			// Stopped by a signal while attaching: a clean stop, nothing to report.
			return nil
		}
		return err
	}
	logSummary(log, os.Stderr, cfg.LogFormat, col.Summary())
	// After the probes: the namer fills the kernel's set of followed containers.
	if err := namer.Start(ctx); err != nil {
		shutdownSink(out, log)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer stopNamer(namer, log)
	if cfg.ReadyFile != "" {
		if err := os.WriteFile(cfg.ReadyFile, []byte(fmt.Sprintln(os.Getpid())), 0o644); err != nil {
			shutdownSink(out, log)
			return fmt.Errorf("writing --ready-file %s: %w", cfg.ReadyFile, err)
		}
	}

	loss := &lossWatch{}
	stats := func(l *slog.Logger, msg string) {
		logStats(l, msg, loss, cfg, col.Stats(), sp.Stats(), namer.Stats(), sinks.stats())
	}
	statsDone := make(chan struct{})
	// The stats stop with Run, also when Run fails before the signal.
	statsCtx, stopStats := context.WithCancel(ctx)
	go func() {
		defer close(statsDone)
		t := time.NewTicker(cfg.Stats)
		defer t.Stop()
		for {
			select {
			case <-statsCtx.Done():
				return
			case <-t.C:
				stats(log, "stats")
			}
		}
	}()

	stopping.set("detaching the probes and draining the ring buffer")
	stopNote := context.AfterFunc(ctx, func() {
		log.Info("stopping: draining and flushing (a second signal exits at once)", "component", "pktspan")
	})
	defer stopNote()
	runErr := col.Run(ctx, sp)
	stopStats()
	<-statsDone
	stopping.set("ending the open spans")
	sp.Flush(time.Now().UnixNano())
	stopping.set("flushing the sinks")
	shutdownSink(out, log)
	// The final line is written whatever the log level: it is the run's account of loss.
	stats(newLogger(os.Stderr, "debug", cfg.LogFormat), "final stats")
	return runErr
}

// stopCollector releases the collector's kernel objects, waiting at most detachTimeout.
func stopCollector(col *collector.Collector, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
	defer cancel()
	if err := col.Shutdown(ctx); err != nil {
		log.Warn("probes not all released at exit", "component", "pktspan", "error", err)
	}
}

// stopNamer ends the namer's background work; its names stay for the spans still to go.
func stopNamer(n *netns.Namer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		log.Warn("netns namer not stopped at exit", "component", "pktspan", "error", err)
	}
}

// namedSink is one destination, named for its counters in the stats lines.
type namedSink struct {
	name string
	spanner.Sink
}

type sinkList []namedSink

func (l sinkList) multi() spanner.Sink {
	s := make([]spanner.Sink, len(l))
	for i := range l {
		s[i] = l[i].Sink
	}
	return sink.Multi(s...)
}

// stats are each sink's counters, by name: a span sent to two sinks counts in both.
func (l sinkList) stats() []sinkStats {
	out := make([]sinkStats, len(l))
	for i := range l {
		out[i] = sinkStats{name: l[i].name, SinkStats: l[i].Stats()}
		if o, ok := l[i].Sink.(*sink.OTLP); ok {
			out[i].causes = o.DropCauses()
		}
	}
	return out
}

type sinkStats struct {
	name string
	spanner.SinkStats
	causes []sink.DropCount // the dropped spans by cause, for a sink that tells them
}

func newSinks(ctx context.Context, cfg config.Config, log *slog.Logger) (sinkList, error) {
	var sinks sinkList
	switch cfg.Output {
	case "console":
		sinks = append(sinks, namedSink{"console", sink.NewConsole(os.Stdout)})
	case "json":
		sinks = append(sinks, namedSink{"json", sink.NewJSON(os.Stdout)})
	}
	if cfg.OTLPEnabled(os.Environ()) {
		tlsCfg, err := cfg.OTLP.TLS()
		if err != nil {
			return nil, err
		}
		o, err := sink.NewOTLP(ctx,
			sink.WithEndpoint(cfg.OTLP.Endpoint),
			sink.WithInsecure(cfg.OTLP.Insecure),
			sink.WithTLS(tlsCfg),
			sink.WithHeaders(cfg.OTLP.Headers),
			sink.WithCompression(cfg.OTLP.Compression),
			sink.WithTimeout(cfg.OTLP.Timeout),
			sink.WithQueueSize(cfg.OTLP.QueueSize),
			sink.WithBatchSize(cfg.OTLP.BatchSize),
			sink.WithBatchDelay(cfg.OTLP.BatchDelay),
			sink.WithServiceName(cfg.ServiceName),
			sink.WithLogger(log),
		)
		if err != nil {
			return nil, fmt.Errorf("setting up OTLP export: %w", err)
		}
		sinks = append(sinks, namedSink{"otlp", o})
	}
	return sinks, nil
}

func shutdownSink(s spanner.Sink, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Warn("spans left unsent at exit", "component", "pktspan", "error", err)
	}
}

// exportPolicy maps the export and limits configuration to the spanner's policy.
func exportPolicy(cfg config.Config) spanner.ExportPolicy {
	mode := spanner.ExportAll
	if cfg.Export.Mode == "drops" {
		mode = spanner.ExportDrops
	}
	return spanner.ExportPolicy{
		Mode:              mode,
		DropContext:       cfg.Export.DropContext,
		SampleRatio:       cfg.Export.SampleRatio,
		MaxSpansPerSecond: cfg.Export.MaxSpansPerSecond,
		Held:              cfg.Limits.Held,
	}
}

// lossWatch remembers whether the run has lost anything yet: from then on every stats
// line is a warning, so that --log-level warn still shows loss.
type lossWatch struct{ seen bool }

// lost sums what was lost rather than left out by choice: events the ring could not
// hold, spans a full table evicted or a sink dropped, skbs the kernel could not track.
func lost(c collector.Stats, s spanner.Stats, sinks []sinkStats) uint64 {
	n := c.EventsLost + c.TrackFailed + c.CallsFull +
		s.PacketsEvicted + s.WindowsEvicted + s.SpansHeldEvicted
	for _, o := range sinks {
		n += o.Dropped
	}
	return n
}

// logStats prints what went through and everything lost or left out on the way, by
// cause: a bounded table that overflowed, a policy that chose not to export, a
// destination that refused. Each sink counts its own: `otlp_exported`, `console_dropped`.
// Once anything was lost, the first line says so and every line is a warning.
func logStats(log *slog.Logger, msg string, loss *lossWatch, cfg config.Config, c collector.Stats, s spanner.Stats, n netns.Stats, sinks []sinkStats) {
	level := slog.LevelInfo
	if lost(c, s, sinks) > 0 {
		if !loss.seen {
			loss.seen = true
			log.Warn("events or spans lost: the stats lines from now on are warnings and count them by cause", "component", "pktspan")
		}
		level = slog.LevelWarn
	}
	args := []any{"component", "pktspan",
		"events_read", c.EventsRead,
		"events_lost", c.EventsLost,
		"frees_normal", c.FreesNormal,
		// What the spanner handed to the sinks: each sink's exported and dropped add up to it.
		"spans", s.Spans,
	}
	for _, o := range sinks {
		args = append(args, o.name+"_exported", o.Exported, o.name+"_dropped", o.Dropped)
		for _, d := range o.causes {
			args = append(args, o.name+"_dropped_"+d.Cause, d.Spans)
		}
	}
	args = append(args,
		"packets", s.PacketsStarted,
		"flows", s.FlowsOpened,
		"windows", s.WindowsOpened,
		"spans_sampled_out", s.SpansSampledOut,
		"spans_no_drop", s.SpansNoDrop,
		"spans_held_evicted", s.SpansHeldEvicted,
		"spans_rate_limited", s.SpansRateLimited,
		"packets_evicted", s.PacketsEvicted,
		"windows_evicted", s.WindowsEvicted,
		"nat_aliases", s.AliasesLearned,
		"nat_aliases_evicted", s.AliasesEvicted,
		"retransmits", s.Retransmits,
		"segments_forgotten", s.SegmentsForgotten,
		"retransmits_unmatched", s.RetransmitsUnmatched,
		"track_failed", c.TrackFailed,
		"calls_full", c.CallsFull,
		"ring_delay_max_us", c.RingDelayMax.Microseconds(),
		"netns_names", n.Names,
		"netns_misses", n.Misses,
		"netns_evicted", n.Evicted,
		"netns_errors", n.Errors,
	)
	if cfg.Filter.DropsOnly {
		args = append(args,
			"trail_events", c.TrailEvents,
			"trail_sent", c.TrailSent,
			"trail_cut", c.TrailCut,
		)
	}
	if cfg.Probes.Stack {
		args = append(args, "stack_missed", c.StackMissed)
	}
	if cfg.Correlate.Mode == "http" {
		args = append(args, "request_segments", c.Requests.Segments, "tls_hellos", c.Requests.TLSHellos, "http2_prefaces", c.Requests.HTTP2)
		for v, n := range c.Requests.Verdicts {
			args = append(args, "requests_"+spanner.HeaderVerdictNames[v], n)
		}
		args = append(args,
			"requests_correlated", s.RequestsCorrelated,
			"requests_unsampled", s.RequestsUnsampled,
			"requests_repeated", s.RequestsRepeated,
			"exchange_packets", s.ExchangePackets,
			"exchange_spans_capped", s.SpansCapped,
			"exchanges_exported", s.ExchangesQuiet+s.ExchangesIdle+s.ExchangesMaxDuration+s.ExchangesFlowClose+s.ExchangesEvicted+s.ExchangesShutdown,
			"exchanges_evicted", s.ExchangesEvicted,
			"conns_evicted", s.ConnsEvicted,
		)
	}
	log.Log(context.Background(), level, msg, append(args, "detach", c.DetachTime)...)
}

// logSummary reports what the collector attached: under --log-format text as the block
// of lines the README shows, written as it is (a record would escape its line breaks);
// under json as one record whose fields are the summary's.
func logSummary(log *slog.Logger, w io.Writer, format string, s collector.Summary) {
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	if format == "json" {
		log.Info("probes attached", "component", "pktspan", "summary", s)
		return
	}
	fmt.Fprintln(w, s.String())
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
