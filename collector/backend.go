package collector

import "fmt"

// Backend is the family of the function probes. Tracepoints are attached with every
// backend.
type Backend uint8

const (
	// BackendAuto tries fentry/fexit, then kprobe/kretprobe, per function.
	BackendAuto Backend = iota
	// BackendFentry uses BTF trampolines only.
	BackendFentry
	// BackendKprobe uses kprobes only.
	BackendKprobe
	// BackendTracepoint traces tracepoints only: no function probes.
	BackendTracepoint
)

var backendNames = [...]string{
	BackendAuto:       "auto",
	BackendFentry:     "fentry",
	BackendKprobe:     "kprobe",
	BackendTracepoint: "tracepoint",
}

// functionBackends are the backends that attach functions, in the order auto tries them.
var functionBackends = []Backend{BackendFentry, BackendKprobe}

func (b Backend) String() string {
	if int(b) < len(backendNames) {
		return backendNames[b]
	}
	return fmt.Sprintf("Backend(%d)", b)
}

// ParseBackend reads a probes.backend value (auto, fentry, kprobe or tracepoint).
func ParseBackend(s string) (Backend, error) {
	for b, name := range backendNames {
		if name == s {
			return Backend(b), nil
		}
	}
	return 0, fmt.Errorf("unknown backend %q (auto, fentry, kprobe or tracepoint)", s)
}

// forced reports whether the user asked for one function backend and nothing else.
func (b Backend) forced() bool { return b == BackendFentry || b == BackendKprobe }

// tries returns the function backends b attaches with, in order.
func (b Backend) tries() []Backend {
	switch b {
	case BackendAuto:
		return functionBackends
	case BackendTracepoint:
		return nil
	}
	return []Backend{b}
}
