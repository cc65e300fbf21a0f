package spanner

import (
	crand "crypto/rand"
	"crypto/sha256"
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

// flowKeyLen is the length of a flow key's canonical encoding.
const flowKeyLen = 1 + 2*(16+2)

// appendFlowKey writes k's canonical encoding, the input of every decision hosts must
// make alike: the protocol number, then endpoint a and endpoint b, each as its address
// in 16 bytes (IPv4 as ::ffff:a.b.c.d) and its port big-endian (0 for protocols without
// ports). Endpoint a is the lower one in (address bytes, port) order, so both directions
// encode the same.
func appendFlowKey(b []byte, k flowKey) []byte {
	a16, b16 := k.a.As16(), k.b.As16()
	b = append(b, k.proto)
	b = append(b, a16[:]...)
	b = binary.BigEndian.AppendUint16(b, k.pa)
	b = append(b, b16[:]...)
	return binary.BigEndian.AppendUint16(b, k.pb)
}

// traceIDTag versions the trace ID derivation. Hosts agree on a connection's trace ID
// only while they derive it alike, so the recipe below never changes under this tag.
const traceIDTag = "pktspan trace v1"

// derivedTraceID is the trace ID of window ordinal (0 for a connection's first window)
// of the TCP connection on k whose client's initial sequence number is isn: the first
// 16 bytes of SHA-256(traceIDTag ‖ appendFlowKey(k) ‖ isn ‖ ordinal), the two numbers
// as 4 bytes big-endian. Every host that sees the connection derives the same ID, so
// their spans meet in one trace without the hosts talking.
func derivedTraceID(k flowKey, isn, ordinal uint32) TraceID {
	var buf [len(traceIDTag) + flowKeyLen + 8]byte
	b := append(buf[:0], traceIDTag...)
	b = appendFlowKey(b, k)
	b = binary.BigEndian.AppendUint32(b, isn)
	b = binary.BigEndian.AppendUint32(b, ordinal)
	sum := sha256.Sum256(b)
	return TraceID(sum[:16])
}

// flowHash is FNV-1a 64 of k's canonical encoding: fixed and cheap, so that every host
// samples the same flows.
func flowHash(k flowKey) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	var buf [flowKeyLen]byte
	h := uint64(offset)
	for _, c := range appendFlowKey(buf[:0], k) {
		h = (h ^ uint64(c)) * prime
	}
	return h
}

// sampled reports whether head sampling at ratio keeps flow k: its hash's top 53 bits,
// as a fraction of 1, fall below ratio.
func sampled(k flowKey, ratio float64) bool {
	return ratio >= 1 || float64(flowHash(k)>>11)/(1<<53) < ratio
}
