package collector

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/spanner"
)

// The W3C Trace Context specification's example IDs.
const (
	traceHex  = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentHex = "00f067aa0ba902b7"
)

func traceparent(flags string) string { return "00-" + traceHex + "-" + parentHex + "-" + flags }

// get is a request line and a Host field; a case adds its fields and the empty line.
const get = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n"

func valid(off uint32, flags spanner.TraceFlags) spanner.Request {
	r := spanner.Request{Offset: off, Verdict: spanner.HeaderValid, Flags: flags}
	hex.Decode(r.TraceID[:], []byte(traceHex))
	hex.Decode(r.ParentID[:], []byte(parentHex))
	return r
}

func verdict(off uint32, v spanner.HeaderVerdict) spanner.Request {
	return spanner.Request{Offset: off, Verdict: v}
}

// clientHello is the start of a TLS 1.3 ClientHello record.
const clientHello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9a\x1e\x7c\x55\x02\x11\x8f\x3a\xbd\x41\x20\x6b\x0f\x5e\xd3\x77"

var parseCases = []struct {
	name string
	in   string
	want []spanner.Request
}{
	// The traceparent field's name.
	{"lowercase_name_without_space", get + "traceparent:" + traceparent("01") + "\r\n\r\n", []spanner.Request{valid(0, 0x01)}},
	{"lowercase_name_with_space", get + "traceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{valid(0, 0x01)}},
	{"mixed_case_name", get + "TraceParent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{valid(0, 0x01)}},
	{"uppercase_name", get + "TRACEPARENT: " + traceparent("01") + "\r\n\r\n", []spanner.Request{valid(0, 0x01)}},
	{"whitespace_before_colon_is_malformed", get + "traceparent : " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"tab_before_colon_is_malformed", get + "traceparent\t: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"traceparent2_is_another_field", get + "traceparent2: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"x_traceparent_is_another_field", get + "x-traceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"traceparent_text_in_another_value", get + "x-foo: traceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"name_with_a_non_token_char_is_no_field", get + "[traceparent]: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"line_without_colon_is_skipped", get + "garbage line\r\ntraceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{valid(0, 0x01)}},

	// The value.
	{"tabs_around_value", get + "traceparent:\t" + traceparent("01") + " \t\r\n\r\n", []spanner.Request{valid(0, 0x01)}},
	{"flags_00", get + "traceparent: " + traceparent("00") + "\r\n\r\n", []spanner.Request{valid(0, 0x00)}},
	{"flags_03", get + "traceparent: " + traceparent("03") + "\r\n\r\n", []spanner.Request{valid(0, 0x03)}},
	{"flags_ff_unknown_bits_kept", get + "traceparent: " + traceparent("ff") + "\r\n\r\n", []spanner.Request{valid(0, 0xff)}},
	{"uppercase_hex_trace_id", get + "traceparent: 00-" + strings.ToUpper(traceHex) + "-" + parentHex + "-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"uppercase_hex_flags", get + "traceparent: " + traceparent("0A") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"version_01", get + "traceparent: 01-" + traceHex + "-" + parentHex + "-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"version_ff", get + "traceparent: ff-" + traceHex + "-" + parentHex + "-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"zero_trace_id", get + "traceparent: 00-00000000000000000000000000000000-" + parentHex + "-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderZeroID)}},
	{"zero_parent_id", get + "traceparent: 00-" + traceHex + "-0000000000000000-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderZeroID)}},
	{"value_of_54_chars", get + "traceparent: " + traceparent("0") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"value_of_56_chars", get + "traceparent: " + traceparent("011") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"text_after_the_value", get + "traceparent: " + traceparent("01") + " x\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"underscore_for_a_dash", get + "traceparent: 00_" + traceHex + "-" + parentHex + "-01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"bare_cr_ending_the_value", get + "traceparent: " + traceparent("01") + "\r\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"obs_fold_after_traceparent", get + "traceparent: " + traceparent("01") + "\r\n -01\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},
	{"obs_fold_carrying_traceparent_text", get + "x-foo: bar\r\n traceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},

	// How many.
	{"duplicate_identical", get + "traceparent: " + traceparent("01") + "\r\ntraceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderDuplicate)}},
	{"duplicate_different", get + "traceparent: " + traceparent("01") + "\r\nTraceparent: " + traceparent("00") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderDuplicate)}},
	{"duplicate_one_with_whitespace_before_colon", get + "traceparent: " + traceparent("01") + "\r\ntraceparent : " + traceparent("01") + "\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderDuplicate)}},
	{"missing", get + "Accept: */*\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},

	// The bytes read end before the header block does.
	{"truncated_block", get + "Accept: */*\r\n", []spanner.Request{verdict(0, spanner.HeaderTruncated)}},
	{"cut_before_the_traceparent", get + "Accept: */*\r\nUser-Ag", []spanner.Request{verdict(0, spanner.HeaderTruncated)}},
	{"cut_inside_the_traceparent", get + "traceparent: 00-4bf92f35", []spanner.Request{verdict(0, spanner.HeaderTruncated)}},
	{"cut_before_the_traceparents_line_end", get + "traceparent: " + traceparent("01"), []spanner.Request{verdict(0, spanner.HeaderTruncated)}},
	{"cut_after_the_request_line", "GET / HTTP/1.1\r\n", []spanner.Request{verdict(0, spanner.HeaderTruncated)}},
	{"valid_traceparent_in_an_incomplete_block", get + "traceparent: " + traceparent("01") + "\r\nAccept: */*\r\n", []spanner.Request{valid(0, 0x01)}},
	{"obs_fold_after_traceparent_cut", get + "traceparent: " + traceparent("01") + "\r\n\t-0", []spanner.Request{verdict(0, spanner.HeaderMalformed)}},

	// The request line.
	{"lf_line_ends", "GET / HTTP/1.1\nHost: h\ntraceparent: " + traceparent("01") + "\n\n", []spanner.Request{valid(0, 0x01)}},
	{"mixed_crlf_and_lf_line_ends", "GET / HTTP/1.1\r\nHost: h\ntraceparent: " + traceparent("01") + "\r\n\n", []spanner.Request{valid(0, 0x01)}},
	{"http_1_0", "GET / HTTP/1.0\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"method_with_dash", "M-SEARCH * HTTP/1.1\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"method_of_20_letters", "ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n\r\n", []spanner.Request{verdict(0, spanner.HeaderMissing)}},
	{"method_of_21_letters", "ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n\r\n", nil},
	{"lowercase_method", "get / HTTP/1.1\r\ntraceparent: " + traceparent("01") + "\r\n\r\n", nil},
	{"http_1_2", "GET / HTTP/1.2\r\n\r\n", nil},
	{"lowercase_version", "GET / http/1.1\r\n\r\n", nil},
	{"http2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil},
	{"tls_client_hello", clientHello, nil},
	{"empty", "", nil},
	{"two_spaces_after_method", "GET  / HTTP/1.1\r\n\r\n", nil},
	{"control_char_in_target", "GET /a\x01b HTTP/1.1\r\n\r\n", nil},
	{"whitespace_before_method", " GET / HTTP/1.1\r\n\r\n", nil},
	{"bare_cr_ending_the_request_line", "GET / HTTP/1.1\r\r\n\r\n", nil},
	{"request_line_cut", "GET /a/very/long/path?with=a&query=str", nil},

	// Pipelining. A GET of 28 bytes: "GET /a HTTP/1.1\r\nHost: h\r\n\r\n".
	{"three_pipelined_gets", strings.Repeat("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 3), []spanner.Request{
		verdict(0, spanner.HeaderMissing), verdict(28, spanner.HeaderMissing), verdict(56, spanner.HeaderMissing)}},
	{"nine_pipelined_gets_give_eight", strings.Repeat("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 9), []spanner.Request{
		verdict(0, spanner.HeaderMissing), verdict(28, spanner.HeaderMissing), verdict(56, spanner.HeaderMissing), verdict(84, spanner.HeaderMissing),
		verdict(112, spanner.HeaderMissing), verdict(140, spanner.HeaderMissing), verdict(168, spanner.HeaderMissing), verdict(196, spanner.HeaderMissing)}},
	// The POST is 63 bytes, its body "hello world" included.
	{"post_with_content_length_then_get", "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world" +
		"GET /a HTTP/1.1\r\ntraceparent: " + traceparent("01") + "\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing), valid(63, 0x01)}},
	{"content_length_0_then_get", "POST /f HTTP/1.1\r\ncontent-length: 0\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing), verdict(39, spanner.HeaderMissing)}},
	{"body_like_a_request_is_skipped", "POST /f HTTP/1.1\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing), verdict(59, spanner.HeaderMissing)}},
	{"chunked_post_then_bytes", "POST /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"content_length_and_transfer_encoding", "POST /f HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: gzip\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"body_past_the_bytes_read", "POST /f HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nabc", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"content_length_twice", "POST /f HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"content_length_not_a_number", "POST /f HTTP/1.1\r\nContent-Length: -1\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"rejectable_line_ends_pipelining", "GET /a HTTP/1.1\r\ngarbage\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"obs_fold_ends_pipelining", "GET /a HTTP/1.1\r\nX-Foo: a\r\n b\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"whitespace_before_colon_ends_pipelining", "POST /f HTTP/1.1\r\nContent-Length : 0\r\n\r\nGET /a HTTP/1.1\r\n\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"bytes_after_a_request_are_no_request", "GET /a HTTP/1.1\r\n\r\nhello", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"next_request_line_cut", "GET /a HTTP/1.1\r\n\r\nGET /b HTT", []spanner.Request{
		verdict(0, spanner.HeaderMissing)}},
	{"next_request_truncated", "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n", []spanner.Request{
		verdict(0, spanner.HeaderMissing), verdict(19, spanner.HeaderTruncated)}},
}

func TestParseRequestsJudgesEachRequestsTraceparent(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseRequests([]byte(tc.in), nil)
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseRequests(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseRequestsAppendsToOut(t *testing.T) {
	before := verdict(7, spanner.HeaderUntrusted)
	got := parseRequests([]byte("GET / HTTP/1.1\r\n\r\n"), []spanner.Request{before})
	if want := []spanner.Request{before, verdict(0, spanner.HeaderMissing)}; !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseRequestsDoesNotAllocateOnceOutHasRoom(t *testing.T) {
	payload := []byte(strings.Repeat("GET /a HTTP/1.1\r\ntraceparent: "+traceparent("01")+"\r\n\r\n", 9))
	out := make([]spanner.Request, 0, maxRequestsPerSegment)
	if n := testing.AllocsPerRun(100, func() { out = parseRequests(payload, out[:0]) }); n != 0 {
		t.Errorf("parseRequests allocates %.1f times per call, want 0", n)
	}
}

func FuzzParseRequests(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		orig := bytes.Clone(payload)
		got := parseRequests(payload, nil)
		if !bytes.Equal(payload, orig) {
			t.Fatal("parseRequests modified its payload")
		}
		if len(got) > maxRequestsPerSegment {
			t.Fatalf("%d requests, at most %d allowed", len(got), maxRequestsPerSegment)
		}
		for i, r := range got {
			if int(r.Offset) >= len(payload) {
				t.Fatalf("request %d at offset %d of a %d-byte payload", i, r.Offset, len(payload))
			}
			if i == 0 && r.Offset != 0 {
				t.Fatalf("first request at offset %d", r.Offset)
			}
			if i > 0 && r.Offset <= got[i-1].Offset {
				t.Fatalf("request %d at offset %d, after one at %d", i, r.Offset, got[i-1].Offset)
			}
			if r.Verdict >= spanner.HeaderVerdicts || r.Verdict == spanner.HeaderUntrusted {
				t.Fatalf("request %d has verdict %d, which parsing never gives", i, r.Verdict)
			}
			if r.Verdict == spanner.HeaderValid && (r.TraceID == (spanner.TraceID{}) || r.ParentID == (spanner.SpanID{})) {
				t.Fatalf("request %d is valid with a zero ID: %+v", i, r)
			}
			if r.Verdict != spanner.HeaderValid && (r.TraceID != (spanner.TraceID{}) || r.ParentID != (spanner.SpanID{}) || r.Flags != 0) {
				t.Fatalf("request %d is %s yet carries IDs: %+v", i, spanner.HeaderVerdictNames[r.Verdict], r)
			}
		}
		if again := parseRequests(payload, nil); !slices.Equal(got, again) {
			t.Fatalf("parsed twice: %+v, then %+v", got, again)
		}
	})
}

// benchRequest is a typical browser-like request of 400 bytes with a traceparent.
const benchRequest = "GET /api/v1/orders/12345?include=items HTTP/1.1\r\n" +
	"Host: shop.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=ab1\r\n" +
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"tracestate: congo=t61rcWkgMzE\r\n" +
	"\r\n"

func BenchmarkParseRequests(b *testing.B) {
	payload := []byte(benchRequest)
	out := make([]spanner.Request, 0, maxRequestsPerSegment)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		out = parseRequests(payload, out[:0])
	}
	if len(out) != 1 || out[0].Verdict != spanner.HeaderValid {
		b.Fatalf("parsed %+v, want one valid request", out)
	}
}
