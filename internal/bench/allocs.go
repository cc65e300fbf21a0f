package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/spanner"
)

// feeder plays the fixtures one event at a time, forever: each pass moves the clock on.
type feeder struct {
	f     *Fixtures
	clock *shiftClock
	dec   *collector.Decoder
	sp    *spanner.Spanner
	i     int
	ev    spanner.Event
	tick  int64
}

func newFeeder(f *Fixtures, out spanner.Sink) (*feeder, error) {
	clock := &shiftClock{}
	dec, err := NewDecoder(clock)
	if err != nil {
		return nil, err
	}
	return &feeder{f: f, clock: clock, dec: dec, sp: spanner.New(out, spanner.WithLogger(discardLog))}, nil
}

// decode decodes the next event only.
func (d *feeder) decode() {
	_ = d.dec.Decode(d.f.Record(d.i), &d.ev)
	if d.i++; d.i == d.f.Events {
		d.i = 0
		d.clock.offset += d.f.Duration + passGap
	}
}

// next decodes the next event and hands it to the spanner, ticking as the collector does.
func (d *feeder) next() {
	d.decode()
	d.sp.HandleEvent(&d.ev)
	if t := d.ev.TimeUnixNano; t >= d.tick {
		d.sp.Tick(t)
		d.tick = t + tickEvery
	}
}

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
			d.decode() // warm the interface name cache
		}
		b.ReportAllocs()
		a0, b0 := mallocs()
		n := 0
		for b.Loop() {
			d.decode()
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
