package sink

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pktspan/pktspan/spanner"
)

// lines is the writing half of the console and JSON sinks: a group's text is built in
// buf under mu and written with one Write; its spans count as exported, or as dropped
// when the Write fails.
type lines struct {
	w    io.Writer
	name string // names the output in Shutdown's error

	mu  sync.Mutex
	buf []byte
	err error // the first write error

	exported atomic.Uint64
	dropped  atomic.Uint64
}

// writeLocked writes buf, the text of a group of n spans, and counts them. mu must be
// held.
func (l *lines) writeLocked(n int) {
	if _, err := l.w.Write(l.buf); err != nil {
		l.dropped.Add(uint64(n))
		if l.err == nil {
			l.err = err
		}
		return
	}
	l.exported.Add(uint64(n))
}

// Shutdown reports the first write error, if any; every group is written as it comes.
func (l *lines) Shutdown(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Errorf("%s: %w", l.name, l.err)
	}
	return nil
}

// Stats counts spans written, and spans lost to write errors.
func (l *lines) Stats() spanner.SinkStats {
	return spanner.SinkStats{Exported: l.exported.Load(), Dropped: l.dropped.Load()}
}
