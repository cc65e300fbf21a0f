package collector

import (
	"bytes"
	"encoding/binary"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/spanner"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bin from the generated struct")

// fixedClock adds a constant: decoded times are predictable.
type fixedClock int64

func (c fixedClock) WallNano(mono uint64) int64 { return int64(mono) + int64(c) }

func testDecoder(t testing.TB) *Decoder {
	t.Helper()
	syms, err := NewKallsyms("testdata/kallsyms", "testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	reasons := dropReasonsFrom(map[uint32]string{
		0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "SKB_DROP_REASON_NOT_SPECIFIED",
		3: "SKB_DROP_REASON_NO_SOCKET", 12: "SKB_DROP_REASON_NETFILTER_DROP",
	})
	return NewDecoder(reasons, syms, fixedClock(1_000_000_000), []Function{{"ip_rcv_core", RetPointer}, {"nf_hook_slow", RetInt32}, {"ip_output", RetInt32}, {"kfree_skb_list", RetVoid}})
}

// stageOf is the stage the decoder gives the fixed probe with this id.
func stageOf(id uint16) *spanner.Stage {
	for i := range fixedProbes {
		if fixedProbes[i].id == id {
			return &fixedProbes[i].stage
		}
	}
	panic("no fixed probe with that id")
}

func ifname(s string) (b [16]int8) {
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

func addr16(s string) (b [16]uint8) {
	a := netip.MustParseAddr(s)
	copy(b[:], a.AsSlice())
	return b
}

func TestDecodeTurnsKernelRecordsIntoEvents(t *testing.T) {
	cases := []struct {
		name string
		raw  bpf.TracepointsEvent
		want spanner.Event
	}{
		{
			name: "tcp_syn_on_receive",
			raw: bpf.TracepointsEvent{
				TsNs: 5, Skb: 0xffff888104e28ae0, Probe: probeNetifReceiveSKB, Cpu: 1,
				Netns: 4026531840, Ifindex: 7, Ifname: ifname("veth0"), Len: 60, Mark: 0x10,
				L3: 4, L4: 6, Sport: 40000, Dport: 80, TcpFlags: 0x02, TcpSeq: 1000, TcpAck: 0,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_005, SKB: 0xffff888104e28ae0, Stage: stageOf(probeNetifReceiveSKB),
				CPU: 1, Netns: 4026531840, Ifindex: 7, Ifname: "veth0", Len: 60, Mark: 0x10,
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 80, Proto: 6},
				TCP:   spanner.TCP{Flags: 0x02, Seq: 1000},
			},
		},
		{
			name: "nft_drop_with_module_location",
			raw: bpf.TracepointsEvent{
				TsNs: 9, Skb: 0xffff1, Probe: probeKfreeSKB, L3: 4, L4: 6, Sport: 40001, Dport: 81,
				DropReason: 12, Location: 0xffffffffc0a011f3,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"), TcpFlags: 0x02,
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_009, SKB: 0xffff1, Stage: stageOf(probeKfreeSKB),
				Tuple:      spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40001, DstPort: 81, Proto: 6},
				TCP:        spanner.TCP{Flags: 0x02},
				DropReason: "NETFILTER_DROP", Drop: true, Location: "nft_do_chain+0x1f3",
			},
		},
		{
			name: "normal_free_is_not_a_drop",
			raw: bpf.TracepointsEvent{TsNs: 1, Skb: 0xffff2, Probe: probeKfreeSKB, DropReason: 1, Location: 0xffffffff81a00457,
				FreeClass: uint8(bpf.TracepointsFreeClassFREE_CONSUMED)},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_001, SKB: 0xffff2, Stage: stageOf(probeKfreeSKB),
				DropReason: "CONSUMED", Location: "sk_stream_kill_queues+0x57",
			},
		},
		{
			name: "bookkeeping_free_is_a_normal_end_with_its_reason",
			raw: bpf.TracepointsEvent{TsNs: 1, Skb: 0xffff2, Probe: probeKfreeSKB, DropReason: 2, Location: 0xffffffff81a00457,
				FreeClass: uint8(bpf.TracepointsFreeClassFREE_NORMAL)},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_001, SKB: 0xffff2, Stage: stageOf(probeKfreeSKB),
				DropReason: "NOT_SPECIFIED", NormalFree: true, Location: "sk_stream_kill_queues+0x57",
			},
		},
		{
			name: "unknown_reason_value_gets_a_number",
			raw:  bpf.TracepointsEvent{Skb: 0xffff3, Probe: probeKfreeSKB, DropReason: 77},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffff3, Stage: stageOf(probeKfreeSKB),
				DropReason: "REASON_77", Drop: true,
			},
		},
		{
			name: "udp_ipv6",
			raw: bpf.TracepointsEvent{
				Skb: 0xffff4, Probe: probeNetDevQueue, L3: 6, L4: 17, Sport: 5353, Dport: 9999,
				Saddr: addr16("2001:db8::1"), Daddr: addr16("2001:db8::2"), Ifname: ifname("eth0"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffff4, Stage: stageOf(probeNetDevQueue), Ifname: "eth0",
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 5353, DstPort: 9999, Proto: 17},
			},
		},
		{
			name: "no_ip_header_leaves_the_tuple_empty",
			raw:  bpf.TracepointsEvent{Skb: 0xffff5, Probe: probeNetDevXmit, Retval: -1, Sport: 1, Dport: 2, TcpFlags: 0x10},
			want: spanner.Event{TimeUnixNano: 1_000_000_000, SKB: 0xffff5, Stage: stageOf(probeNetDevXmit), Retval: -1},
		},
		{
			name: "nf_hook_slow_exit_accepting",
			raw:  bpf.TracepointsEvent{Skb: 0xffff6, Probe: probeFuncBase + 1, Kind: 2, NfHook: 4, NfPf: 10, NfVerdict: 1, Retval: 1},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffff6, Stage: &spanner.Stage{Name: "nf_hook_slow", NFHook: true}, Kind: spanner.KindExit,
				Netfilter: spanner.Netfilter{Hook: 4, PF: 10, Verdict: 1, Valid: true}, Retval: 1,
			},
		},
		{
			// bpf_get_func_ret reports an int's -EPERM zero-extended: 0x00000000ffffffff.
			name: "nf_hook_slow_exit_carries_the_verdict_and_a_negative_int",
			raw: bpf.TracepointsEvent{
				Skb: 0xffff6, Probe: probeFuncBase + 1, Kind: 2, NfHook: 1, NfPf: 2, NfVerdict: 0, Retval: 0xffffffff,
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffff6, Stage: &spanner.Stage{Name: "nf_hook_slow", NFHook: true}, Kind: spanner.KindExit,
				Netfilter: spanner.Netfilter{Hook: 1, PF: 2, Verdict: 0, Valid: true}, Retval: -1,
			},
		},
		{
			name: "pointer_return_is_kept_whole",
			raw:  bpf.TracepointsEvent{Skb: 0xffff7, Probe: probeFuncBase, Kind: 2, Retval: -0xea6c3e29a518},
			want: spanner.Event{TimeUnixNano: 1_000_000_000, SKB: 0xffff7, Stage: &spanner.Stage{Name: "ip_rcv_core", Pointer: true}, Kind: spanner.KindExit, Retval: -0xea6c3e29a518},
		},
		{
			name: "clone_names_its_parent",
			raw: bpf.TracepointsEvent{
				Skb: 0xffff9, Parent: 0xffff888104e28ae0, Probe: probeSKBClone, Len: 74, L3: 4, L4: 6,
				Sport: 40000, Dport: 80, TcpFlags: 0x18, TcpSeq: 7, TcpAck: 9, Ifname: ifname("veth0"),
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffff9, Parent: 0xffff888104e28ae0, Stage: stageOf(probeSKBClone),
				Len: 74, Ifname: "veth0",
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 80, Proto: 6},
				TCP:   spanner.TCP{Flags: 0x18, Seq: 7, Ack: 9},
			},
		},
		{
			// After DNAT the header says 198.18.2.2:8080; conntrack still knows the
			// address and port the client asked for.
			name: "conntrack_keeps_the_tuple_before_nat",
			raw: bpf.TracepointsEvent{
				Skb: 0xffffa, Probe: probeFuncBase, Kind: 1, L3: 4, L4: 6, Sport: 40000, Dport: 8080,
				Saddr: addr16("198.18.1.1"), Daddr: addr16("198.18.2.2"),
				CtL3: 4, CtL4: 6, CtSport: 40000, CtDport: 80,
				CtSaddr: addr16("198.18.1.1"), CtDaddr: addr16("198.18.1.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffffa, Stage: &spanner.Stage{Name: "ip_rcv_core", Pointer: true}, Kind: spanner.KindEnter,
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.2.2"), SrcPort: 40000, DstPort: 8080, Proto: 6},
				CT:    spanner.Tuple{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.18.1.2"), SrcPort: 40000, DstPort: 80, Proto: 6},
			},
		},
		{
			name: "conntrack_ipv6",
			raw: bpf.TracepointsEvent{
				Skb: 0xffffb, Probe: probeNetDevQueue, CtL3: 6, CtL4: 17, CtSport: 5353, CtDport: 53,
				CtSaddr: addr16("2001:db8::1"), CtDaddr: addr16("2001:db8::2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffffb, Stage: stageOf(probeNetDevQueue),
				CT: spanner.Tuple{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 5353, DstPort: 53, Proto: 17},
			},
		},
		{
			// Conntrack keeps an ICMP echo's id and type where ports would be.
			name: "conntrack_icmp_has_no_ports",
			raw: bpf.TracepointsEvent{
				Skb: 0xffffe, Probe: probeNetDevQueue, L3: 4, L4: 1, CtL3: 4, CtL4: 1, CtSport: 7646, CtDport: 2048,
				Saddr: addr16("198.18.0.2"), Daddr: addr16("198.18.0.1"), CtSaddr: addr16("198.18.0.1"), CtDaddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffffe, Stage: stageOf(probeNetDevQueue),
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: 1},
				CT:    spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Proto: 1},
			},
		},
		{
			// Ports and protocol without a family are leftovers, not a tuple.
			name: "no_conntrack_family_leaves_ct_empty",
			raw:  bpf.TracepointsEvent{Skb: 0xffffc, Probe: probeNetDevQueue, CtL4: 6, CtSport: 1, CtDport: 2, CtSaddr: addr16("198.18.0.1")},
			want: spanner.Event{TimeUnixNano: 1_000_000_000, SKB: 0xffffc, Stage: stageOf(probeNetDevQueue)},
		},
		{
			name: "gso_skb_counts_its_segments",
			raw: bpf.TracepointsEvent{
				Skb: 0xffffd, Probe: probeNetDevQueue, Len: 64834, GsoSegs: 45, L3: 4, L4: 6, Sport: 40000, Dport: 5001,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"), TcpFlags: 0x10,
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xffffd, Stage: stageOf(probeNetDevQueue), Len: 64834, Segments: 45,
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 5001, Proto: 6},
				TCP:   spanner.TCP{Flags: 0x10},
			},
		},
		{
			name: "tcp_data_carries_its_payload_length",
			raw: bpf.TracepointsEvent{
				Skb: 0xfff10, Probe: probeNetDevQueue, Len: 166, L3: 4, L4: 6, Sport: 40000, Dport: 80,
				TcpFlags: 0x18, TcpSeq: 1001, TcpAck: 5001, TcpDataLen: 100,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xfff10, Stage: stageOf(probeNetDevQueue), Len: 166,
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 80, Proto: 6},
				TCP:   spanner.TCP{Flags: 0x18, Seq: 1001, Ack: 5001, DataLen: 100},
			},
		},
		{
			// A retransmitted data segment as the kernel names it: the socket's tuple, the
			// control block's seq, flags and payload, the socket's namespace; no device,
			// no ack (the write-queue skb has no header), and a Retransmit stage.
			name: "tcp_retransmit_skb_names_the_segment_from_socket_and_control_block",
			raw: bpf.TracepointsEvent{
				TsNs: 7, Skb: 0xfff20, Probe: probeTCPRetransmitSKB, Cpu: 1, Netns: 4026532001, Len: 100,
				L3: 4, L4: 6, Sport: 40000, Dport: 80, TcpFlags: 0x18, TcpSeq: 1001, TcpDataLen: 100,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_007, SKB: 0xfff20, Stage: stageOf(probeTCPRetransmitSKB), CPU: 1, Netns: 4026532001, Len: 100,
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 80, Proto: 6},
				TCP:   spanner.TCP{Flags: 0x18, Seq: 1001, DataLen: 100},
			},
		},
		{
			// The server's port unreachable goes back to the client and quotes the
			// client's datagram, source first.
			name: "icmp_port_unreachable_quotes_the_udp_datagram",
			raw: bpf.TracepointsEvent{
				Skb: 0xfff11, Probe: probeNetDevQueue, Len: 70, L3: 4, L4: 1, IcmpType: 3, IcmpCode: 3,
				Saddr: addr16("198.18.0.2"), Daddr: addr16("198.18.0.1"),
				QuotedL3: 4, QuotedL4: 17, QuotedSport: 40000, QuotedDport: 9,
				QuotedSaddr: addr16("198.18.0.1"), QuotedDaddr: addr16("198.18.0.2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xfff11, Stage: stageOf(probeNetDevQueue), Len: 70,
				Tuple:  spanner.Tuple{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: 1},
				ICMP:   spanner.ICMP{Type: 3, Code: 3},
				Quoted: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 9, Proto: 17},
			},
		},
		{
			name: "icmpv6_packet_too_big_quotes_the_tcp_segment",
			raw: bpf.TracepointsEvent{
				Skb: 0xfff12, Probe: probeNetifReceiveSKB, Len: 1280, L3: 6, L4: 58, IcmpType: 2,
				Saddr: addr16("fd00::fe"), Daddr: addr16("fd00::1"),
				QuotedL3: 6, QuotedL4: 6, QuotedSport: 43210, QuotedDport: 443,
				QuotedSaddr: addr16("fd00::1"), QuotedDaddr: addr16("fd00:1::2"),
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xfff12, Stage: stageOf(probeNetifReceiveSKB), Len: 1280,
				Tuple:  spanner.Tuple{Src: netip.MustParseAddr("fd00::fe"), Dst: netip.MustParseAddr("fd00::1"), Proto: 58},
				ICMP:   spanner.ICMP{Type: 2},
				Quoted: spanner.Tuple{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00:1::2"), SrcPort: 43210, DstPort: 443, Proto: 6},
			},
		},
		{
			// An echo has no quoted header; what the probe left there is not read.
			name: "icmp_echo_has_type_and_code_and_no_quoted_header",
			raw: bpf.TracepointsEvent{
				Skb: 0xfff13, Probe: probeNetDevQueue, L3: 4, L4: 1, IcmpType: 8,
				Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"), QuotedL4: 17, TcpDataLen: 9,
			},
			want: spanner.Event{
				TimeUnixNano: 1_000_000_000, SKB: 0xfff13, Stage: stageOf(probeNetDevQueue),
				Tuple: spanner.Tuple{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), Proto: 1},
				ICMP:  spanner.ICMP{Type: 8},
			},
		},
		{
			name: "void_function_exit_has_no_return_value",
			raw:  bpf.TracepointsEvent{Skb: 0xffff8, Probe: probeFuncBase + 3, Kind: 2, Retval: 42},
			want: spanner.Event{TimeUnixNano: 1_000_000_000, SKB: 0xffff8, Stage: &spanner.Stage{Name: "kfree_skb_list", Void: true}, Kind: spanner.KindExit},
		},
	}
	d := testDecoder(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := fixture(t, tc.name, &tc.raw)
			var got spanner.Event
			if err := d.Decode(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got.Stage == nil || *got.Stage != *tc.want.Stage {
				t.Fatalf("stage = %+v, want %+v", got.Stage, tc.want.Stage)
			}
			got.Stage, tc.want.Stage = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// fixture writes ev as the kernel would (the generated struct's layout, little endian),
// and checks the bytes against testdata/NAME.bin: a change to the C layout shows here.
func fixture(t *testing.T, name string, ev *bpf.TracepointsEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, ev); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".bin")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("%s no longer matches the generated event layout (run go test -update if the change is intended)", path)
	}
	return want
}

