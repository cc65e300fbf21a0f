package collector

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/bpf"
)

// surveyKernel is a kernel as the classification sees it: its enum skb_drop_reason (each
// kernel numbers it its own way) and where its functions lie.
type surveyKernel struct {
	reasons   map[uint32]string
	functions map[string][2]uint64
}

func (k surveyKernel) Text(name string) (lo, hi uint64, ok bool) {
	f, ok := k.functions[name]
	return f[0], f[1], ok
}

// location is `function+0xoff` as an address of k.
func (k surveyKernel) location(t *testing.T, loc string) uint64 {
	fn, off, _ := strings.Cut(loc, "+0x")
	f, ok := k.functions[fn]
	if !ok {
		t.Fatalf("no function %s in the fixture kernel", fn)
	}
	o, err := strconv.ParseUint(off, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f[0] + o
}

// functionsAt lays out the functions one after another from base, 0x1000 bytes each.
func functionsAt(base uint64, names ...string) map[string][2]uint64 {
	m := map[string][2]uint64{}
	for i, n := range names {
		lo := base + uint64(i)*0x1000
		m[n] = [2]uint64{lo, lo + 0x1000}
	}
	return m
}

var allFunctions = []string{"tcp_rcv_state_process", "sk_stream_kill_queues", "ping_rcv", "icmp_rcv", "icmpv6_rcv",
	"tcp_v4_rcv", "__udp4_lib_rcv", "udp_queue_rcv_one_skb", "ip_forward", "ip_error", "ip_rcv_finish_core", "nft_do_chain",
	"skb_release_data", "tcp_data_queue", "tcp_validate_incoming"}

// The kernels of the survey (README, "What counts as a drop"), with the reasons they
// use there.
var surveyKernels = map[string]surveyKernel{
	"6.1": {
		reasons: map[uint32]string{0: "SKB_NOT_DROPPED_YET", 1: "SKB_DROP_REASON_NOT_SPECIFIED", 2: "SKB_DROP_REASON_NO_SOCKET",
			6: "SKB_DROP_REASON_SOCKET_RCVBUFF", 11: "SKB_DROP_REASON_NETFILTER_DROP", 20: "SKB_DROP_REASON_TCP_FLAGS",
			40: "SKB_DROP_REASON_IP_INHDR", 41: "SKB_DROP_REASON_IP_RPFILTER", 45: "SKB_DROP_REASON_IP_INNOROUTES",
			27: "SKB_DROP_REASON_TCP_OLD_DATA", 33: "SKB_DROP_REASON_TCP_INVALID_SEQUENCE"},
		functions: functionsAt(0xffffffff81000000, allFunctions...),
	},
	"6.12": {
		reasons: map[uint32]string{0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "SKB_DROP_REASON_NOT_SPECIFIED",
			3: "SKB_DROP_REASON_NO_SOCKET", 7: "SKB_DROP_REASON_SOCKET_RCVBUFF", 13: "SKB_DROP_REASON_NETFILTER_DROP",
			22: "SKB_DROP_REASON_TCP_FLAGS", 44: "SKB_DROP_REASON_IP_INHDR", 45: "SKB_DROP_REASON_IP_RPFILTER",
			49: "SKB_DROP_REASON_IP_INNOROUTES", 75: "SKB_DROP_REASON_QUEUE_PURGE"},
		functions: functionsAt(0xffffffff82000000, allFunctions...),
	},
	"6.18": {
		reasons: map[uint32]string{0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "SKB_DROP_REASON_NOT_SPECIFIED",
			3: "SKB_DROP_REASON_NO_SOCKET", 8: "SKB_DROP_REASON_SOCKET_RCVBUFF", 14: "SKB_DROP_REASON_NETFILTER_DROP",
			25: "SKB_DROP_REASON_TCP_FLAGS", 50: "SKB_DROP_REASON_IP_INHDR", 51: "SKB_DROP_REASON_IP_RPFILTER",
			55: "SKB_DROP_REASON_IP_INNOROUTES", 84: "SKB_DROP_REASON_QUEUE_PURGE",
			31: "SKB_DROP_REASON_TCP_OLD_DATA", 39: "SKB_DROP_REASON_TCP_OLD_SEQUENCE", 40: "SKB_DROP_REASON_TCP_INVALID_SEQUENCE"},
		functions: functionsAt(0xffffffff83000000, allFunctions...),
	},
}

// One classification, the probes' own (bpf/headers/drops.h compiled for the host), over
// what healthy traffic and real drops showed on each kernel and the cases around them.
func TestFreeClassificationOverKernelReasonLocationAndHistory(t *testing.T) {
	const (
		drop     = bpf.TracepointsFreeClassFREE_DROP
		normal   = bpf.TracepointsFreeClassFREE_NORMAL
		consumed = bpf.TracepointsFreeClassFREE_CONSUMED
	)
	type history struct {
		len       uint32 // skb->len at the free
		delivered bool   // a reader copied from it
	}
	fin := history{len: 0}
	unread := history{len: 100}
	read := history{len: 100, delivered: true}
	cases := []struct {
		kernel, what string
		user         []string // --normal-free-reasons
		consumeSKB   bool     // freed by consume_skb, not kfree_skb
		reason, loc  string
		skb          history
		want         bpf.TracepointsFreeClass
	}{
		// Healthy traffic.
		{kernel: "6.18", what: "handshake's last ACK or an ACK while closing", reason: "NOT_SPECIFIED", loc: "tcp_rcv_state_process+0x3a1", want: normal},
		{kernel: "6.12", what: "ACK while closing", reason: "NOT_SPECIFIED", loc: "tcp_rcv_state_process+0x2f0", want: normal},
		{kernel: "6.1", what: "ACK while closing", reason: "NOT_SPECIFIED", loc: "tcp_rcv_state_process+0x2f0", want: normal},
		{kernel: "6.18", what: "FIN left on a closed socket's queue", reason: "QUEUE_PURGE", loc: "sk_stream_kill_queues+0x5e", skb: fin, want: normal},
		{kernel: "6.12", what: "FIN left on a closed socket's queue", reason: "QUEUE_PURGE", loc: "sk_stream_kill_queues+0x5e", skb: fin, want: normal},
		{kernel: "6.1", what: "FIN left on a closed socket's queue", reason: "NOT_SPECIFIED", loc: "sk_stream_kill_queues+0x5e", skb: fin, want: normal},
		{kernel: "6.18", what: "segment read, then purged at close", reason: "QUEUE_PURGE", loc: "sk_stream_kill_queues+0x5e", skb: read, want: normal},
		{kernel: "6.18", what: "echo reply to a raw socket's ping", reason: "NO_SOCKET", loc: "ping_rcv+0x8b", want: normal},
		{kernel: "6.12", what: "echo reply to a raw socket's ping", reason: "NO_SOCKET", loc: "icmp_rcv+0x1b1", want: normal},
		{kernel: "6.12", what: "ICMPv6 echo reply to a raw socket's ping", reason: "NO_SOCKET", loc: "icmpv6_rcv+0x258", want: normal},
		{kernel: "6.1", what: "ICMPv6 echo request answered, neighbour discovery", reason: "NOT_SPECIFIED", loc: "icmpv6_rcv+0x258", want: normal},
		{kernel: "6.18", what: "consumed", reason: "CONSUMED", loc: "skb_release_data+0x10", want: consumed},
		{kernel: "6.1", what: "consume_skb", consumeSKB: true, want: consumed},
		{kernel: "6.1", what: "a needless retransmission's bytes, all arrived", reason: "TCP_OLD_DATA", loc: "tcp_data_queue+0x6fd", want: normal},
		{kernel: "6.18", what: "a needless retransmission, before the window", reason: "TCP_OLD_SEQUENCE", loc: "tcp_validate_incoming+0x151", want: normal},
		// Real drops.
		{kernel: "6.18", what: "segment with unread bytes purged at close", reason: "QUEUE_PURGE", loc: "sk_stream_kill_queues+0x5e", skb: unread, want: drop},
		{kernel: "6.1", what: "segment with unread bytes purged at close", reason: "NOT_SPECIFIED", loc: "sk_stream_kill_queues+0x5e", skb: unread, want: drop},
		{kernel: "6.18", what: "SYN to a closed TCP port", reason: "NO_SOCKET", loc: "tcp_v4_rcv+0x1c0", want: drop},
		{kernel: "6.12", what: "datagram to a closed UDP port", reason: "NO_SOCKET", loc: "__udp4_lib_rcv+0x5a0", want: drop},
		{kernel: "6.1", what: "datagram to a closed UDP port", reason: "NO_SOCKET", loc: "__udp4_lib_rcv+0x5a0", want: drop},
		{kernel: "6.18", what: "nft rule", reason: "NETFILTER_DROP", loc: "nft_do_chain+0x46f", want: drop},
		{kernel: "6.18", what: "full receive queue", reason: "SOCKET_RCVBUFF", loc: "udp_queue_rcv_one_skb+0x2c4", want: drop},
		{kernel: "6.12", what: "TTL expired", reason: "IP_INHDR", loc: "ip_forward+0x3b0", want: drop},
		{kernel: "6.1", what: "no route", reason: "IP_INNOROUTES", loc: "ip_error+0x90", want: drop},
		{kernel: "6.18", what: "rp_filter", reason: "IP_RPFILTER", loc: "ip_rcv_finish_core+0x1a0", want: drop},
		{kernel: "6.18", what: "the state machine's own discard", reason: "TCP_FLAGS", loc: "tcp_rcv_state_process+0x120", want: drop},
		{kernel: "6.18", what: "a segment beyond the window", reason: "TCP_INVALID_SEQUENCE", loc: "tcp_validate_incoming+0x151", want: drop},
		{kernel: "6.1", what: "an old or beyond-window segment, which 6.1 does not tell apart", reason: "TCP_INVALID_SEQUENCE", loc: "tcp_validate_incoming+0x151", want: drop},
		{kernel: "6.18", what: "NOT_SPECIFIED outside the state machine", reason: "NOT_SPECIFIED", loc: "tcp_v4_rcv+0x1c0", want: drop},
		{kernel: "6.18", what: "NOT_SPECIFIED at a queue purge elsewhere", reason: "QUEUE_PURGE", loc: "udp_queue_rcv_one_skb+0x10", skb: fin, want: drop},
		// Where a function ends: a return address is never its first byte, and is the
		// next function's first when the call ends it.
		{kernel: "6.18", what: "return address at the function's start", reason: "NOT_SPECIFIED", loc: "tcp_rcv_state_process+0x0", want: drop},
		{kernel: "6.18", what: "return address at the function's end", reason: "NOT_SPECIFIED", loc: "tcp_rcv_state_process+0x1000", want: normal},
		// --normal-free-reasons adds reasons normal anywhere.
		{kernel: "6.18", what: "a reason the user calls normal", user: []string{"NO_SOCKET"}, reason: "NO_SOCKET", loc: "__udp4_lib_rcv+0x5a0", want: normal},
		{kernel: "6.18", what: "a reason the user did not name", user: []string{"NO_SOCKET"}, reason: "NETFILTER_DROP", loc: "nft_do_chain+0x46f", want: drop},
	}
	harness := buildFreesHarness(t)
	for _, c := range cases {
		k := surveyKernels[c.kernel]
		reasons := dropReasonsFrom(k.reasons)
		table, _, err := normalFreeTable(reasons, k, c.user)
		if err != nil {
			t.Fatal(err)
		}
		var in bytes.Buffer
		fmt.Fprintln(&in, len(table))
		for _, f := range table {
			fmt.Fprintln(&in, f.Lo, f.Hi, f.Reason, f.Need, f.Class)
		}
		high, bits := normalReasonBits(table)
		fmt.Fprintln(&in, high, bits[0], bits[1])
		var reason uint32
		var loc uint64
		if !c.consumeSKB {
			var ok bool
			if reason, ok = reasons.Value(c.reason); !ok {
				t.Fatalf("%s: no reason %s on %s", c.what, c.reason, c.kernel)
			}
			loc = k.location(t, c.loc)
		}
		delivered := 0
		if c.skb.delivered {
			delivered = 1
		}
		fmt.Fprintln(&in, map[bool]int{true: 0, false: 1}[c.consumeSKB], reason, loc, c.skb.len, delivered)
		run := exec.Command(harness)
		run.Stdin = &in
		out, err := run.Output()
		if err != nil {
			t.Fatalf("%s: harness: %v", c.what, err)
		}
		got, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("%s: harness said %q", c.what, out)
		}
		if bpf.TracepointsFreeClass(got) != c.want {
			t.Errorf("%s, %s at %s %+v: class %d, want %d", c.kernel, c.reason, c.loc, c.skb, got, c.want)
		}
	}
}

