package spanner

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
)

// skbIDs turns kernel addresses (an skb's, a function's pointer return value) into what
// spans carry: the address itself under WithSKBAddressExported, else an opaque ID that
// is the same for the same address throughout a run and tells nothing of it: half of
// the address's AES-128 block under a key drawn for the run (two addresses of a run share
// an ID about as often as two random 64-bit numbers are equal), shown as skb-<16 hex
// digits>. Kernel heap addresses
// would help an attacker defeat KASLR; the console, which stays on the host, shows them.
type skbIDs struct {
	export bool
	block  cipher.Block
	cache  hexCache
	in     [aes.BlockSize]byte
	out    [aes.BlockSize]byte
}

// newSKBIDs keys the IDs with key, or a random key when key is nil.
func newSKBIDs(export bool, key []byte) *skbIDs {
	if key == nil {
		key = make([]byte, 16)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (it crashes the program instead)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("spanner: skb ID key must be 16 bytes") // WithSKBIDKey takes a [16]byte
	}
	return &skbIDs{export: export, block: block}
}

// get returns what a span carries for the kernel address addr; 0 stays 0x0 (a NULL
// pointer returned is no address).
func (s *skbIDs) get(hex *hexCache, addr uint64) string {
	if s.export || addr == 0 {
		return hex.get(addr)
	}
	return s.cache.getWith("skb-", addr, func(a uint64) uint64 {
		binary.LittleEndian.PutUint64(s.in[:], a)
		s.block.Encrypt(s.out[:], s.in[:])
		return binary.LittleEndian.Uint64(s.out[:])
	})
}