func TestDecodeRejectsShortAndUnknownRecords(t *testing.T) {
	d := testDecoder(t)
	var ev spanner.Event
	if err := d.Decode(make([]byte, EventSize-1), &ev); err == nil {
		t.Error("a short record decoded without error")
	}
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, &bpf.TracepointsEvent{Probe: 40})
	if err := d.Decode(buf.Bytes(), &ev); err == nil {
		t.Error("a record from an unknown probe decoded without error")
	}
}

func TestDecodeDoesNotAllocateOnceCachesAreWarm(t *testing.T) {
	d := testDecoder(t)
	raw := fixture(t, "tcp_syn_on_receive", &bpf.TracepointsEvent{
		TsNs: 5, Skb: 0xffff888104e28ae0, Probe: probeNetifReceiveSKB, Cpu: 1,
		Netns: 4026531840, Ifindex: 7, Ifname: ifname("veth0"), Len: 60, Mark: 0x10,
		L3: 4, L4: 6, Sport: 40000, Dport: 80, TcpFlags: 0x02, TcpSeq: 1000,
		Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
	})
	var ev spanner.Event
	_ = d.Decode(raw, &ev)
	if n := testing.AllocsPerRun(100, func() { _ = d.Decode(raw, &ev) }); n != 0 {
		t.Errorf("Decode allocates %.1f times per record, want 0", n)
	}
}

