package collector

import (
	"net/netip"
	"testing"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
)

const requestText = "GET /bytes?n=100 HTTP/1.1\r\nHost: 198.18.0.2\r\n" +
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03\r\n\r\n"

var (
	wantTrace  = spanner.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	wantParent = spanner.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

// requestRecord is what bpf/correlate.c writes: the event, then the request's bytes.
func requestRecord(t *testing.T, name string, probe uint16, src string) []byte {
	t.Helper()
	ev := bpf.TracepointsEvent{
		Probe: probe, L3: 4, L4: 6, Sport: 40000, Dport: 8080, TcpFlags: 0x18, TcpSeq: 1001, TcpAck: 5001,
		TcpDataLen: uint16(len(requestText)), Saddr: addr16(src), Daddr: addr16("198.18.0.2"),
	}
	return append(fixture(t, name, &ev), requestText...)
}

// TestDecodeRequestReadsTheTraceparentAndBelievesOnlyWhomTrustSays decodes the same
// request leaving a socket of this host and arriving from the network, under each trust.
func TestDecodeRequestReadsTheTraceparentAndBelievesOnlyWhomTrustSays(t *testing.T) {
	valid := spanner.Request{Verdict: spanner.HeaderValid, TraceID: wantTrace, ParentID: wantParent, Flags: spanner.FlagSampled | spanner.FlagRandom}
	untrusted := spanner.Request{Verdict: spanner.HeaderUntrusted}
	cases := []struct {
		name  string
		probe uint16
		src   string
		trust config.Trust
		want  spanner.Request
	}{
		{"request_sent_is_believed", probeHTTPEgress, "198.18.0.1", config.Trust{}, valid},
		{"request_received_is_not_by_default", probeHTTPIngress, "198.18.0.1", config.Trust{}, untrusted},
		{"request_received_from_a_trusted_cidr", probeHTTPIngress, "198.18.0.1",
			config.Trust{Senders: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}, valid},
		{"request_received_from_elsewhere", probeHTTPIngress, "198.18.1.1",
			config.Trust{Senders: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}, untrusted},
		{"request_received_with_trust_all", probeHTTPIngress, "198.18.1.1", config.Trust{All: true}, valid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := testDecoder(t)
			d.requests = newRequestDecoder(tc.trust)
			var ev spanner.Event
			if err := d.Decode(requestRecord(t, tc.name, tc.probe, tc.src), &ev); err != nil {
				t.Fatal(err)
			}
			if !ev.Stage.Request || ev.Stage.Received != (tc.probe == probeHTTPIngress) {
				t.Errorf("stage %+v: want a request stage, received=%v", ev.Stage, tc.probe == probeHTTPIngress)
			}
			if ev.TCP.Seq != 1001 || ev.Tuple.DstPort != 8080 {
				t.Errorf("segment %+v %+v: want seq 1001 to port 8080", ev.TCP, ev.Tuple)
			}
			if len(ev.Requests) != 1 || ev.Requests[0] != tc.want {
				t.Fatalf("requests %+v, want [%+v]", ev.Requests, tc.want)
			}
			st := d.requests.stats()
			if st.Segments != 1 || st.Verdicts[tc.want.Verdict] != 1 {
				t.Errorf("stats %+v: want one segment and one %s request", st, spanner.HeaderVerdictNames[tc.want.Verdict])
			}
		})
	}
}

// TestDecodeRequestWithoutCorrelationReadsNothing: a decoder not told to correlate
// leaves the bytes alone.
func TestDecodeRequestWithoutCorrelationReadsNothing(t *testing.T) {
	d := testDecoder(t)
	var ev spanner.Event
	if err := d.Decode(requestRecord(t, "http_request", probeHTTPEgress, "198.18.0.1"), &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Requests) != 0 {
		t.Errorf("requests %+v, want none", ev.Requests)
	}
}

// TestDecodeRequestCountsHTTP2Prefaces: an HTTP/2 connection's preface looks like a
// request line to the probes, holds no request, and is counted as a connection whose
// requests cannot be read.
func TestDecodeRequestCountsHTTP2Prefaces(t *testing.T) {
	d := testDecoder(t)
	d.requests = newRequestDecoder(config.Trust{})
	raw := requestRecord(t, "http_request", probeHTTPEgress, "198.18.0.1")
	raw = append(raw[:EventSize], "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"...)
	var ev spanner.Event
	if err := d.Decode(raw, &ev); err != nil {
		t.Fatal(err)
	}
	if st := d.requests.stats(); len(ev.Requests) != 0 || st.HTTP2 != 1 || st.Segments != 1 {
		t.Errorf("requests %+v, stats %+v: want none, one HTTP/2 preface in one segment", ev.Requests, st)
	}
}
