package jaeger

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestConnectQueriesTheGivenJaegerAndStopLeavesItAlone(t *testing.T) {
	var asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.Path
		_, _ = w.Write([]byte(`{"result":{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",` +
			`"spanId":"1112131415161718","name":"packet"}]}]}]}}`))
	}))
	defer srv.Close()
	j := Connect(srv.URL)
	td, err := j.Trace(t.Context(), "0102030405060708090a0b0c0d0e0f10")
	if err != nil {
		t.Fatal(err)
	}
	if asked != "/api/v3/traces/0102030405060708090a0b0c0d0e0f10" || len(Spans(td)) != 1 {
		t.Errorf("asked %s, got %d spans", asked, len(Spans(td)))
	}
	if err := j.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func TestStartFailureErrorCarriesJaegersLog(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "jaeger")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'bad config: boom' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	j, err := Start(t.Context(), WithBinary(fake), WithStartTimeout(10*time.Second))
	if err == nil {
		j.Stop()
		t.Fatal("Start succeeded with a binary that exits")
	}
	if !strings.Contains(err.Error(), "bad config: boom") {
		t.Errorf("error lacks the log: %v", err)
	}
}

func TestDecodeResultReadsIDsTimesStatusAndAttributes(t *testing.T) {
	body := `{"result":{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
	  "scopeSpans":[{"scope":{},"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"1112131415161718",
	  "parentSpanId":"2122232425262728","name":"packet","kind":1,"startTimeUnixNano":"1700000000000000001",
	  "endTimeUnixNano":"1700000000000000002","attributes":[{"key":"n","value":{"intValue":"9007199254740993"}}],
	  "status":{"code":2,"message":"NETFILTER_DROP"}}]}]}]}}`
	td, err := decodeResult([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	spans := Spans(td)
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.TraceIDHex() != "0102030405060708090a0b0c0d0e0f10" || s.SpanIDHex() != "1112131415161718" ||
		hex.EncodeToString(s.GetParentSpanId()) != "2122232425262728" {
		t.Errorf("IDs %s %s %x", s.TraceIDHex(), s.SpanIDHex(), s.GetParentSpanId())
	}
	if s.GetStartTimeUnixNano() != 1700000000000000001 || s.GetKind() != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("start %d kind %v", s.GetStartTimeUnixNano(), s.GetKind())
	}
	if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.GetStatus().GetMessage() != "NETFILTER_DROP" {
		t.Errorf("status %v", s.GetStatus())
	}
	if v, _ := s.Attr("n"); v != "9007199254740993" {
		t.Errorf("n = %s", v)
	}
}
