package sink

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner"
)

func TestSpanRoomIsTheLengthSizeOfABareSpanAndTwoBytesOtherwise(t *testing.T) {
	bare := spanner.Span{TraceID: traceA, SpanID: sid(2), ParentID: sid(1), Name: "net:net_dev_queue",
		Kind: spanner.SpanKindInternal, StartUnixNano: us(1), EndUnixNano: us(2)}
	tests := []struct {
		name string
		edit func(*spanner.Span)
		want int
	}{
		{"stage span", func(*spanner.Span) {}, 1},
		{"root: no parent", func(s *spanner.Span) { s.ParentID = spanner.SpanID{} }, 1},
		{"no name, kind or start", func(s *spanner.Span) { s.Name, s.Kind, s.StartUnixNano = "", 0, 0 }, 1},
		// 66 bytes besides the name: 127 fit a byte, 128 do not.
		{"length of 127 bytes", func(s *spanner.Span) { s.Name = strings.Repeat("n", 61) }, 1},
		{"length of 128 bytes", func(s *spanner.Span) { s.Name = strings.Repeat("n", 62) }, 2},
		{"length past two bytes", func(s *spanner.Span) { s.Name = strings.Repeat("n", 20000) }, 3},
		{"attributes", func(s *spanner.Span) { s.Attrs = []attribute.KeyValue{attribute.Int("k", 1)} }, 2},
		{"events", func(s *spanner.Span) { s.Events = []spanner.SpanEvent{{Name: "drop"}} }, 2},
		{"links", func(s *spanner.Span) { s.Links = []spanner.Link{{SpanID: sid(9)}} }, 2},
		{"status", func(s *spanner.Span) { s.Status = spanner.StatusError }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bare
			tt.edit(&s)
			if got := spanRoom(&s); got != tt.want {
				t.Errorf("spanRoom = %d, want %d", got, tt.want)
			}
			if len(s.Attrs)+len(s.Events)+len(s.Links) == 0 && s.Status == spanner.StatusUnset {
				b := appendSpan(nil, &s)
				if body := len(b) - 1 - tt.want; uvarintLen(uint64(body)) != tt.want {
					t.Errorf("a bare span of %d bytes reserved %d bytes for its length", body, tt.want)
				}
			}
		})
	}
}
