package sink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner"
)

// jsonSpan mirrors the documented line format for decoding with encoding/json.
type jsonSpan struct {
	TraceID           string         `json:"trace_id"`
	SpanID            string         `json:"span_id"`
	ParentSpanID      *string        `json:"parent_span_id"`
	Name              string         `json:"name"`
	Kind              string         `json:"kind"`
	StartUnixNano     int64          `json:"start_unix_nano"`
	EndUnixNano       int64          `json:"end_unix_nano"`
	DurationNS        int64          `json:"duration_ns"`
	Attributes        map[string]any `json:"attributes"`
	Status            string         `json:"status"`
	StatusDescription *string        `json:"status_description"`
	Events            []struct {
		Name         string         `json:"name"`
		TimeUnixNano int64          `json:"time_unix_nano"`
		Attributes   map[string]any `json:"attributes"`
	} `json:"events"`
	Links []struct {
		TraceID    string         `json:"trace_id"`
		SpanID     string         `json:"span_id"`
		Attributes map[string]any `json:"attributes"`
	} `json:"links"`
}

func decodeLines(t *testing.T, data []byte) []jsonSpan {
	t.Helper()
	var out []jsonSpan
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		var s jsonSpan
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, s)
	}
	return out
}

func TestJSONLinesDecodeBackToTheExportedSpans(t *testing.T) {
	var out bytes.Buffer
	j := NewJSON(&out)
	var want []spanner.Span
	for _, g := range [][]spanner.Span{tcpGroup(), dropGroup(), rootGroup(), natCloneGroup()} {
		j.Export(g)
		want = append(want, g...)
	}
	if err := j.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Exported != uint64(len(want)) {
		t.Errorf("Stats = %+v", st)
	}
	got := decodeLines(t, out.Bytes())
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := &want[i], &got[i]
		if g.TraceID != hex.EncodeToString(w.TraceID[:]) || g.SpanID != hex.EncodeToString(w.SpanID[:]) {
			t.Errorf("%s: ids %s/%s", w.Name, g.TraceID, g.SpanID)
		}
		if w.ParentID == (spanner.SpanID{}) {
			if g.ParentSpanID != nil {
				t.Errorf("%s: parent_span_id %q on a root span", w.Name, *g.ParentSpanID)
			}
		} else if g.ParentSpanID == nil || *g.ParentSpanID != hex.EncodeToString(w.ParentID[:]) {
			t.Errorf("%s: parent_span_id %v", w.Name, g.ParentSpanID)
		}
		if g.Name != w.Name || g.Kind != "internal" || g.StartUnixNano != w.StartUnixNano ||
			g.EndUnixNano != w.EndUnixNano || g.DurationNS != w.EndUnixNano-w.StartUnixNano {
			t.Errorf("%s: got %+v", w.Name, g)
		}
		wantStatus := map[spanner.StatusCode]string{spanner.StatusUnset: "unset", spanner.StatusOK: "ok", spanner.StatusError: "error"}[w.Status]
		if g.Status != wantStatus || g.StatusDescription == nil || *g.StatusDescription != w.StatusDescription {
			t.Errorf("%s: status %q %v", w.Name, g.Status, g.StatusDescription)
		}
		checkJSONAttrs(t, w.Name, g.Attributes, w.Attrs)
		if g.Events == nil || g.Links == nil || g.Attributes == nil {
			t.Errorf("%s: events, links and attributes must always be present", w.Name)
		}
		if len(g.Events) != len(w.Events) || len(g.Links) != len(w.Links) {
			t.Fatalf("%s: %d events %d links", w.Name, len(g.Events), len(g.Links))
		}
		for k, e := range w.Events {
			if g.Events[k].Name != e.Name || g.Events[k].TimeUnixNano != e.TimeUnixNano {
				t.Errorf("%s: event %+v", w.Name, g.Events[k])
			}
			checkJSONAttrs(t, w.Name+" event", g.Events[k].Attributes, e.Attrs)
		}
		for k, l := range w.Links {
			if g.Links[k].TraceID != hex.EncodeToString(l.TraceID[:]) || g.Links[k].SpanID != hex.EncodeToString(l.SpanID[:]) {
				t.Errorf("%s: link %+v", w.Name, g.Links[k])
			}
			checkJSONAttrs(t, w.Name+" link", g.Links[k].Attributes, l.Attrs)
		}
	}
}

