package spanner

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
)

// randomIDs draws IDs from ChaCha8 seeded once from the operating system: IDs need to be
// unpredictable enough not to collide across hosts, and crypto/rand per span is too slow
// for the ring reader.
type randomIDs struct{ r *rand.ChaCha8 }

func newRandomIDs() *randomIDs {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails since Go 1.24
	return &randomIDs{r: rand.NewChaCha8(seed)}
}

func (g *randomIDs) traceID() TraceID {
	var id TraceID
	for id == (TraceID{}) {
		binary.BigEndian.PutUint64(id[:8], g.r.Uint64())
		binary.BigEndian.PutUint64(id[8:], g.r.Uint64())
	}
	return id
}

func (g *randomIDs) spanID() SpanID {
	var id SpanID
	for id == (SpanID{}) {
		binary.BigEndian.PutUint64(id[:], g.r.Uint64())
	}
	return id
}
