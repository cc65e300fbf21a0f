package collector

import (
	"bytes"
	"strings"

	"github.com/pktspan/pktspan/spanner"
)

// The bytes come from whoever can send a segment: every index below is checked, nothing
// is allocated but room in out, and no byte is looked at more than a few times.

// maxRequestsPerSegment bounds what one segment of tiny pipelined requests can cost.
const maxRequestsPerSegment = 8

// maxMethodLen is longer than any registered method; a longer token is not HTTP.
const maxMethodLen = 20

// traceparentLen is the length of a version 00 traceparent: 00-{32 hex}-{16 hex}-{2 hex}.
const traceparentLen = 55

// Line ends: a bare LF ends a line as CRLF does. RFC 9112 §2.2 lets a recipient accept
// it and Go's net/http server does, so refusing it would miss requests a server takes,
// traceparent included. A CR anywhere else stays in the line, where it makes the request
// line fail and a traceparent value malformed.

// parseRequests appends to out the HTTP/1.x requests that start in payload, the first
// bytes of a TCP segment (at most what was read of it: the segment may go on).
func parseRequests(payload []byte, out []spanner.Request) []spanner.Request {
	off := 0
	for range maxRequestsPerSegment {
		n := requestLineLen(payload[off:])
		if n == 0 {
			break
		}
		var h headerBlock
		h.scan(payload[off+n:])
		out = append(out, h.request(uint32(off)))
		body, ok := h.bodyLen()
		if !ok {
			break
		}
		// The next request starts after the body: only one that starts inside the bytes
		// read is there to be parsed.
		start := off + n + h.end
		if body >= len(payload)-start {
			break
		}
		off = start + body
	}
	return out
}

// requestLineLen returns the length of the request line b starts with, its line end
// included, or 0 when b starts with none. A request line the byte limit cut is none:
// without its version it cannot be told from other bytes.
func requestLineLen(b []byte) int {
	i := 0
	for i < len(b) && i <= maxMethodLen && isMethodByte(b[i]) {
		i++
	}
	if i == 0 || i > maxMethodLen || i == len(b) || b[i] != ' ' {
		return 0
	}
	i++
	target := i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == target || i == len(b) || b[i] != ' ' {
		return 0
	}
	i++
	const version = len("HTTP/1.x")
	if len(b)-i < version || string(b[i:i+version-1]) != "HTTP/1." || (b[i+version-1] != '0' && b[i+version-1] != '1') {
		return 0
	}
	i += version
	switch {
	case i < len(b) && b[i] == '\n':
		return i + 1
	case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
		return i + 2
	}
	return 0
}

func isMethodByte(c byte) bool { return 'A' <= c && c <= 'Z' || c == '-' || c == '_' }

// headerBlock is what one request's header lines say about its traceparent and about
// where the next request starts.
type headerBlock struct {
	// traceparents counts the fields named traceparent, one with whitespace before its
	// colon included: a server lenient about it would see a second one.
	traceparents int
	verdict      spanner.HeaderVerdict // of the last traceparent, which is the only one when it counts
	trace        spanner.TraceID
	parent       spanner.SpanID
	flags        spanner.TraceFlags

	complete bool // the empty line ending the block was read
	end      int  // the block's length, its empty line included, when complete

	contentLengths int // Content-Length fields
	contentLength  int // the last one's value; -1 when it is no number
	// unframed means the next request cannot be found: Transfer-Encoding makes the body's
	// length something only the body says, and a line a server should reject (no colon,
	// whitespace before it, a bad name, an obs-fold) leaves its framing to the server's
	// leniency, which we do not guess.
	unframed bool
}

