package sink

import (
	"encoding/binary"
	"math"
	"math/bits"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/spanner"
)

// pktspan writes OTLP's protobuf encoding itself, straight from spanner.Span into one
// reusable buffer per batch: building tracepb messages cost several allocations and
// about a kilobyte of garbage per span, and the collector of that garbage was the
// biggest cost of the export path. Fields go in field-number order, zero scalars are
// left out and oneof members are always written, as protobuf-go's Marshal does, so a
// receiver decodes exactly the messages pktspan used to build.

// Span and link flags: the low byte is the W3C trace flags, sampled always (every
// exported span was recorded) and random (Trace Context level 2) only for a trace ID
// drawn at random; a trace ID derived from a connection is predictable and must not
// claim it. Above it, the parent is marked as known to be local.
const (
	flagsBase   = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | 0x01
	flagsRandom = 0x02
)

func spanFlags(random bool) uint32 {
	if random {
		return flagsBase | flagsRandom
	}
	return flagsBase
}

// minDuration is the length given to instants (tracepoint stages): Jaeger treats a span
// whose end equals its start as a negative duration and warns on every such span.
const minDuration = 1

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// Field numbers of the OTLP messages written here (opentelemetry-proto trace/v1,
// common/v1, resource/v1).
const (
	requestResourceSpans    = 1
	resourceSpansResource   = 1
	resourceSpansScopeSpans = 2
	resourceSpansSchemaURL  = 3
	resourceAttributes      = 1
	scopeSpansScope         = 1
	scopeSpansSpans         = 2
	scopeName               = 1

	spanTraceID      = 1
	spanSpanID       = 2
	spanParentSpanID = 4
	spanName         = 5
	spanKind         = 6
	spanStart        = 7
	spanEnd          = 8
	spanAttributes   = 9
	spanEvents       = 11
	spanLinks        = 13
	spanStatus       = 15
	spanFlagsField   = 16

	eventTime       = 1
	eventName       = 2
	eventAttributes = 3

	linkTraceID    = 1
	linkSpanID     = 2
	linkAttributes = 4
	linkFlags      = 6

	statusMessage = 2
	statusCode    = 3

	kvKey   = 1
	kvValue = 2

	anyString = 1
	anyBool   = 2
	anyInt    = 3
	anyDouble = 4
	anyArray  = 5
	anyKvlist = 6
	anyBytes  = 7

	listValues = 1 // ArrayValue.values and KeyValueList.values
)

func appendTag(b []byte, field, wireType int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wireType))
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	return binary.AppendUvarint(appendTag(b, field, wireVarint), v)
}

func appendFixed64Field(b []byte, field int, v uint64) []byte {
	return binary.LittleEndian.AppendUint64(appendTag(b, field, wireFixed64), v)
}

func appendFixed32Field(b []byte, field int, v uint32) []byte {
	return binary.LittleEndian.AppendUint32(appendTag(b, field, wireFixed32), v)
}

func appendBytesField[T string | []byte](b []byte, field int, v T) []byte {
	b = binary.AppendUvarint(appendTag(b, field, wireBytes), uint64(len(v)))
	return append(b, v...)
}

// openMessage starts a length-delimited field whose length is not known yet, reserving
// room bytes for it: one fits the length of most attributes, two most spans'.
func openMessage(b []byte, field, room int) ([]byte, int) {
	b = appendTag(b, field, wireBytes)
	start := len(b)
	for range room {
		b = append(b, 0)
	}
	return b, start
}

// closeMessage writes the length of the message opened at start with room bytes,
// moving the message when its length takes more or fewer bytes than that.
func closeMessage(b []byte, start, room int) []byte {
	n := len(b) - start - room
	if room == 1 && n < 0x80 {
		b[start] = byte(n)
		return b
	}
	l := uvarintLen(uint64(n))
	switch {
	case l < room:
		copy(b[start+l:], b[start+room:])
		b = b[:start+l+n]
	case l > room:
		var pad [binary.MaxVarintLen64]byte
		b = append(b, pad[:l-room]...)
		copy(b[start+l:], b[start+room:start+room+n])
	}
	binary.PutUvarint(b[start:], uint64(n))
	return b
}

// Tags of the span fields written on every span, each a single byte.
const (
	tagTraceID  = spanTraceID<<3 | wireBytes
	tagSpanID   = spanSpanID<<3 | wireBytes
	tagParentID = spanParentSpanID<<3 | wireBytes
	tagKind     = spanKind<<3 | wireVarint
	tagStart    = spanStart<<3 | wireFixed64
	tagEnd      = spanEnd<<3 | wireFixed64
)

