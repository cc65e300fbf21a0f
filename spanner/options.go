package spanner

import (
	"log/slog"
	"time"
)

// Option changes one setting of a Spanner. A non-positive number or duration keeps the
// default: configuration is validated before it reaches here.
type Option func(*settings)

type settings struct {
	flows, packets, stages int
	idle, maxDuration      int64 // nanoseconds
	maxPackets             int
	grace, packetTimeout   int64 // nanoseconds
	export                 ExportPolicy
	aliases                int
	segments               int
	traceID                func() TraceID
	spanID                 func() SpanID
	log                    *slog.Logger
	netnsNamer             NetnsNamer
	correlate              *CorrelateSettings // nil: --correlate none
	exportSKB              bool
	skbKey                 []byte // nil: a random key per Spanner
}

// defaultSettings mirrors config.Default(); the caller maps its configuration to options.
func defaultSettings() settings {
	return settings{
		flows:         16384,
		packets:       65536,
		stages:        64,
		idle:          int64(30 * time.Second),
		maxDuration:   int64(60 * time.Second),
		maxPackets:    200,
		grace:         int64(2 * time.Second),
		packetTimeout: int64(5 * time.Second),
		export:        ExportPolicy{Mode: ExportAll, DropContext: 32, SampleRatio: 1, Held: 16384},
		aliases:       16384,
		segments:      65536,
		netnsNamer:    unnamedNetns{},
	}
}

// WithSKBAddressExported makes spans carry kernel addresses as they are
// (pktspan.skb.address, pktspan.skb.clone_of, a function's pointer return value) instead
// of opaque per-run IDs (skbid.go). Span.SKB and Span.SKBCloneOf always hold them.
func WithSKBAddressExported() Option {
	return func(s *settings) { s.exportSKB = true }
}

// WithSKBIDKey sets the AES-128 key of the opaque IDs instead of one drawn at random:
// the same key gives the same IDs, as tests comparing span trees need.
func WithSKBIDKey(key [16]byte) Option {
	return func(s *settings) { s.skbKey = key[:] }
}

// WithLimits bounds the open flow entries, open packet spans and stage spans kept per packet.
func WithLimits(flows, packets, stages int) Option {
	return func(s *settings) {
		setPositive(&s.flows, flows)
		setPositive(&s.packets, packets)
		setPositive(&s.stages, stages)
	}
}

// WithWindow sets when a flow's trace window closes: after idleTimeout without packets,
// maxDuration after it opened, once it holds maxPackets packets, or closeGrace after a
// FIN or RST.
func WithWindow(idleTimeout, maxDuration time.Duration, maxPackets int, closeGrace time.Duration) Option {
	return func(s *settings) {
		setPositive(&s.idle, int64(idleTimeout))
		setPositive(&s.maxDuration, int64(maxDuration))
		setPositive(&s.maxPackets, maxPackets)
		setPositive(&s.grace, int64(closeGrace))
	}
}

// WithPacketTimeout ends a packet span that saw no event for d (an skb whose free was
// missed, or one the kernel keeps queued).
func WithPacketTimeout(d time.Duration) Option {
	return func(s *settings) { setPositive(&s.packetTimeout, int64(d)) }
}

// ExportMode chooses which flow windows leave pktspan.
type ExportMode uint8

const (
	// ExportAll exports every window.
	ExportAll ExportMode = iota
	// ExportDrops exports a window only once one of its packets is dropped (tail-based):
	// its packets are held until then, and a window that closes without a drop is
	// discarded.
	ExportDrops
)

// ExportPolicy decides which spans are exported.
type ExportPolicy struct {
	Mode ExportMode
	// DropContext is how many of a window's most recent packets ExportDrops holds for
	// the drop that may come.
	DropContext int
	// SampleRatio is the share of flows exported, 0 < r ≤ 1, decided by a hash of the
	// flow so that every host decides alike.
	SampleRatio float64
	// MaxSpansPerSecond caps the spans exported per second of event time; 0 is no cap.
	MaxSpansPerSecond int
	// Held bounds the packets ExportDrops holds over all windows.
	Held int
}

// WithExport sets the export policy. Mode is taken as it is; a zero or negative number
// keeps its default: drop context 32, sample ratio 1, no span cap, 16384 held packets.
// A sample ratio above 1 is 1.
func WithExport(p ExportPolicy) Option {
	return func(s *settings) {
		s.export.Mode = p.Mode
		setPositive(&s.export.DropContext, p.DropContext)
		setPositive(&s.export.SampleRatio, min(p.SampleRatio, 1))
		setPositive(&s.export.MaxSpansPerSecond, p.MaxSpansPerSecond)
		setPositive(&s.export.Held, p.Held)
	}
}

// WithNATAliases bounds the translated tuples remembered as other names of a flow
// (default 16384); the least recently used go first.
func WithNATAliases(n int) Option {
	return func(s *settings) { setPositive(&s.aliases, n) }
}

// WithSegmentMemory bounds the TCP segments remembered to recognise their
// retransmissions (default 65536; the table holds sets of 4, as many as a power of two
// within n); the least recently seen of a set go first.
func WithSegmentMemory(n int) Option {
	return func(s *settings) { setPositive(&s.segments, n) }
}

// WithIDSource replaces the random trace and span ID generators, so tests get stable IDs.
// Trace IDs derived from a TCP connection do not come from it. The functions must never
// return a zero ID.
func WithIDSource(traceID func() TraceID, spanID func() SpanID) Option {
	return func(s *settings) {
		if traceID != nil && spanID != nil {
			s.traceID, s.spanID = traceID, spanID
		}
	}
}

// WithLogger sets the logger; records carry component=spanner.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) {
		if l != nil {
			s.log = l
		}
	}
}

func setPositive[T int | int64 | float64](dst *T, v T) {
	if v > 0 {
		*dst = v
	}
}

// CorrelateSettings are --correlate http's: at most MaxPackets packet spans per
// exchange, an exchange exported Linger after its last packet once its data is
// acknowledged, and at most Exchanges exchanges open (and connections remembered).
type CorrelateSettings struct {
	MaxPackets int
	Linger     time.Duration
	Exchanges  int
}

// WithCorrelation turns app-trace correlation on: Request events open exchanges in the
// applications' traces, and their packets go there.
func WithCorrelation(c CorrelateSettings) Option {
	return func(s *settings) {
		c.MaxPackets, c.Linger, c.Exchanges = max(c.MaxPackets, 1), max(c.Linger, 0), max(c.Exchanges, 1)
		s.correlate = &c
	}
}