func TestDecodeTrailDoesNotAllocateOnceCachesAreWarm(t *testing.T) {
	d := testDecoder(t)
	raw := trailedDrop(t, bpf.TracepointsEvent{Skb: 1, Probe: probeKfreeSKB, L3: 4, L4: 17},
		bpf.TracepointsEvent{Skb: 1, Probe: probeNetifReceiveSKB, L3: 4, L4: 17, Ifname: ifname("veth0")})
	var ev spanner.Event
	// The record must decode whole: an early error would allocate nothing either.
	if err := d.DecodeTrail(raw, 0, &ev); err != nil || ev.Ifname != "veth0" {
		t.Fatalf("trail record decoded as interface %q, err %v; want veth0's receive", ev.Ifname, err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = d.DecodeTrail(raw, 0, &ev) }); n != 0 {
		t.Errorf("DecodeTrail allocates %.1f times per trail record, want 0", n)
	}
}

func FuzzDecodeNeverPanics(f *testing.F) {
	for _, name := range []string{"tcp_syn_on_receive", "nft_drop_with_module_location", "udp_ipv6",
		"clone_names_its_parent", "conntrack_keeps_the_tuple_before_nat", "conntrack_ipv6", "gso_skb_counts_its_segments",
		"icmp_port_unreachable_quotes_the_udp_datagram", "icmpv6_packet_too_big_quotes_the_tcp_segment"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name+".bin")); err == nil {
			f.Add(b)
		}
	}
	d := testDecoder(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev spanner.Event
		_ = d.Decode(raw, &ev)
	})
}