// spanRoom is the room to reserve for s's length: exactly its length's size when s is
// a bare span (a stage without attributes, the most common) whose length is known
// without encoding it, else two bytes, which fit every span but the rare huge one.
func spanRoom(s *spanner.Span) int {
	if len(s.Attrs) > 0 || len(s.Events) > 0 || len(s.Links) > 0 || s.Status != spanner.StatusUnset {
		return 2
	}
	n := 2 + len(s.TraceID) + 2 + len(s.SpanID) + 9 + 6 // IDs, end, flags (field 16: a two-byte tag)
	if s.ParentID != (spanner.SpanID{}) {
		n += 2 + len(s.ParentID)
	}
	if s.Name != "" {
		n += 1 + uvarintLen(uint64(len(s.Name))) + len(s.Name)
	}
	if s.Kind == spanner.SpanKindInternal {
		n += 2
	}
	if s.StartUnixNano != 0 {
		n += 9
	}
	return uvarintLen(uint64(n))
}

// appendSpan writes s as one ScopeSpans.spans field.
func appendSpan(b []byte, s *spanner.Span) []byte {
	room := spanRoom(s)
	b, start := openMessage(b, scopeSpansSpans, room)
	b = append(append(b, tagTraceID, byte(len(s.TraceID))), s.TraceID[:]...)
	b = append(append(b, tagSpanID, byte(len(s.SpanID))), s.SpanID[:]...)
	if s.ParentID != (spanner.SpanID{}) {
		b = append(append(b, tagParentID, byte(len(s.ParentID))), s.ParentID[:]...)
	}
	if s.Name != "" {
		b = appendBytesField(b, spanName, s.Name)
	}
	if s.Kind == spanner.SpanKindInternal {
		b = append(b, tagKind, byte(tracepb.Span_SPAN_KIND_INTERNAL))
	}
	if s.StartUnixNano != 0 {
		b = binary.LittleEndian.AppendUint64(append(b, tagStart), uint64(s.StartUnixNano))
	}
	b = binary.LittleEndian.AppendUint64(append(b, tagEnd), uint64(max(s.EndUnixNano, s.StartUnixNano+minDuration)))
	b = appendAttrs(b, spanAttributes, s.Attrs)
	for i := range s.Events {
		e := &s.Events[i]
		var es int
		b, es = openMessage(b, spanEvents, 1)
		if e.TimeUnixNano != 0 {
			b = appendFixed64Field(b, eventTime, uint64(e.TimeUnixNano))
		}
		if e.Name != "" {
			b = appendBytesField(b, eventName, e.Name)
		}
		b = appendAttrs(b, eventAttributes, e.Attrs)
		b = closeMessage(b, es, 1)
	}
	for i := range s.Links {
		l := &s.Links[i]
		var ls int
		b, ls = openMessage(b, spanLinks, 1)
		b = appendBytesField(b, linkTraceID, l.TraceID[:])
		b = appendBytesField(b, linkSpanID, l.SpanID[:])
		b = appendAttrs(b, linkAttributes, l.Attrs)
		b = appendFixed32Field(b, linkFlags, spanFlags(l.RandomTraceID))
		b = closeMessage(b, ls, 1)
	}
	var code tracepb.Status_StatusCode
	switch s.Status {
	case spanner.StatusOK:
		code = tracepb.Status_STATUS_CODE_OK
	case spanner.StatusError:
		code = tracepb.Status_STATUS_CODE_ERROR
	}
	if code != tracepb.Status_STATUS_CODE_UNSET {
		var ss int
		b, ss = openMessage(b, spanStatus, 1)
		if s.StatusDescription != "" {
			b = appendBytesField(b, statusMessage, s.StatusDescription)
		}
		b = appendVarintField(b, statusCode, uint64(code))
		b = closeMessage(b, ss, 1)
	}
	b = appendFixed32Field(b, spanFlagsField, spanFlags(s.RandomTraceID))
	return closeMessage(b, start, room)
}

func appendAttrs(b []byte, field int, kvs []attribute.KeyValue) []byte {
	for i := range kvs {
		b = appendKeyValue(b, field, &kvs[i])
	}
	return b
}

