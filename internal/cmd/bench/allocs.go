package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/pktspan/pktspan/spanner"
)

// countSink counts spans and keeps nothing, as a sink that costs nothing would.
type countSink struct{ spans uint64 }

func (c *countSink) Export(g []spanner.Span)        { c.spans += uint64(len(g)) }
func (c *countSink) Shutdown(context.Context) error { return nil }
func (c *countSink) Stats() spanner.SinkStats       { return spanner.SinkStats{Exported: c.spans} }

// mallocs reads the heap counters -benchmem uses, as precise fractions per event.
func mallocs() (n, bytes uint64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs, m.TotalAlloc
}

func perEvent(b *testing.B, allocs, bytes uint64, n int) {
	b.ReportMetric(float64(allocs)/float64(n), "allocs/event")
	b.ReportMetric(float64(bytes)/float64(n), "B/event")
}

// benchDecode measures the collector's decoder on the fixtures, one event per op.
func benchDecode(f *Fixtures) func(*testing.B) {
	return func(b *testing.B) {
		d, err := newFeeder(f, &countSink{})
		if err != nil {
			b.Fatal(err)
		}
		for range f.Events {
			_ = d.decode() // warm the interface name cache
		}
		b.ReportAllocs()
		a0, b0 := mallocs()
		n := 0
		for b.Loop() {
			_ = d.decode() // every record decodes: checkDecodes
			n++
		}
		a1, b1 := mallocs()
		perEvent(b, a1-a0, b1-b0, n)
	}
}

// benchSpanner measures decode and spanner together on the fixtures, one event per op,
// with a sink that keeps nothing; decoding allocates nothing, so what is left is the
// spanner's.
func benchSpanner(f *Fixtures) func(*testing.B) {
	return func(b *testing.B) {
		out := &countSink{}
		d, err := newFeeder(f, out)
		if err != nil {
			b.Fatal(err)
		}
		// One pass first: tables, slices and caches reach their working size.
		for range f.Events {
			d.next()
		}
		b.ReportAllocs()
		spans0 := out.spans
		a0, b0 := mallocs()
		n := 0
		for b.Loop() {
			d.next()
			n++
		}
		a1, b1 := mallocs()
		perEvent(b, a1-a0, b1-b0, n)
		if spans := out.spans - spans0; spans > 0 {
			b.ReportMetric(float64(a1-a0)/float64(spans), "allocs/span")
			b.ReportMetric(float64(spans)/float64(n), "spans/event")
		}
	}
}