func BenchmarkDecode(b *testing.B) {
	d := testDecoder(b)
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, &bpf.TracepointsEvent{
		Skb: 1, Probe: probeNetifReceiveSKB, L3: 4, L4: 6, Ifname: ifname("veth0"),
		Saddr: addr16("198.18.0.1"), Daddr: addr16("198.18.0.2"),
	})
	raw := buf.Bytes()
	var ev spanner.Event
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Decode(raw, &ev)
	}
}

// eventRecorder keeps a copy of every event handled, in order.
type eventRecorder struct{ events []spanner.Event }

func (r *eventRecorder) HandleEvent(ev *spanner.Event) { r.events = append(r.events, *ev) }
func (r *eventRecorder) Tick(int64)                    {}

// trailedDrop writes a drops-only drop as the kernel sends it: the drop's event, then
// the head of each trail event, newest first.
func trailedDrop(t *testing.T, drop bpf.TracepointsEvent, trail ...bpf.TracepointsEvent) []byte {
	t.Helper()
	var b bytes.Buffer
	drop.Trail = uint8(len(trail))
	if err := binary.Write(&b, binary.LittleEndian, &drop); err != nil {
		t.Fatal(err)
	}
	for _, ev := range trail {
		var e bytes.Buffer
		if err := binary.Write(&e, binary.LittleEndian, &ev); err != nil {
			t.Fatal(err)
		}
		b.Write(e.Bytes()[:trailRecordSize])
	}
	return b.Bytes()
}

