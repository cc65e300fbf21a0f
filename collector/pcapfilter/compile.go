// Package pcapfilter turns a pcap-filter expression, as tcpdump takes it, into eBPF
// instructions pktspan's probes run in the kernel: libpcap compiles it to a classic BPF
// program (Compile), which Translate turns into eBPF and Inject puts in place of a
// placeholder function in a program before load.
//
// libpcap is linked statically from Debian's libpcap0.8-dev (with libdbus-1.a, which its
// D-Bus capture needs), so the pktspan binary stays self-contained; `make build` links
// the C library statically too.
package pcapfilter

/*
#cgo LDFLAGS: -l:libpcap.a -l:libdbus-1.a
#include <stdlib.h>
#include <pcap/pcap.h>

// libdbus's systemd socket activation, which Debian's libdbus-1.a calls into, lives in
// libsystemd, of which Debian ships no static library. It runs only in a D-Bus server
// started by systemd; libpcap uses D-Bus only to capture on a dbus-* interface, which
// pktspan never opens, so these are never called. They say "no sockets passed".
int sd_listen_fds(int unset_environment) { return 0; }
int sd_is_socket(int fd, int family, int type, int listening) { return 0; }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
)

// Link is the link type a program is compiled for: what the packet starts with.
type Link int

const (
	// Ethernet packets start with an Ethernet header (DLT_EN10MB).
	Ethernet Link = C.DLT_EN10MB
	// RawIP packets start with the IPv4 or IPv6 header (DLT_RAW).
	RawIP Link = C.DLT_RAW
)

func (l Link) String() string {
	if l == RawIP {
		return "raw IP"
	}
	return "Ethernet"
}

// snaplen is what libpcap is told packets may be long: its largest, so that no
// expression is refused for looking too far (the probes bound what they examine).
const snaplen = 262144

// Error is libpcap's own refusal of an expression.
type Error struct {
	Expr string
	Msg  string // libpcap's message, as tcpdump prints it
}

func (e *Error) Error() string { return e.Msg }

// libpcap's compiler keeps global state in older versions: one compile at a time.
var compileMu sync.Mutex

// Compile compiles expr for packets of the link type, optimized as tcpdump does.
func Compile(expr string, link Link) ([]bpf.Instruction, error) {
	compileMu.Lock()
	defer compileMu.Unlock()
	p := C.pcap_open_dead(C.int(link), snaplen)
	if p == nil {
		return nil, fmt.Errorf("pcap_open_dead(%v) failed", link)
	}
	defer C.pcap_close(p)
	cexpr := C.CString(expr)
	defer C.free(unsafe.Pointer(cexpr))
	var prog C.struct_bpf_program
	if C.pcap_compile(p, &prog, cexpr, 1, C.PCAP_NETMASK_UNKNOWN) < 0 {
		return nil, &Error{Expr: expr, Msg: C.GoString(C.pcap_geterr(p))}
	}
	defer C.pcap_freecode(&prog)
	raw := unsafe.Slice(prog.bf_insns, prog.bf_len)
	out := make([]bpf.Instruction, len(raw))
	for i, ins := range raw {
		out[i] = bpf.RawInstruction{Op: uint16(ins.code), Jt: uint8(ins.jt), Jf: uint8(ins.jf), K: uint32(ins.k)}.Disassemble()
	}
	return out, nil
}
