package kernelmatrix

import (
	"fmt"

	"github.com/pktspan/pktspan/internal/demoapp"
)

// exchangeSpan is the name of --correlate http's exchange spans.
const exchangeSpan = "tcp exchange"

// CheckCorrelation checks a --correlate http run: each request of the demo client's
// report has an exchange in its trace, under its client span, with packet spans under
// it and no error (happy); the request whose reply lost a segment (lossy) has an error
// packet span with NETFILTER_DROP and a retransmission under its exchange, and the
// exchange is no error, since the client got everything.
func CheckCorrelation(s *Spans, happy, lossy []demoapp.Request) []error {
	var errs []error
	if len(happy) == 0 || len(lossy) == 0 {
		return []error{fmt.Errorf("the demo client reported %d and %d requests, want some of each", len(happy), len(lossy))}
	}
	for i, r := range append(happy, lossy...) {
		x := s.exchangeOf(r)
		if x == nil {
			errs = append(errs, fmt.Errorf("request %d (trace %s, client span %s): no exchange under its client span", i, r.TraceID, r.SpanID))
			continue
		}
		if x.Status == "error" {
			errs = append(errs, fmt.Errorf("request %d: the exchange is an error %q, though the client got its reply", i, x.Description))
		}
		packets := s.Children(x)
		if len(packets) == 0 {
			errs = append(errs, fmt.Errorf("request %d: the exchange has no packet span", i))
		}
		if i < len(happy) {
			continue
		}
		dropped, retransmitted := false, false
		for _, p := range packets {
			dropped = dropped || p.Status == "error" && p.Description == "NETFILTER_DROP"
			retransmitted = retransmitted || p.Attr("pktspan.tcp.retransmit") == "true"
		}
		if !dropped || !retransmitted {
			errs = append(errs, fmt.Errorf("the lossy request's exchange has a dropped packet: %v, a retransmission: %v; want both", dropped, retransmitted))
		}
	}
	return errs
}

// exchangeOf returns the exchange span in r's trace under r's client span.
func (s *Spans) exchangeOf(r demoapp.Request) *Span {
	for _, sp := range s.All {
		if sp.Name == exchangeSpan && sp.TraceID == r.TraceID && sp.ParentID == r.SpanID {
			return sp
		}
	}
	return nil
}
