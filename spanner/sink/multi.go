// Package sink holds pktspan's span destinations, each a spanner.Sink: OTLP/gRPC to a
// collector, a pwru-style console listing, JSON lines, and Multi to feed several at once.
package sink

import (
	"context"
	"errors"

	"github.com/pktspan/pktspan/spanner"
)

// Multi sends every group to each sink in turn. Nil sinks are skipped; a single sink is
// returned as it is.
func Multi(sinks ...spanner.Sink) spanner.Sink {
	var m multi
	for _, s := range sinks {
		if s != nil {
			m = append(m, s)
		}
	}
	if len(m) == 1 {
		return m[0]
	}
	return m
}

type multi []spanner.Sink

func (m multi) Export(group []spanner.Span) {
	for _, s := range m {
		s.Export(group)
	}
}

// Shutdown shuts every sink down, even after one fails, and joins their errors.
func (m multi) Shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range m {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Stats sums the sinks' counts: a span sent to two sinks counts twice. pktspan's stats
// lines report each sink's own counts instead.
func (m multi) Stats() spanner.SinkStats {
	var total spanner.SinkStats
	for _, s := range m {
		st := s.Stats()
		total.Exported += st.Exported
		total.Dropped += st.Dropped
	}
	return total
}
