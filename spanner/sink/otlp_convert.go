package sink

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/pktspan/pktspan/spanner"
)

// spanFlags marks the parent as known to be local and leaves the W3C random bit clear:
// pktspan's trace IDs are derived from flows, not drawn at random. Sampled is set since
// every exported span was recorded.
const spanFlags = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | 0x01

// arena hands out the proto values of one group from a few large allocations instead
// of several per span. The values are retained until their batch is sent, so the
// arena is never reused; a value that was not counted in advance (nested slices and
// maps) falls back to its own allocation.
type arena struct {
	kvs    []commonpb.KeyValue
	kvPtrs []*commonpb.KeyValue
	anys   []commonpb.AnyValue
	strs   []commonpb.AnyValue_StringValue
	ints   []commonpb.AnyValue_IntValue
	events []tracepb.Span_Event
	evPtrs []*tracepb.Span_Event
	links  []tracepb.Span_Link
	lnPtrs []*tracepb.Span_Link
	ids    []byte
}

// arenaSize counts what a group needs.
type arenaSize struct {
	kvs, strs, ints, events, links, ids int
}

func (n *arenaSize) addAttrs(kvs []attribute.KeyValue) {
	n.kvs += len(kvs)
	for i := range kvs {
		switch kvs[i].Value.Type() {
		case attribute.STRING:
			n.strs++
		case attribute.INT64:
			n.ints++
		}
	}
}

func newArena(n arenaSize) *arena {
	return &arena{
		kvs:    make([]commonpb.KeyValue, n.kvs),
		kvPtrs: make([]*commonpb.KeyValue, n.kvs),
		anys:   make([]commonpb.AnyValue, n.kvs),
		strs:   make([]commonpb.AnyValue_StringValue, n.strs),
		ints:   make([]commonpb.AnyValue_IntValue, n.ints),
		events: make([]tracepb.Span_Event, n.events),
		evPtrs: make([]*tracepb.Span_Event, n.events),
		links:  make([]tracepb.Span_Link, n.links),
		lnPtrs: make([]*tracepb.Span_Link, n.links),
		ids:    make([]byte, 0, n.ids),
	}
}

// convertGroup turns a group into OTLP spans that share no memory with the group.
func convertGroup(group []spanner.Span) []*tracepb.Span {
	var n arenaSize
	for i := range group {
		s := &group[i]
		n.addAttrs(s.Attrs)
		n.events += len(s.Events)
		n.links += len(s.Links)
		n.ids += 16 + 8 + 8 + len(s.Links)*(16+8)
		for j := range s.Events {
			n.addAttrs(s.Events[j].Attrs)
		}
		for j := range s.Links {
			n.addAttrs(s.Links[j].Attrs)
		}
	}
	a := newArena(n)
	spans := make([]tracepb.Span, len(group))
	out := make([]*tracepb.Span, len(group))
	var traceID []byte
	for i := range group {
		s := &group[i]
		p := &spans[i]
		// The spans of a group normally share one trace, so they share its bytes.
		if i == 0 || s.TraceID != group[i-1].TraceID {
			traceID = a.bytes(s.TraceID[:])
		}
		p.TraceId = traceID
		p.SpanId = a.bytes(s.SpanID[:])
		if s.ParentID != (spanner.SpanID{}) {
			p.ParentSpanId = a.bytes(s.ParentID[:])
		}
		p.Flags = spanFlags
		p.Name = s.Name
		p.Kind = spanKind(s.Kind)
		p.StartTimeUnixNano = uint64(s.StartUnixNano)
		p.EndTimeUnixNano = uint64(max(s.EndUnixNano, s.StartUnixNano+minDuration))
		p.Attributes = a.attrs(s.Attrs)
		p.Events = a.spanEvents(s.Events)
		p.Links = a.spanLinks(s.Links)
		switch s.Status {
		case spanner.StatusOK:
			p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK, Message: s.StatusDescription}
		case spanner.StatusError:
			p.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: s.StatusDescription}
		}
		out[i] = p
	}
	return out
}