// checkJSONAttrs compares decoded values (numbers as json.Number) with the originals.
func checkJSONAttrs(t *testing.T, where string, got map[string]any, want []attribute.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d attributes, want %d", where, len(got), len(want))
	}
	for _, kv := range want {
		g, ok := got[string(kv.Key)]
		if !ok {
			t.Errorf("%s: attribute %s missing", where, kv.Key)
			continue
		}
		if w := jsonShape(kv.Value); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: attribute %s = %#v, want %#v", where, kv.Key, g, w)
		}
	}
}

// jsonShape is what encoding/json with UseNumber yields for a documented value.
func jsonShape(v attribute.Value) any {
	num := func(s string) any { return json.Number(s) }
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return num(v.String())
	case attribute.FLOAT64:
		return num(string(appendFloatJSON(nil, v.AsFloat64())))
	case attribute.STRING:
		return v.AsString()
	case attribute.BOOLSLICE:
		var out []any
		for _, x := range v.AsBoolSlice() {
			out = append(out, x)
		}
		return out
	case attribute.INT64SLICE:
		var out []any
		for _, x := range v.AsInt64Slice() {
			out = append(out, num(attribute.Int64Value(x).String()))
		}
		return out
	case attribute.FLOAT64SLICE:
		var out []any
		for _, x := range v.AsFloat64Slice() {
			out = append(out, num(string(appendFloatJSON(nil, x))))
		}
		return out
	case attribute.STRINGSLICE:
		var out []any
		for _, x := range v.AsStringSlice() {
			out = append(out, x)
		}
		return out
	}
	return nil
}

func TestJSONEncodesEveryValueTypeAndWritesEmptyFields(t *testing.T) {
	s := spanner.Span{Attrs: []attribute.KeyValue{
		attribute.Float64("nan", math.NaN()),
		attribute.Float64("inf", math.Inf(1)),
		attribute.Float64("big", 1e21),
		attribute.ByteSlice("bytes", []byte{0xde, 0xad}),
		attribute.Slice("mixed", attribute.IntValue(1), attribute.StringValue("x"), attribute.BoolValue(false)),
		attribute.Map("map", attribute.String("k", "v"), attribute.Int("n", 2)),
		{Key: "empty"},
	}}
	line := appendSpanJSON(nil, &s)
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %s", line)
	}
	for _, want := range []string{
		`"nan":"NaN"`, `"inf":"+Inf"`, `"big":1e+21`, `"bytes":"3q0="`,
		`"mixed":[1,"x",false]`, `"map":{"k":"v","n":2}`, `"empty":null`,
		`"status":"unset","status_description":"","events":[],"links":[]`,
	} {
		if !bytes.Contains(line, []byte(want)) {
			t.Errorf("%s lacks %s", line, want)
		}
	}
	if bytes.Contains(line, []byte("parent_span_id")) {
		t.Errorf("parent_span_id present on a root span: %s", line)
	}
}

var oddStrings = []string{
	"",
	"plain",
	`quote " backslash \ slash /`,
	"newline\n return\r tab\t nul\x00 bell\x07 esc\x1b del\x7f backspace\b feed\f",
	"<script>&amp;</script>",
	"line\u2028para\u2029sep",
	"invalid \xff\xfe utf-8 \xc3",
	"emoji 😀 accents é ß 中文",
}

func TestJSONEscapesStringsAsEncodingJSONDoes(t *testing.T) {
	for _, s := range oddStrings {
		got := appendJSONString(nil, s)
		want, _ := json.Marshal(s)
		if !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json says %s", s, got, want)
		}
	}

	// And through a whole line, in names, keys, values, events and status.
	var out bytes.Buffer
	j := NewJSON(&out)
	for _, s := range oddStrings {
		j.Export([]spanner.Span{{
			Name:              s,
			Attrs:             []attribute.KeyValue{attribute.String(s, s), attribute.StringSlice("list", []string{s})},
			StatusDescription: s,
			Events:            []spanner.SpanEvent{{Name: s}},
		}})
	}
	lines := decodeLines(t, out.Bytes())
	if len(lines) != len(oddStrings) {
		t.Fatalf("%d lines, want %d", len(lines), len(oddStrings))
	}
	for i, g := range lines {
		want := string([]rune(oddStrings[i])) // each invalid byte becomes U+FFFD
		if g.Name != want || *g.StatusDescription != want || g.Events[0].Name != want || g.Attributes[want] != want {
			t.Errorf("round trip of %q: got %+v", oddStrings[i], g)
		}
		if l, _ := g.Attributes["list"].([]any); len(l) != 1 || l[0] != want {
			t.Errorf("round trip of %q in a slice: %v", oddStrings[i], g.Attributes["list"])
		}
	}
}

func FuzzJSONStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		want, _ := json.Marshal(s)
		if !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json says %s", s, got, want)
		}
	})
}