// scan reads the header lines in b, which starts after the request line.
func (h *headerBlock) scan(b []byte) {
	afterTraceparent := false // the last field was a traceparent, which an obs-fold continues
	for pos := 0; pos < len(b); {
		eol := bytes.IndexByte(b[pos:], '\n')
		if eol < 0 {
			// The last line goes on past the bytes read, so only its first byte can be
			// judged. A fold or a second traceparent further on cannot be seen at all: a
			// traceparent found in an incomplete block counts as it looks.
			if afterTraceparent && isOWS(b[pos]) {
				h.verdict = spanner.HeaderMalformed
			}
			return
		}
		line := b[pos : pos+eol]
		pos += eol + 1
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			h.complete, h.end = true, pos
			return
		}
		if isOWS(line[0]) {
			// An obs-fold continues the field before it: a server that unfolds it would
			// see a traceparent with more after it, one that rejects it no traceparent.
			h.unframed = true
			if afterTraceparent {
				h.verdict = spanner.HeaderMalformed
			}
			continue
		}
		afterTraceparent = false
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			h.unframed = true
			continue
		}
		name := trimRightOWS(line[:colon])
		spaced := len(name) < colon
		if !isToken(name) {
			// Not a field: `traceparent` text inside such a line is nobody's header.
			h.unframed = true
			continue
		}
		if spaced {
			// RFC 9112 §5.1 has servers reject it; the lenient ones take the name as is.
			h.unframed = true
		}
		value := trimOWS(line[colon+1:])
		switch {
		case equalFoldLower(name, "traceparent"):
			h.traceparents++
			afterTraceparent = true
			h.verdict = spanner.HeaderMalformed
			if !spaced {
				h.verdict = h.parseTraceparent(value)
			}
		case equalFoldLower(name, "content-length"):
			h.contentLengths++
			h.contentLength = contentLength(value, len(b))
		case equalFoldLower(name, "transfer-encoding"):
			h.unframed = true
		}
	}
}

// parseTraceparent reads a W3C Trace Context version 00 value into h.
func (h *headerBlock) parseTraceparent(v []byte) spanner.HeaderVerdict {
	if len(v) != traceparentLen || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return spanner.HeaderMalformed
	}
	var flags [1]byte
	if !decodeLowerHex(h.trace[:], v[3:35]) || !decodeLowerHex(h.parent[:], v[36:52]) || !decodeLowerHex(flags[:], v[53:55]) {
		return spanner.HeaderMalformed
	}
	h.flags = spanner.TraceFlags(flags[0])
	if h.trace == (spanner.TraceID{}) || h.parent == (spanner.SpanID{}) {
		return spanner.HeaderZeroID
	}
	return spanner.HeaderValid
}

// request is the Request the block describes, starting at off.
func (h *headerBlock) request(off uint32) spanner.Request {
	r := spanner.Request{Offset: off}
	switch {
	case h.traceparents > 1:
		r.Verdict = spanner.HeaderDuplicate
	case h.traceparents == 1:
		r.Verdict = h.verdict
		if r.Verdict == spanner.HeaderValid {
			r.TraceID, r.ParentID, r.Flags = h.trace, h.parent, h.flags
		}
	case h.complete:
		r.Verdict = spanner.HeaderMissing
	default:
		r.Verdict = spanner.HeaderTruncated
	}
	return r
}

// bodyLen returns the length of the body after the block, and false when it cannot be
// told. Several Content-Length fields are refused even when they agree: servers differ.
func (h *headerBlock) bodyLen() (int, bool) {
	if !h.complete || h.unframed || h.contentLengths > 1 {
		return 0, false
	}
	if h.contentLengths == 0 {
		return 0, true
	}
	return h.contentLength, h.contentLength >= 0
}

// contentLength parses a Content-Length value, -1 when it is not 1*DIGIT. Values past
// limit stop growing there: they only need to be known to end past the bytes read.
func contentLength(v []byte, limit int) int {
	if len(v) == 0 {
		return -1
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = min(n*10+int(c-'0'), limit+1)
	}
	return n
}

// decodeLowerHex decodes src, twice as long as dst, refusing uppercase: Trace Context
// allows lowercase hex only.
func decodeLowerHex(dst, src []byte) bool {
	for i := range dst {
		hi, ok1 := lowerHexDigit(src[2*i])
		lo, ok2 := lowerHexDigit(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// isToken reports whether b is an RFC 9110 token, the only thing a field name can be.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// equalFoldLower compares b with lower, which is in lowercase, ignoring ASCII case.
func equalFoldLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	return trimRightOWS(b)
}

func trimRightOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
