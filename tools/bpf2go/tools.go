//go:build tools

// Package bpf2go pins the bpf2go generator to the cilium/ebpf version the main module
// uses, so `make generate` reproduces bpf/'s committed objects byte for byte.
package bpf2go

import _ "github.com/cilium/ebpf/cmd/bpf2go"
