// Package bpf holds pktspan's eBPF probes: the C sources, the event header they
// share with user space, and the Go code and objects bpf2go generates from them.
// Only package collector loads them.
package bpf

//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iheaders" -target bpfel -type event Tracepoints tracepoints.c
//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iheaders" -target amd64 -no-global-types Functions functions.c
