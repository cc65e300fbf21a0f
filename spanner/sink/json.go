package sink

import (
	"encoding/base64"
	"encoding/hex"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner"
)

// JSON is a spanner.Sink writing one JSON object per line for every span (root, packet
// and stage spans alike), in the order the spans arrive. The format is stable; fields
// are always present and always in this order, except parent_span_id:
//
//	trace_id            string, 32 lower-case hex digits
//	span_id             string, 16 lower-case hex digits
//	parent_span_id      string, 16 hex digits; omitted for a root span
//	name                string: "flow tcp", "packet", "nf_hook_slow", "net:netif_receive_skb"…
//	kind                string: "internal" (or "unspecified")
//	start_unix_nano     integer, wall time in ns
//	end_unix_nano       integer
//	duration_ns         integer, end minus start
//	attributes          object: key → typed value (see below); {} when none
//	status              string: "unset", "ok" or "error"
//	status_description  string, "" when none (the drop reason on a dropped packet)
//	events              array of {"name", "time_unix_nano", "attributes"}; [] when none
//	links               array of {"trace_id", "span_id", "attributes"}; [] when none
//
// Attribute values keep their type: bool → true/false, int64 → integer, float64 →
// number (NaN and ±Inf, which JSON cannot hold, become the strings "NaN", "+Inf",
// "-Inf"), string → string, the slice types → arrays, bytes → base64 string, nested
// slices → arrays, maps → objects, an empty value → null. A key repeated on a span is
// written as often as it occurs. Strings are escaped as encoding/json does; invalid
// UTF-8 becomes U+FFFD.
//
// Example (one line, wrapped here):
//
//	{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331",
//	 "parent_span_id":"00f067aa0ba902b7","name":"packet","kind":"internal",
//	 "start_unix_nano":1700000000000000000,"end_unix_nano":1700000000000050000,
//	 "duration_ns":50000,"attributes":{"network.transport":"tcp","source.port":40000},
//	 "status":"error","status_description":"NETFILTER_DROP",
//	 "events":[{"name":"drop","time_unix_nano":1700000000000050000,"attributes":{}}],"links":[]}
type JSON struct {
	lines // Shutdown reports the first write error; Stats counts spans written and lost
}

var _ spanner.Sink = (*JSON)(nil)

// NewJSON writes JSON lines to w, one Write per group.
func NewJSON(w io.Writer) *JSON {
	return &JSON{lines{w: w, name: "json output"}}
}

// Export writes one line per span of the group.
func (j *JSON) Export(group []spanner.Span) {
	if len(group) == 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	b := j.buf[:0]
	for i := range group {
		b = appendSpanJSON(b, &group[i])
		b = append(b, '\n')
	}
	j.buf = b
	j.writeLocked(len(group))
}

func appendSpanJSON(b []byte, s *spanner.Span) []byte {
	b = append(b, `{"trace_id":"`...)
	b = hex.AppendEncode(b, s.TraceID[:])
	b = append(b, `","span_id":"`...)
	b = hex.AppendEncode(b, s.SpanID[:])
	b = append(b, '"')
	if s.ParentID != (spanner.SpanID{}) {
		b = append(b, `,"parent_span_id":"`...)
		b = hex.AppendEncode(b, s.ParentID[:])
		b = append(b, '"')
	}
	b = append(b, `,"name":`...)
	b = appendJSONString(b, s.Name)
	b = append(b, `,"kind":`...)
	if s.Kind == spanner.SpanKindInternal {
		b = append(b, `"internal"`...)
	} else {
		b = append(b, `"unspecified"`...)
	}
	b = append(b, `,"start_unix_nano":`...)
	b = strconv.AppendInt(b, s.StartUnixNano, 10)
	b = append(b, `,"end_unix_nano":`...)
	b = strconv.AppendInt(b, s.EndUnixNano, 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, s.EndUnixNano-s.StartUnixNano, 10)
	b = append(b, `,"attributes":`...)
	b = appendAttrsJSON(b, s.Attrs)
	b = append(b, `,"status":`...)
	switch s.Status {
	case spanner.StatusOK:
		b = append(b, `"ok"`...)
	case spanner.StatusError:
		b = append(b, `"error"`...)
	default:
		b = append(b, `"unset"`...)
	}
	b = append(b, `,"status_description":`...)
	b = appendJSONString(b, s.StatusDescription)
	b = append(b, `,"events":[`...)
	for i := range s.Events {
		e := &s.Events[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, e.Name)
		b = append(b, `,"time_unix_nano":`...)
		b = strconv.AppendInt(b, e.TimeUnixNano, 10)
		b = append(b, `,"attributes":`...)
		b = appendAttrsJSON(b, e.Attrs)
		b = append(b, '}')
	}
	b = append(b, `],"links":[`...)
	for i := range s.Links {
		l := &s.Links[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"trace_id":"`...)
		b = hex.AppendEncode(b, l.TraceID[:])
		b = append(b, `","span_id":"`...)
		b = hex.AppendEncode(b, l.SpanID[:])
		b = append(b, `","attributes":`...)
		b = appendAttrsJSON(b, l.Attrs)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendAttrsJSON(b []byte, attrs []attribute.KeyValue) []byte {
	b = append(b, '{')
	for i, kv := range attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, string(kv.Key))
		b = append(b, ':')
		b = appendValueJSON(b, kv.Value)
	}
	return append(b, '}')
}

func appendValueJSON(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(b, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(b, v.AsInt64(), 10)
	case attribute.FLOAT64:
		return appendFloatJSON(b, v.AsFloat64())
	case attribute.STRING:
		return appendJSONString(b, v.AsString())
	case attribute.BYTESLICE:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.AsByteSlice())
		return append(b, '"')
	case attribute.BOOLSLICE:
		return appendArrayJSON(b, v.AsBoolSlice(), strconv.AppendBool)
	case attribute.INT64SLICE:
		return appendArrayJSON(b, v.AsInt64Slice(), func(b []byte, x int64) []byte { return strconv.AppendInt(b, x, 10) })
	case attribute.FLOAT64SLICE:
		return appendArrayJSON(b, v.AsFloat64Slice(), appendFloatJSON)
	case attribute.STRINGSLICE:
		return appendArrayJSON(b, v.AsStringSlice(), appendJSONString)
	case attribute.SLICE:
		return appendArrayJSON(b, v.AsSlice(), appendValueJSON)
	case attribute.MAP:
		return appendAttrsJSON(b, v.AsMap())
	}
	return append(b, "null"...)
}

func appendArrayJSON[T any](b []byte, vs []T, appendOne func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOne(b, x)
	}
	return append(b, ']')
}

func appendFloatJSON(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendJSONString quotes s for JSON: the mandatory escapes, plus <, >, & and U+2028/9
// like encoding/json so lines are safe to embed anywhere.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
