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
	// pollEvery bounds how long an event waits in the ring: the probes wake the reader
	// only once the ring holds more than 1/ringWakeFraction of its size (a wakeup per
	// event cost the sending CPU more than all else), so below that the reader looks
	// on its own this often: as often as the spanner ticks. Each look that finds
	// pktspan idle wakes it, and the Go runtime's sysmon thread with it, which then naps
	// every 20 µs for a millisecond or more; looking every 20 ms cost some 12% more CPU
	// per event while pktspan traced a busy link (BENCHMARKS.md). The OTLP sink
	// batches for a second anyway.
	pollEvery        = tickEvery
	ringWakeFraction = 4

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
	c.reader.SetDeadline(time.Now().Add(pollEvery))
	// The first record after a poll is the oldest the ring held: its age, and every
	// clockEvery-th record's, is the delay the ring added.
	polled := true
	for {
		err := c.reader.ReadInto(&rec)
		switch {
		case err == nil:
			c.handle(rec.RawSample, &ev, h)
			records++
			if polled {
				polled = false
				c.noteDelay(&ev, time.Now())
			}
			if records%clockEvery != 0 {
				continue
			}
			c.noteDelay(&ev, time.Now())
		case errors.Is(err, os.ErrDeadlineExceeded):
			polled = true
			if !c.detached.Load() {
				c.reader.SetDeadline(time.Now().Add(pollEvery))
			}
		case errors.Is(err, ringbuf.ErrFlushed):
			return nil
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
		now := time.Now()
		// A stop is seen at the next poll, not the next tick: it detaches at once.
		if now.Before(nextTick) && ctx.Err() == nil {
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
	}
}

// noteDelay keeps the longest time an event waited between its probe and the reader,
// for the stats (ring_delay_max_us).
func (c *Collector) noteDelay(ev *spanner.Event, now time.Time) {
	if ev.TimeUnixNano == 0 {
		return
	}
	d := now.UnixNano() - ev.TimeUnixNano
	for {
		cur := c.ringDelayMax.Load()
		if d <= cur || c.ringDelayMax.CompareAndSwap(cur, d) {
			return
		}
	}
}

// handle decodes one ring record into h: an event, or in drops-only mode a drop with
// its skb's earlier events, which go first, oldest first.
func (c *Collector) handle(raw []byte, ev *spanner.Event, h Handler) {
	n, err := c.decoder.Trail(raw)
	if err != nil {
		c.decodeFailed(err)
		return
	}
	c.eventsRead.Add(uint64(n) + 1)
	var netns uint32
	for i := n - 1; i >= 0; i-- {
		if err := c.decoder.DecodeTrail(raw, i, ev); err != nil {
			c.decodeFailed(err)
			continue
		}
		// A copy to a reader is kept without a look at the skb (on_copy_trail): it
		// happened in the namespace the skb was in before it.
		if ev.Stage.Deliver && ev.Netns == 0 {
			ev.Netns = netns
		}
		netns = ev.Netns
		h.HandleEvent(ev)
	}
	if err := c.decoder.Decode(raw, ev); err != nil {
		c.decodeFailed(err)
		return
	}
	h.HandleEvent(ev)
}

// decodeFailed counts an undecodable event, warning of the first.
func (c *Collector) decodeFailed(err error) {
	if c.decodeErrors.Add(1) == 1 {
		c.log.Warn("undecodable event (counted in stats from now on)", "error", err)
	}
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
