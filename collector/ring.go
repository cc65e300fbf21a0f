package collector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"

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
	clockEvery   = 64
	clockRefresh = 10 * time.Second
)

// recordReader is the ring buffer as Run uses it (*ringbuf.Reader).
type recordReader interface {
	ReadInto(*ringbuf.Record) error
	SetDeadline(time.Time)
	// Flush makes the reads after it return what is in the ring, then ErrFlushed.
	Flush() error
	Close() error
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

// detach takes the probes out of the kernel, once, timing it for the stats.
func (c *Collector) detach() {
	if c.detached.Swap(true) {
		return
	}
	start := time.Now()
	closeLinks(c.links)
	c.links = nil
	c.detachTime.Store(int64(time.Since(start)))
}
