package collector

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// MonoClock converts CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to wall time with
// an offset re-measured by Refresh, so NTP steps and drift do not accumulate.
type MonoClock struct {
	offset atomic.Int64
}

// NewMonoClock measures the offset once.
func NewMonoClock() (*MonoClock, error) {
	c := &MonoClock{}
	if err := c.Refresh(); err != nil {
		return nil, err
	}
	return c, nil
}

// Refresh re-measures wall − monotonic, taking the tightest of a few samples.
func (c *MonoClock) Refresh() error {
	best := int64(-1)
	var offset int64
	for range 3 {
		var a, b unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &a); err != nil {
			return fmt.Errorf("reading the monotonic clock: %w", err)
		}
		wall := time.Now().UnixNano()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &b); err != nil {
			return fmt.Errorf("reading the monotonic clock: %w", err)
		}
		width := b.Nano() - a.Nano()
		if best < 0 || width < best {
			best = width
			offset = wall - (a.Nano()+b.Nano())/2
		}
	}
	c.offset.Store(offset)
	return nil
}

// WallNano implements Clock.
func (c *MonoClock) WallNano(mono uint64) int64 { return int64(mono) + c.offset.Load() }