func TestDropRecordHandsOverItsSkbsEarlierEventsOldestFirstThenTheDrop(t *testing.T) {
	const skb = 0xffff888102ac3e00
	tuple := func(ev bpf.TracepointsEvent) bpf.TracepointsEvent {
		ev.Skb, ev.L3, ev.L4, ev.Sport, ev.Dport = skb, 4, 17, 5000, 5299
		ev.Saddr, ev.Daddr = addr16("198.18.0.1"), addr16("198.18.0.2")
		return ev
	}
	drop := tuple(bpf.TracepointsEvent{TsNs: 30, Probe: probeKfreeSKB, Ifindex: 3, Netns: 20, Ifname: ifname("psvb"),
		DropReason: 12, Location: 0xffffffffc0a011f3, Len: 92, GsoSegs: 2,
		CtL3: 4, CtL4: 17, CtSaddr: addr16("198.18.0.1"), CtDaddr: addr16("198.18.0.9"), CtSport: 5000, CtDport: 5299})
	received := tuple(bpf.TracepointsEvent{TsNs: 20, Probe: probeNetifReceiveSKB, Ifindex: 3, Netns: 20, Ifname: ifname("psvb"), Len: 92})
	queued := tuple(bpf.TracepointsEvent{TsNs: 10, Probe: probeNetDevQueue, Ifindex: 2, Netns: 10, Ifname: ifname("psva"), Len: 92})
	copied := bpf.TracepointsEvent{TsNs: 25, Skb: skb, Probe: probeSKBCopyDatagramIovec, Retval: 92}
	raw := trailedDrop(t, drop, copied, received, queued)

	rec := &eventRecorder{}
	c := newRingCollector(t, &fakeRing{})
	c.decoder = testDecoder(t)
	c.handle(raw, &spanner.Event{}, rec)

	if len(rec.events) != 4 {
		t.Fatalf("handled %d events, want the queueing, the receive, the copy and the drop", len(rec.events))
	}
	want := []struct {
		stage   string
		ts      int64
		ifname  string
		ct, drp bool
	}{
		{"net:net_dev_queue", 1_000_000_010, "psva", false, false},
		{"net:netif_receive_skb", 1_000_000_020, "psvb", false, false},
		{"skb:skb_copy_datagram_iovec", 1_000_000_025, "", false, false},
		{"skb:kfree_skb", 1_000_000_030, "psvb", true, true},
	}
	for i, w := range want {
		ev := rec.events[i]
		if ev.Stage.Name != w.stage || ev.TimeUnixNano != w.ts || ev.Ifname != w.ifname || ev.CT.Valid() != w.ct || ev.Drop != w.drp {
			t.Errorf("event %d: %s at %d on %s, conntrack %v, drop %v; want %+v", i, ev.Stage.Name, ev.TimeUnixNano, ev.Ifname, ev.CT.Valid(), ev.Drop, w)
		}
		if ev.SKB != skb || ev.Segments != 2 || (w.stage != "skb:skb_copy_datagram_iovec" && ev.Tuple.DstPort != 5299) {
			t.Errorf("event %d: skb %#x, tuple %+v, segments %d: the trail event lost its own or its drop's fields", i, ev.SKB, ev.Tuple, ev.Segments)
		}
	}
	if got := rec.events[2].Netns; got != 20 {
		t.Errorf("the copy's namespace = %d, want the receive's (20): a copy keeps none of its own", got)
	}
	if n := c.eventsRead.Load(); n != 4 {
		t.Errorf("events read = %d, want 4 (one record of four events)", n)
	}
}

func TestDropRecordShorterThanItsTrailIsRefusedWhole(t *testing.T) {
	raw := trailedDrop(t, bpf.TracepointsEvent{Probe: probeKfreeSKB}, bpf.TracepointsEvent{Probe: probeNetDevQueue})
	rec := &eventRecorder{}
	c := newRingCollector(t, &fakeRing{})
	c.handle(raw[:len(raw)-1], &spanner.Event{}, rec)
	if len(rec.events) != 0 || c.decodeErrors.Load() != 1 {
		t.Errorf("a truncated drop record: %d events handled, %d decode errors; want none handled, one error", len(rec.events), c.decodeErrors.Load())
	}
}