func spanKind(k spanner.SpanKind) tracepb.Span_SpanKind {
	if k == spanner.SpanKindInternal {
		return tracepb.Span_SPAN_KIND_INTERNAL
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

// bytes copies b into the arena's id buffer; the full slice expression keeps a later
// append from reaching into the next id.
func (a *arena) bytes(b []byte) []byte {
	start := len(a.ids)
	a.ids = append(a.ids, b...)
	return a.ids[start:len(a.ids):len(a.ids)]
}

func (a *arena) spanEvents(in []spanner.SpanEvent) []*tracepb.Span_Event {
	if len(in) == 0 {
		return nil
	}
	out := a.evPtrs[:len(in):len(in)]
	a.evPtrs = a.evPtrs[len(in):]
	for i := range in {
		e := &a.events[i]
		e.Name = in[i].Name
		e.TimeUnixNano = uint64(in[i].TimeUnixNano)
		e.Attributes = a.attrs(in[i].Attrs)
		out[i] = e
	}
	a.events = a.events[len(in):]
	return out
}

func (a *arena) spanLinks(in []spanner.Link) []*tracepb.Span_Link {
	if len(in) == 0 {
		return nil
	}
	out := a.lnPtrs[:len(in):len(in)]
	a.lnPtrs = a.lnPtrs[len(in):]
	for i := range in {
		l := &a.links[i]
		l.TraceId = a.bytes(in[i].TraceID[:])
		l.SpanId = a.bytes(in[i].SpanID[:])
		l.Flags = spanFlags
		l.Attributes = a.attrs(in[i].Attrs)
		out[i] = l
	}
	a.links = a.links[len(in):]
	return out
}

func (a *arena) attrs(in []attribute.KeyValue) []*commonpb.KeyValue {
	if len(in) == 0 {
		return nil
	}
	var out []*commonpb.KeyValue
	if len(a.kvPtrs) >= len(in) {
		out = a.kvPtrs[:len(in):len(in)]
		a.kvPtrs = a.kvPtrs[len(in):]
	} else {
		out = make([]*commonpb.KeyValue, len(in))
	}
	for i := range in {
		var kv *commonpb.KeyValue
		if len(a.kvs) > 0 {
			kv = &a.kvs[0]
			a.kvs = a.kvs[1:]
		} else {
			kv = new(commonpb.KeyValue)
		}
		kv.Key = string(in[i].Key)
		kv.Value = a.value(in[i].Value)
		out[i] = kv
	}
	return out
}

func (a *arena) anyValue() *commonpb.AnyValue {
	if len(a.anys) == 0 {
		return new(commonpb.AnyValue)
	}
	v := &a.anys[0]
	a.anys = a.anys[1:]
	return v
}

// value converts every attribute.Type, nested slices and maps included.
func (a *arena) value(v attribute.Value) *commonpb.AnyValue {
	av := a.anyValue()
	switch v.Type() {
	case attribute.STRING:
		var w *commonpb.AnyValue_StringValue
		if len(a.strs) > 0 {
			w = &a.strs[0]
			a.strs = a.strs[1:]
		} else {
			w = new(commonpb.AnyValue_StringValue)
		}
		w.StringValue = v.AsString()
		av.Value = w
	case attribute.INT64:
		var w *commonpb.AnyValue_IntValue
		if len(a.ints) > 0 {
			w = &a.ints[0]
			a.ints = a.ints[1:]
		} else {
			w = new(commonpb.AnyValue_IntValue)
		}
		w.IntValue = v.AsInt64()
		av.Value = w
	case attribute.BOOL:
		av.Value = &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}
	case attribute.FLOAT64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}
	case attribute.BYTESLICE:
		av.Value = &commonpb.AnyValue_BytesValue{BytesValue: v.AsByteSlice()}
	case attribute.BOOLSLICE:
		vs := v.AsBoolSlice()
		arr := make([]*commonpb.AnyValue, len(vs))
		for i, x := range vs {
			arr[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: x}}
		}
		av.Value = arrayValue(arr)
	case attribute.INT64SLICE:
		vs := v.AsInt64Slice()
		arr := make([]*commonpb.AnyValue, len(vs))
		for i, x := range vs {
			arr[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}}
		}
		av.Value = arrayValue(arr)
	case attribute.FLOAT64SLICE:
		vs := v.AsFloat64Slice()
		arr := make([]*commonpb.AnyValue, len(vs))
		for i, x := range vs {
			arr[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}
		}
		av.Value = arrayValue(arr)
	case attribute.STRINGSLICE:
		vs := v.AsStringSlice()
		arr := make([]*commonpb.AnyValue, len(vs))
		for i, x := range vs {
			arr[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}}
		}
		av.Value = arrayValue(arr)
	case attribute.SLICE:
		vs := v.AsSlice()
		arr := make([]*commonpb.AnyValue, len(vs))
		for i, x := range vs {
			arr[i] = a.value(x)
		}
		av.Value = arrayValue(arr)
	case attribute.MAP:
		av.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: a.attrs(v.AsMap())}}
	}
	// EMPTY stays an AnyValue with no value, OTLP's empty value.
	return av
}

func arrayValue(arr []*commonpb.AnyValue) *commonpb.AnyValue_ArrayValue {
	return &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: arr}}
}

func convertResource(res *resource.Resource) *resourcepb.Resource {
	var a arena
	return &resourcepb.Resource{Attributes: a.attrs(res.Attributes())}
}

// minDuration is the length given to instants (tracepoint stages): Jaeger treats a span
// whose end equals its start as a negative duration and warns on every such span.
const minDuration = 1
