// Package bpf holds pktspan's eBPF probes: the C sources, the header they share with
// user space, and the Go code and objects bpf2go generates from them. The structs and
// enums of bpf/headers/pktspan.h reach Go only through this generated code: user space
// never restates them. Only package collector loads the probes.
package bpf

//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iheaders" -target bpfel -type event -type probe_id -type probe_cookie -type event_kind -type counter_id -type nf_verdict -type skb_identity -type limits -type free_class -type free_need -type normal_free -type nft_names -type nft_freed_key -type pcap_packet Tracepoints tracepoints.c
//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iheaders" -target amd64 -no-global-types Functions functions.c
//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -Iheaders" -target bpfel -no-global-types Correlate correlate.c
