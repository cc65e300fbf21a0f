package jaeger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Traces returns the traces of service that started at or after since, as stored (raw,
// without the query service's adjustments): the most recent searchDepth at most. No
// matching trace gives an empty result.
func (j *Jaeger) Traces(ctx context.Context, service string, since time.Time) (*tracepb.TracesData, error) {
	q := url.Values{}
	q.Set("query.service_name", service)
	q.Set("query.start_time_min", since.UTC().Format(time.RFC3339Nano))
	// A little ahead of now, so spans stamped by a slightly fast clock are not missed.
	q.Set("query.start_time_max", time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano))
	q.Set("query.num_traces", strconv.Itoa(searchDepth))
	q.Set("query.raw_traces", "true")
	td, err := j.get(ctx, "/api/v3/traces?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("finding traces of %s: %w", service, err)
	}
	return td, nil
}

// Trace returns one trace by its ID (hex), as stored; a trace Jaeger does not have gives
// an empty result.
func (j *Jaeger) Trace(ctx context.Context, traceID string) (*tracepb.TracesData, error) {
	td, err := j.get(ctx, "/api/v3/traces/"+url.PathEscape(traceID)+"?raw_traces=true")
	if err != nil {
		return nil, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	return td, nil
}

// WaitForTrace polls Trace until done accepts the result, and returns that result; like
// WaitForSpans, the last result comes with the error when ctx ends first.
func (j *Jaeger) WaitForTrace(ctx context.Context, traceID string, done func(*tracepb.TracesData) bool) (*tracepb.TracesData, error) {
	return poll(ctx, func() (*tracepb.TracesData, error) { return j.Trace(ctx, traceID) }, done, "trace "+traceID)
}

// WaitForSpans polls Traces until done accepts the result, and returns that result. When
// ctx ends first, it returns the last result with an error wrapping ctx.Err(), so a
// failing test can show what did arrive.
func (j *Jaeger) WaitForSpans(ctx context.Context, service string, since time.Time, done func(*tracepb.TracesData) bool) (*tracepb.TracesData, error) {
	return poll(ctx, func() (*tracepb.TracesData, error) { return j.Traces(ctx, service, since) }, done, "spans of "+service)
}

// poll calls query until done accepts its result or ctx ends.
func poll(ctx context.Context, query func() (*tracepb.TracesData, error), done func(*tracepb.TracesData) bool, what string) (*tracepb.TracesData, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := &tracepb.TracesData{}
	for {
		td, err := query()
		switch {
		case err == nil:
			last = td
			if done(td) {
				return td, nil
			}
		case ctx.Err() == nil:
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func (j *Jaeger) get(ctx context.Context, pathAndQuery string) (*tracepb.TracesData, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.queryURL+pathAndQuery, nil)
	if err != nil {
		return nil, err
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return decodeResult(body)
	case http.StatusNotFound: // Jaeger's answer to "no traces found"
		return &tracepb.TracesData{}, nil
	default:
		return nil, fmt.Errorf("query api: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
}

// decodeResult decodes the api_v3 HTTP answer {"result": <OTLP JSON TracesData>}.
// OTLP JSON writes trace and span IDs as hex while protojson reads bytes as base64, so
// the IDs are re-encoded before protojson sees them.
func decodeResult(body []byte) (*tracepb.TracesData, error) {
	var wrapper struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(body, &wrapper); err != nil {
		return nil, fmt.Errorf("decoding response: %w", err)
	}
	td := &tracepb.TracesData{}
	if len(wrapper.Result) == 0 {
		return td, nil
	}
	dec := json.NewDecoder(bytes.NewReader(wrapper.Result))
	dec.UseNumber() // keeps 64-bit integers exact
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decoding result: %w", err)
	}
	if err := hexIDsToBase64(tree); err != nil {
		return nil, fmt.Errorf("decoding result: %w", err)
	}
	std, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("re-encoding result: %w", err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(std, td); err != nil {
		return nil, fmt.Errorf("decoding otlp json: %w", err)
	}
	return td, nil
}

var idKeys = map[string]bool{"traceId": true, "spanId": true, "parentSpanId": true}

func hexIDsToBase64(v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if s, ok := child.(string); ok && idKeys[k] {
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q: %w", k, s, err)
				}
				v[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			if err := hexIDsToBase64(child); err != nil {
				return err
			}
		}
	case []any:
		for _, child := range v {
			if err := hexIDsToBase64(child); err != nil {
				return err
			}
		}
	}
	return nil
}

// Span is one span with the resource it was sent with.
type Span struct {
	*tracepb.Span
	Resource *resourcepb.Resource
}

// Spans flattens td into its spans, in the order Jaeger returned them.
func Spans(td *tracepb.TracesData) []Span {
	var out []Span
	for _, rs := range td.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, Span{Span: s, Resource: rs.GetResource()})
			}
		}
	}
	return out
}

// TraceIDHex is the span's trace ID in hex, as Jaeger's URLs and UI show it.
func (s Span) TraceIDHex() string { return hex.EncodeToString(s.GetTraceId()) }

// SpanIDHex is the span's ID in hex.
func (s Span) SpanIDHex() string { return hex.EncodeToString(s.GetSpanId()) }

// Attr returns the span attribute key rendered as a string (see AttrString).
func (s Span) Attr(key string) (string, bool) { return AttrString(s.GetAttributes(), key) }

// ResourceAttr returns the resource attribute key rendered as a string.
func (s Span) ResourceAttr(key string) (string, bool) {
	return AttrString(s.Resource.GetAttributes(), key)
}

// AttrString finds key in attrs and renders its value: strings as they are, numbers and
// booleans as Go formats them, anything else as protojson.
func AttrString(attrs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range attrs {
		if kv.GetKey() != key {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue, true
		case *commonpb.AnyValue_IntValue:
			return strconv.FormatInt(v.IntValue, 10), true
		case *commonpb.AnyValue_BoolValue:
			return strconv.FormatBool(v.BoolValue), true
		case *commonpb.AnyValue_DoubleValue:
			return strconv.FormatFloat(v.DoubleValue, 'g', -1, 64), true
		default:
			return protojson.Format(kv.GetValue()), true
		}
	}
	return "", false
}
