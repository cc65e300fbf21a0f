package collector

import (
	"strings"
	"sync/atomic"

	"github.com/pktspan/pktspan/bpf"
)

// stackDepth is how many frames the kernel keeps of a drop's stack.
const stackDepth = int(bpf.TracepointsLimitsSTACK_DEPTH)

// tracingFrames bounds how deep the tracepoint's own frames (the eBPF program, the
// kernel's bpf_trace_run call) are looked for.
const tracingFrames = 4

// stackMap is the kernel's stacks map as stackTable uses it (*ebpf.Map).
type stackMap interface {
	Lookup(key, valueOut any) error
	Delete(key any) error
}

// stackTable turns the stack ids of drop events (--stack) into symbolized stacks. Each
// stack is deleted from the kernel's map once read, so the bounded map keeps room for
// new drops. Drops with one stack share one id, and the second may be read after the
// first deleted it: the last stack read under each id stands in then (the kernel
// stored nothing newer there, or the lookup would have found it). Its size is bounded
// by the map's, whose ids are its bucket indexes.
type stackTable struct {
	m       stackMap
	symbols Symbolizer
	last    map[uint32]string
	frames  [stackDepth]uint64
	missed  atomic.Uint64 // stack ids whose stack could not be read
}

func newStackTable(m stackMap, symbols Symbolizer) *stackTable {
	return &stackTable{m: m, symbols: symbols, last: make(map[uint32]string)}
}

// stack returns the stack stored under id, innermost frame first, one `symbol+0xoff`
// per line, or "" (counted) when it cannot be read.
func (t *stackTable) stack(id uint32) string {
	if err := t.m.Lookup(id, &t.frames); err != nil {
		s, ok := t.last[id]
		if !ok {
			t.missed.Add(1)
		}
		return s
	}
	_ = t.m.Delete(id) // already gone only if another reader took it: nothing to do
	n := 0
	for n < len(t.frames) && t.frames[n] != 0 {
		n++
	}
	frames := t.frames[:n]
	// The innermost frames are pktspan's own program and the kernel's call into it:
	// the stack of the drop starts at the frame that fired the tracepoint.
	for i := range min(len(frames), tracingFrames) {
		if strings.HasPrefix(t.symbols.Symbolize(frames[i]), "bpf_trace_run") {
			frames = frames[i+1:]
			break
		}
	}
	var b strings.Builder
	for _, pc := range frames {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(t.symbols.Symbolize(pc))
	}
	s := b.String()
	t.last[id] = s
	return s
}
