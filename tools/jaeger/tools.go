//go:build tools

// Package jaeger pins the Jaeger v2 all-in-one binary that pktspan's end-to-end
// tests and `make demo` export to. Build it with `make jaeger`.
package jaeger

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
