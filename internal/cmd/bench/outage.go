package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pktspan/pktspan/spanner/sink"
)

// outageRate is the spans per second case 7 makes, whatever the collector does.
const outageRate = 20000

// outageCase measures what a collector outage costs: pktspan's OTLP sink with its
// default queue, fed the fixtures' spans at outageRate, sends to the receiver, which
// is stopped for the outage and started again on the same port. It reports the spans
// made, sent and dropped by cause, and how long after the receiver's return the first
// span reached it.
func outageCase(r *report, o options, fix *Fixtures) error {
	// Short mode still outlasts the default queue (65536 spans, 3.3 s at the rate), so
	// CI goes through the drops.
	outage := 30 * time.Second
	if o.short {
		outage = 5 * time.Second
	}
	const before, after = 2 * time.Second, 3 * time.Second
	r.section(fmt.Sprintf("7. collector outage: %d spans/s into the OTLP sink (default queue), receiver stopped for %s and restarted on its port", outageRate, outage))

	rcv, err := StartReceiver()
	if err != nil {
		return err
	}
	defer func() { _ = rcv.Stop() }()
	addr := rcv.Addr
	out, err := sink.NewOTLP(context.Background(), sink.WithEndpoint(addr), sink.WithInsecure(true),
		sink.WithCompression("none"), sink.WithLogger(discardLog))
	if err != nil {
		return err
	}
	fd, err := newFeeder(fix, out)
	if err != nil {
		return err
	}

	var made atomic.Uint64 // spans the spanner made so far, as the feeder last looked
	stopFeed := make(chan struct{})
	fed := make(chan error, 1)
	go func() { fed <- feedAtRate(fd, &made, stopFeed) }()

	time.Sleep(before)
	if err := rcv.Stop(); err != nil {
		return err
	}
	down, madeDown := time.Now(), made.Load()
	time.Sleep(outage)
	again, err := StartReceiverOn(addr)
	if err != nil {
		return fmt.Errorf("restarting the receiver on %s: %w", addr, err)
	}
	rcv = again
	back, madeBack := time.Now(), made.Load()
	var resumed time.Duration
	for {
		st, err := rcv.Stats()
		if err != nil {
			return err
		}
		if st.Spans > 0 {
			resumed = time.Since(back)
			break
		}
		if time.Since(back) > time.Minute {
			return fmt.Errorf("no span reached the restarted receiver within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}

	time.Sleep(after)
	close(stopFeed)
	if err := <-fed; err != nil {
		return err
	}
	fd.sp.Flush(fd.ev.TimeUnixNano + passGap)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := out.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing: %w", err)
	}

	produced, st := fd.sp.Stats().Spans, out.Stats()
	r.add("  made %d spans (%d while the receiver was down, %.1fs); sent %d + dropped %d (%s) = %d",
		produced, madeBack-madeDown, back.Sub(down).Seconds(), st.Exported, st.Dropped, causes(out.DropCauses()),
		st.Exported+st.Dropped)
	r.add("  lost %d spans: %.1f%% of the spans made, as many as %.1f%% of those made during the outage",
		st.Dropped, 100*float64(st.Dropped)/float64(produced), 100*float64(st.Dropped)/float64(madeBack-madeDown))
	r.add("  export resumed %s after the receiver was back (goal ≤2s: %s)", resumed.Round(time.Millisecond), met(resumed <= 2*time.Second))
	return nil
}

// feedAtRate plays the fixtures through the feeder's spanner, keeping the spans made at
// outageRate times the time since it began, until stop is closed.
func feedAtRate(fd *feeder, made *atomic.Uint64, stop <-chan struct{}) error {
	start := time.Now()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n := fd.sp.Stats().Spans
		made.Store(n)
		if float64(n) >= outageRate*time.Since(start).Seconds() {
			time.Sleep(time.Millisecond)
			continue
		}
		for range 64 {
			if err := fd.next(); err != nil {
				return err
			}
		}
	}
}

// causes lists drops by cause as cause=spans.
func causes(c []sink.DropCount) string {
	s := ""
	for i, d := range c {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%d", d.Cause, d.Spans)
	}
	return s
}
