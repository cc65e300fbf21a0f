package spanner

import "go.opentelemetry.io/otel/attribute"

// NetnsNamer names the owner of a network namespace (the host, a /run/netns file, a
// container, a pod) for the spans that saw it. The spanner asks at export time, on the
// goroutine that reads the ring buffer, once per packet span and once per stage where the
// namespace changes; a namer learns its owners in the background and answers from what
// it knows already.
type NetnsNamer interface {
	// NetnsAttrs returns the attributes of the namespace with this inode (keys from
	// spanner/attrkey: container.id, k8s.pod.name, pktspan.netns.name…), or nil when it
	// knows none; inode 0 is a namespace the hook could not see. atUnixNano is when the
	// skb was there (the packet span's start, or the stage's): the kernel gives a freed
	// namespace's inode to the next one, so a namer that kept a gone owner for spans
	// exported late tells the two owners apart by their lifetimes. It must not block (no
	// lock a refresh holds for long, no I/O) and must not allocate. The slice stays the
	// namer's: the spanner copies it before returning and never writes to it, and the
	// namer never changes it once returned (a refresh builds a new one), so that a lookup
	// may run while a refresh does.
	NetnsAttrs(inode uint32, atUnixNano int64) []attribute.KeyValue
}

// WithNetnsNamer adds the attributes n knows of a network namespace wherever a span
// names one (pktspan.netns). A nil n keeps the default, which knows none.
func WithNetnsNamer(n NetnsNamer) Option {
	return func(s *settings) {
		if n != nil {
			s.netnsNamer = n
		}
	}
}

// unnamedNetns is the default NetnsNamer: no namespace has attributes beyond its inode.
type unnamedNetns struct{}

func (unnamedNetns) NetnsAttrs(uint32, int64) []attribute.KeyValue { return nil }
