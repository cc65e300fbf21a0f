package collector

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/spanner"
)

// fakeRing is a ring buffer whose records are given by the test. It keeps a log of
// what Run did to it, in order.
type fakeRing struct {
	mu       sync.Mutex
	records  [][]byte
	deadline time.Time
	flushed  bool
	log      []string
	// onEmpty is called (unlocked) when a read finds the ring empty, before it waits.
	onEmpty func()
}

func (r *fakeRing) ReadInto(rec *ringbuf.Record) error {
	r.mu.Lock()
	if len(r.records) > 0 {
		rec.RawSample = r.records[0]
		r.records = r.records[1:]
		r.mu.Unlock()
		return nil
	}
	if r.flushed {
		r.log = append(r.log, "flushed")
		r.mu.Unlock()
		return ringbuf.ErrFlushed
	}
	deadline, onEmpty := r.deadline, r.onEmpty
	r.mu.Unlock()
	if onEmpty != nil {
		onEmpty()
	}
	time.Sleep(time.Until(deadline))
	return os.ErrDeadlineExceeded
}

func (r *fakeRing) SetDeadline(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
}

func (r *fakeRing) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed = true
	r.log = append(r.log, "flush")
	return nil
}

func (r *fakeRing) Close() error { return nil }

func (r *fakeRing) push(records ...[]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, records...)
}

// recordingHandler notes every event (by skb) and tick, in order.
type recordingHandler struct {
	ring *fakeRing
	skbs []uint64
	log  []string
}

func (h *recordingHandler) HandleEvent(ev *spanner.Event) {
	h.skbs = append(h.skbs, ev.SKB)
	h.log = append(h.log, "event")
}

func (h *recordingHandler) Tick(int64) { h.log = append(h.log, "tick") }

func record(t *testing.T, skb uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	ev := bpf.TracepointsEvent{Skb: skb, Probe: probeNetDevQueue}
	if err := binary.Write(&b, binary.LittleEndian, &ev); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newRingCollector(t *testing.T, ring *fakeRing) *Collector {
	t.Helper()
	clock, err := NewMonoClock()
	if err != nil {
		t.Fatal(err)
	}
	return &Collector{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		reader:  ring,
		clock:   clock,
		decoder: newDecoder(dropReasonsFrom(nil), nil, clock, nil),
	}
}

// After ctx ends, Run ticks, detaches the probes, then flushes and reads the ring
// until the flush marker: the events the kernel wrote before the detach all reach the
// handler, after the tick that saw the stop.
func TestRunDetachesThenDrainsEveryEventLeftInTheRing(t *testing.T) {
	ring := &fakeRing{}
	c := newRingCollector(t, ring)
	ctx, cancel := context.WithCancel(context.Background())
	h := &recordingHandler{ring: ring}
	ring.push(record(t, 1), record(t, 2))
	ring.onEmpty = func() {
		ring.mu.Lock()
		defer ring.mu.Unlock()
		if ctx.Err() == nil && !ring.flushed {
			// Events written before the detach, and the stop arriving meanwhile.
			ring.records = append(ring.records, record(t, 3), record(t, 4))
			cancel()
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, h) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if want := []uint64{1, 2, 3, 4}; !slices.Equal(h.skbs, want) {
		t.Errorf("handler saw skbs %v, want %v", h.skbs, want)
	}
	if !c.detached.Load() {
		t.Error("Run returned without detaching the probes")
	}
	if want := []string{"flush", "flushed"}; !slices.Equal(ring.log, want) {
		t.Errorf("ring saw %v, want %v", ring.log, want)
	}
	// The tick that noticed the stop comes before the drained events: the spanner's
	// timeouts never see time jump past events still to come.
	last := slices.Index(h.log, "tick")
	if last < 0 || last > 2 {
		t.Errorf("handler log %v: want events 1 and 2, a tick, then the drained events", h.log)
	}
}

// Run ticks every tickEvery while records keep arriving without a pause, so spans
// time out on a busy ring too.
func TestRunTicksWhileRecordsKeepArriving(t *testing.T) {
	ring := &fakeRing{}
	c := newRingCollector(t, ring)
	ctx, cancel := context.WithCancel(context.Background())
	h := &recordingHandler{ring: ring}
	start := time.Now()
	ring.onEmpty = func() {
		if time.Since(start) > 3*tickEvery {
			cancel()
		}
	}
	rec := record(t, 7)
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		for ctx.Err() == nil {
			ring.push(slices.Repeat([][]byte{rec}, clockEvery)...)
			time.Sleep(time.Millisecond)
		}
	}()
	if err := c.Run(ctx, h); err != nil {
		t.Fatal(err)
	}
	<-busy
	ticks := 0
	for _, e := range h.log {
		if e == "tick" {
			ticks++
		}
	}
	if ticks < 2 {
		t.Errorf("%d ticks in %v of steady records, want one every %v", ticks, time.Since(start), tickEvery)
	}
}