// appendKeyValue writes kv. Scalar values, nearly every attribute, have their lengths
// worked out first so that their bytes are written once, in order: when every tag and
// length fits a byte, as in nearly every attribute, in a few appends. Other values go
// through appendValue, which moves what it wrote when a length outgrows its byte.
func appendKeyValue(b []byte, field int, kv *attribute.KeyValue) []byte {
	key := string(kv.Key)
	// Room for the key value's tag and length, for the key's, and for the value's: all
	// single bytes on the short path.
	keyLen := 0
	if key != "" {
		keyLen = 2 + len(key)
	}
	short := field < 16 && key != "" && len(key) < 0x80
	switch kv.Value.Type() {
	case attribute.STRING:
		v := kv.Value.AsString()
		if anyLen := 2 + len(v); short && keyLen+2+anyLen < 0x80 {
			b = append(b, byte(field<<3|wireBytes), byte(keyLen+2+anyLen), kvKey<<3|wireBytes, byte(len(key)))
			b = append(append(b, key...), kvValue<<3|wireBytes, byte(anyLen), anyString<<3|wireBytes, byte(len(v)))
			return append(b, v...)
		}
		anyLen := 1 + uvarintLen(uint64(len(v))) + len(v)
		b = appendScalarHead(b, field, key, anyLen)
		return appendBytesField(b, anyString, v)
	case attribute.INT64:
		v := uint64(kv.Value.AsInt64())
		anyLen := 1 + uvarintLen(v)
		if short && keyLen+2+anyLen < 0x80 {
			b = append(b, byte(field<<3|wireBytes), byte(keyLen+2+anyLen), kvKey<<3|wireBytes, byte(len(key)))
			b = append(append(b, key...), kvValue<<3|wireBytes, byte(anyLen), anyInt<<3|wireVarint)
			return binary.AppendUvarint(b, v)
		}
		b = appendScalarHead(b, field, key, anyLen)
		return appendVarintField(b, anyInt, v)
	case attribute.BOOL:
		b = appendScalarHead(b, field, key, 2)
		return appendVarintField(b, anyBool, boolVarint(kv.Value.AsBool()))
	case attribute.FLOAT64:
		b = appendScalarHead(b, field, key, 9)
		return appendFixed64Field(b, anyDouble, math.Float64bits(kv.Value.AsFloat64()))
	}
	b, start := openMessage(b, field, 1)
	if key != "" {
		b = appendBytesField(b, kvKey, key)
	}
	b = appendValue(b, kvValue, kv.Value)
	return closeMessage(b, start, 1)
}

// appendScalarHead writes a key value's tag and length, its key, and its value's tag
// and length, anyLen: the encoded AnyValue's size.
func appendScalarHead(b []byte, field int, key string, anyLen int) []byte {
	kvLen := 1 + uvarintLen(uint64(anyLen)) + anyLen
	if key != "" {
		kvLen += 1 + uvarintLen(uint64(len(key))) + len(key)
	}
	b = binary.AppendUvarint(appendTag(b, field, wireBytes), uint64(kvLen))
	if key != "" {
		b = appendBytesField(b, kvKey, key)
	}
	return binary.AppendUvarint(appendTag(b, kvValue, wireBytes), uint64(anyLen))
}

// uvarintLen is the length of x's varint encoding.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// appendValue writes v as an AnyValue, every attribute.Type included; EMPTY is an
// AnyValue with no value, OTLP's empty value.
func appendValue(b []byte, field int, v attribute.Value) []byte {
	b, start := openMessage(b, field, 1)
	switch v.Type() {
	case attribute.STRING:
		b = appendBytesField(b, anyString, v.AsString())
	case attribute.INT64:
		b = appendVarintField(b, anyInt, uint64(v.AsInt64()))
	case attribute.BOOL:
		b = appendVarintField(b, anyBool, boolVarint(v.AsBool()))
	case attribute.FLOAT64:
		b = appendFixed64Field(b, anyDouble, math.Float64bits(v.AsFloat64()))
	case attribute.BYTESLICE:
		b = appendBytesField(b, anyBytes, v.AsByteSlice())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE, attribute.SLICE:
		var as int
		b, as = openMessage(b, anyArray, 1)
		b = appendArray(b, v)
		b = closeMessage(b, as, 1)
	case attribute.MAP:
		var ms int
		b, ms = openMessage(b, anyKvlist, 1)
		b = appendAttrs(b, listValues, v.AsMap())
		b = closeMessage(b, ms, 1)
	}
	return closeMessage(b, start, 1)
}

// appendArray writes the elements of a slice value as ArrayValue.values.
func appendArray(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			b = appendValue(b, listValues, attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			b = appendValue(b, listValues, attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			b = appendValue(b, listValues, attribute.Float64Value(x))
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			b = appendValue(b, listValues, attribute.StringValue(x))
		}
	case attribute.SLICE:
		for _, x := range v.AsSlice() {
			b = appendValue(b, listValues, x)
		}
	}
	return b
}

func boolVarint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// encodeResource writes the ResourceSpans.resource field, the same for every request.
func encodeResource(res *resource.Resource) []byte {
	b, start := openMessage(nil, resourceSpansResource, 1)
	kvs := res.Attributes()
	b = appendAttrs(b, resourceAttributes, kvs)
	return closeMessage(b, start, 1)
}

// encodeScope writes the ScopeSpans.scope field that opens every batch.
func encodeScope(name string) []byte {
	b, start := openMessage(nil, scopeSpansScope, 1)
	b = appendBytesField(b, scopeName, name)
	return closeMessage(b, start, 1)
}