func TestNormalFreeReasonsMustBeTheKernels(t *testing.T) {
	k := surveyKernels["6.18"]
	for _, name := range []string{"SKB_DROP_REASON_NOT_SPECIFIED", "not_specified", "NO_SUCH_REASON", ""} {
		if _, _, err := normalFreeTable(dropReasonsFrom(k.reasons), k, []string{name}); err == nil {
			t.Errorf("normal_free_reasons %q: no error", name)
		}
	}
}

func TestNormalFreesOfFunctionsTheKernelLacksAreLeftOut(t *testing.T) {
	k := surveyKernels["6.18"]
	k.functions = functionsAt(0xffffffff83000000, "tcp_rcv_state_process")
	table, missing, err := normalFreeTable(dropReasonsFrom(k.reasons), k, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range table {
		if f.Lo != 0 && f.Lo != 0xffffffff83000000 {
			t.Errorf("a normal free at %#x, which is no function of this kernel", f.Lo)
		}
	}
	if !strings.Contains(strings.Join(missing, ","), "sk_stream_kill_queues") {
		t.Errorf("missing functions %v, want sk_stream_kill_queues among them", missing)
	}
}

// buildFreesHarness compiles bpf/testdata/frees_harness.c, which includes the probes'
// drops.h, for the host.
func buildFreesHarness(t *testing.T) string {
	t.Helper()
	var cc string
	for _, c := range []string{"clang", "cc", "gcc"} {
		if p, err := exec.LookPath(c); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		t.Fatal("no C compiler (clang, cc or gcc) to build the free_class harness: run make deps")
	}
	bin := filepath.Join(t.TempDir(), "frees")
	build := exec.Command(cc, "-O2", "-Wall", "-Werror", "-I../bpf/headers", "-o", bin, "../bpf/testdata/frees_harness.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the harness: %v\n%s", err, out)
	}
	return bin
}
