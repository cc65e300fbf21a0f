package demoapp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/report.jsonl is what demoapp client wrote: two sampled requests over one
// kept-alive connection, an unsampled one and one refused.
func TestReadReportParsesEveryFieldOfEachLine(t *testing.T) {
	rs, err := ReadReport(filepath.Join("testdata", "report.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d requests, want 4", len(rs))
	}
	want := Request{
		TraceID:       "617dec254f855c5cd33363a723fdef99",
		SpanID:        "98f3834b4672ca82",
		Sampled:       true,
		Traceparent:   "00-617dec254f855c5cd33363a723fdef99-98f3834b4672ca82-01",
		LocalAddr:     "127.0.0.1:58910",
		RemoteAddr:    "127.0.0.1:18089",
		Reused:        true,
		Status:        200,
		StartUnixNano: 1796009711012779156,
		EndUnixNano:   1796009711013286768,
	}
	if rs[1] != want {
		t.Errorf("second request %+v, want %+v", rs[1], want)
	}
	if r := rs[2]; r.Sampled || !strings.HasSuffix(r.Traceparent, "-00") {
		t.Errorf("third request %+v, want unsampled with flags 00", r)
	}
	if r := rs[3]; r.Status != 0 || !strings.Contains(r.Error, "connection refused") || r.LocalAddr != "" {
		t.Errorf("fourth request %+v, want refused with status 0 and no connection", r)
	}
}

func TestReadReportRejectsUnknownFieldsAndBrokenLines(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field": `{"trace_id":"ef9202b1041e68f8d0b7cf1a04b2f99c","retries":1}` + "\n",
		"broken line":   `{"trace_id":"ef9202b1041e68f8d0b7cf1a04b2f99c"}` + "\n" + `{"trace_id":` + "\n",
		"wrong type":    `{"status":"200"}` + "\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if rs, err := ReadReport(path); err == nil {
			t.Errorf("%s: read %+v, want an error", name, rs)
		}
	}
	if _, err := ReadReport(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing report read without error")
	}
}

func TestReadReportOfNoRequestsIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if rs, err := ReadReport(path); err != nil || len(rs) != 0 {
		t.Errorf("empty report: %+v, %v; want no requests and no error", rs, err)
	}
}
