package collector

import (
	"bytes"
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
	// http2 counts HTTP/2 connection prefaces (whose method-like PRI the probes let
	// through): connections whose requests cannot be read.
	http2 atomic.Uint64
}

// http2Preface starts every HTTP/2 connection over cleartext (RFC 9113 3.4).
var http2Preface = []byte("PRI * HTTP/2.0\r\n")

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
	payload := raw[EventSize:]
	reqs := parseRequests(payload, r.requests[:0])
	if len(reqs) == 0 && bytes.HasPrefix(payload, http2Preface) {
		r.http2.Add(1)
	}
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

// RequestStats count what --correlate http read: segments starting like a request, the
// requests found in them by what their traceparent was worth, and the connections that
// cannot be read (TLS ClientHellos, HTTP/2 prefaces).
type RequestStats struct {
	Segments  uint64
	Verdicts  [spanner.HeaderVerdicts]uint64
	TLSHellos uint64
	HTTP2     uint64
}

func (r *requestDecoder) stats() RequestStats {
	var s RequestStats
	if r == nil {
		return s
	}
	s.Segments, s.HTTP2 = r.segments.Load(), r.http2.Load()
	for i := range r.verdicts {
		s.Verdicts[i] = r.verdicts[i].Load()
	}
	return s
}
