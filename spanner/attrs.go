package spanner

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"unsafe"
)

const (
	packetSpanName = "packet"
	dropEventName  = "drop"
	// unknownDropReason stands in when the decoder marked a drop but found no reason name,
	// so error.type is never empty.
	unknownDropReason = "UNKNOWN"
)

// TCP flag bits as in the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// IP protocol numbers with names of their own.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Lookup tables are built once so that exporting never formats a number or joins flags.
var (
	decimal  = buildDecimal()
	tcpFlags = buildTCPFlags()
)

func buildDecimal() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}

func buildTCPFlags() (t [256]string) {
	names := [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	var b strings.Builder
	for v := range t {
		b.Reset()
		for bit, name := range names {
			if v&(1<<bit) == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(name)
		}
		t[v] = b.String()
	}
	return t
}

func hasPorts(proto uint8) bool { return proto == protoTCP || proto == protoUDP }

func transportName(proto uint8) string {
	switch proto {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMP, protoICMPv6:
		return "icmp"
	}
	return decimal[proto]
}

func rootName(proto uint8) string {
	switch proto {
	case protoTCP:
		return "flow tcp"
	case protoUDP:
		return "flow udp"
	case protoICMP, protoICMPv6:
		return "flow icmp"
	}
	return "flow ip"
}

func networkType(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func nfHookName(h uint8) string {
	switch h {
	case 0:
		return "PREROUTING"
	case 1:
		return "INPUT"
	case 2:
		return "FORWARD"
	case 3:
		return "OUTPUT"
	case 4:
		return "POSTROUTING"
	}
	return decimal[h]
}

func nfPFName(pf uint8) string {
	switch pf {
	case 1:
		return "inet"
	case 2:
		return "ipv4"
	case 3:
		return "arp"
	case 7:
		return "bridge"
	case 10:
		return "ipv6"
	}
	return decimal[pf]
}

// nfVerdictName names the verdict's low byte; the kernel keeps queue numbers and
// errnos in the upper bits.
func nfVerdictName(v int32) string {
	b := uint8(v & 0xff)
	switch b {
	case 0:
		return "DROP"
	case 1:
		return "ACCEPT"
	case 2:
		return "STOLEN"
	case 3:
		return "QUEUE"
	case 4:
		return "REPEAT"
	case 5:
		return "STOP"
	}
	return decimal[b]
}

// arena hands out strings written into shared blocks: one allocation serves many
// strings. A block's bytes are written once and never again (a full block is abandoned,
// not reused), so the strings stay immutable even when a sink keeps them.
type arena struct{ block []byte }

// begin makes room for a string of up to n bytes, to be appended to a.block, in a new
// block of blockSize bytes when the current one is too full, and returns where the
// string starts.
func (a *arena) begin(n, blockSize int) int {
	if cap(a.block)-len(a.block) < n {
		a.block = make([]byte, 0, max(n, blockSize))
	}
	return len(a.block)
}

// end returns the string appended since start.
func (a *arena) end(start int) string {
	b := a.block[start:]
	return unsafe.String(&b[0], len(b))
}

// hexCache remembers the formatted skb addresses (and pointers functions returned, most
// often skbs) recently exported. The kernel recycles
// sk_buffs from a slab, so the same addresses come back again and again and a
// direct-mapped cache spares formatting them. Its blocks hold about 900 addresses.
type hexCache struct {
	slots [4096]struct {
		skb uint64
		s   string
	}
	arena arena
}

func (c *hexCache) get(skb uint64) string {
	e := &c.slots[(skb*0x9e3779b97f4a7c15)>>52]
	if e.skb != skb || e.s == "" {
		const maxLen = len("0x") + 16
		start := c.arena.begin(maxLen, 16<<10)
		c.arena.block = strconv.AppendUint(append(c.arena.block, "0x"...), skb, 16)
		e.skb, e.s = skb, c.arena.end(start)
	}
	return e.s
}

// getWith caches prefix and the 16 hex digits of f(v), computed only on a miss.
func (c *hexCache) getWith(prefix string, v uint64, f func(uint64) uint64) string {
	e := &c.slots[(v*0x9e3779b97f4a7c15)>>52]
	if e.skb != v || e.s == "" {
		start := c.arena.begin(len(prefix)+16, 16<<10)
		c.arena.block = append(c.arena.block, prefix...)
		x := f(v)
		for shift := 60; shift >= 0; shift -= 4 {
			c.arena.block = append(c.arena.block, "0123456789abcdef"[(x>>shift)&0xf])
		}
		e.skb, e.s = v, c.arena.end(start)
	}
	return e.s
}

// textCache remembers formatted addresses and tuples, direct-mapped like hexCache: a
// flow's packets carry the same ones again and again. Its blocks are smaller, since
// every string its 2048 slots keep pins a whole block.
type textCache struct {
	addrs [1024]struct {
		a netip.Addr
		s string
	}
	tuples [1024]struct {
		t Tuple
		s string
	}
	arena arena
}

const textBlockSize = 4 << 10

// maxAddrLen is the longest text of an address and a port: `[` IPv6 `]:65535`.
const maxAddrLen = len("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535")

func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	return (binary.LittleEndian.Uint64(b[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[8:]), 29)) * 0x9e3779b97f4a7c15
}

// addr returns a's text; a must be valid.
func (c *textCache) addr(a netip.Addr) string {
	e := &c.addrs[addrHash(a)>>54]
	if e.a != a || e.s == "" {
		start := c.arena.begin(maxAddrLen, textBlockSize)
		c.arena.block = a.AppendTo(c.arena.block)
		e.a, e.s = a, c.arena.end(start)
	}
	return e.s
}

// tuple returns `198.18.0.1:50730 > 198.18.1.2:8080`: IPv6 in brackets when it has a
// port, no ports for protocols without them. t must be valid.
func (c *textCache) tuple(t Tuple) string {
	h := addrHash(t.Src) ^ bits.RotateLeft64(addrHash(t.Dst), 17) ^ uint64(t.SrcPort)<<24 ^ uint64(t.DstPort)<<8 ^ uint64(t.Proto)
	e := &c.tuples[(h*0x9e3779b97f4a7c15)>>54]
	if e.t != t || e.s == "" {
		start := c.arena.begin(2*maxAddrLen+len(" > "), textBlockSize)
		b := c.arena.block
		if hasPorts(t.Proto) {
			b = netip.AddrPortFrom(t.Src, t.SrcPort).AppendTo(b)
			b = netip.AddrPortFrom(t.Dst, t.DstPort).AppendTo(append(b, " > "...))
		} else {
			b = t.Dst.AppendTo(append(t.Src.AppendTo(b), " > "...))
		}
		c.arena.block = b
		e.t, e.s = t, c.arena.end(start)
	}
	return e.s
}
