package collector

import (
	"sync/atomic"

	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
)

// requestDecoder reads the requests of --correlate http's records: the bytes after
// the event are parsed here and forgotten, so only IDs and flags go further.
type requestDecoder struct {
	trust    config.Trust
	requests []spanner.Request // reused: the event's Requests point into it

	segments atomic.Uint64 // records: segments starting like a request
	verdicts [spanner.HeaderVerdicts]atomic.Uint64
}

func newRequestDecoder(trust config.Trust) *requestDecoder {
	return &requestDecoder{trust: trust, requests: make([]spanner.Request, 0, maxRequestsPerSegment)}
}

// decodeRequest parses the request bytes that follow the event in raw. A header that
// arrived from the network counts only when correlate.trust believes its sender.
func (d *Decoder) decodeRequest(raw []byte, ev *spanner.Event) {
	r := d.requests
	if r == nil {
		return
	}
	r.segments.Add(1)
	reqs := parseRequests(raw[EventSize:], r.requests[:0])
	untrusted := ev.Stage.Received && !r.believes(ev)
	for i := range reqs {
		if untrusted && reqs[i].Verdict == spanner.HeaderValid {
			reqs[i] = spanner.Request{Offset: reqs[i].Offset, Verdict: spanner.HeaderUntrusted}
		}
		r.verdicts[reqs[i].Verdict].Add(1)
	}
	r.requests = reqs
	ev.Requests = reqs
}

// believes reports whether a header ev received from the network is believed.
func (r *requestDecoder) believes(ev *spanner.Event) bool {
	if r.trust.All {
		return true
	}
	src := ev.Tuple.Src.Unmap()
	for _, p := range r.trust.Senders {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// RequestStats count what --correlate http read: segments starting like a request, and
// the requests found in them by what their traceparent was worth.
type RequestStats struct {
	Segments uint64
	Verdicts [spanner.HeaderVerdicts]uint64
}

func (r *requestDecoder) stats() RequestStats {
	var s RequestStats
	if r == nil {
		return s
	}
	s.Segments = r.segments.Load()
	for i := range r.verdicts {
		s.Verdicts[i] = r.verdicts[i].Load()
	}
	return s
}
