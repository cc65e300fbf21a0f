package sink

import (
	"io"
	"testing"

	"github.com/pktspan/pktspan/spanner"
)

func BenchmarkJSONEncode(b *testing.B) {
	benchmarkEncoding(b, func(buf []byte, s *spanner.Span) []byte {
		return append(appendSpanJSON(buf, s), '\n')
	})
}

func BenchmarkJSONExport(b *testing.B) {
	j := NewJSON(io.Discard)
	group := tcpGroup()
	b.ReportAllocs()
	for b.Loop() {
		j.Export(group)
	}
	b.ReportMetric(float64(b.N*len(group))/b.Elapsed().Seconds(), "spans/s")
	if st := j.Stats(); st.Dropped != 0 {
		b.Fatalf("Stats = %+v, want nothing dropped", st)
	}
}
