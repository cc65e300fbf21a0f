package sink

import (
	"io"
	"testing"
)

func BenchmarkJSONEncode(b *testing.B) {
	group := tcpGroup()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range group {
			buf = appendSpanJSON(buf, &group[i])
			buf = append(buf, '\n')
		}
	}
	b.ReportMetric(float64(b.N*len(group))/b.Elapsed().Seconds(), "spans/s")
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
