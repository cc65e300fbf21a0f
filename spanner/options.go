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
	traceID                func() TraceID
	spanID                 func() SpanID
	log                    *slog.Logger
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
	}
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

// WithIDSource replaces the random trace and span ID generators, so tests get stable IDs.
// The functions must never return a zero ID.
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

func setPositive[T int | int64](dst *T, v T) {
	if v > 0 {
		*dst = v
	}
}
