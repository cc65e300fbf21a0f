package bpfstats

import (
	"maps"
	"testing"

	"github.com/cilium/ebpf"
)

// testdata/fdinfo is a pktspan process's fdinfo (tp_btf links, programs, a map, a file,
// an eventpoll), with one fentry-style tracing link added by hand.
func TestLinkedProgramsAreTheLinksProgramsByTracepoint(t *testing.T) {
	got, err := linkedPrograms("testdata/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[ebpf.ProgramID]string{
		188: "netif_receive_skb", 190: "net_dev_queue", 192: "net_dev_xmit", 186: "kfree_skb",
		189: "consume_skb", 187: "skb_copy_datagram_iovec", 191: "tcp_retransmit_skb",
		195: "", // a tracing link names no tracepoint: labelled by its program's name
	}
	if !maps.Equal(got, want) {
		t.Errorf("linked programs\n got %v\nwant %v", got, want)
	}
}

func TestParseFdinfoRejectsABadProgramID(t *testing.T) {
	if _, _, err := parseFdinfo([]byte("link_id:\t3\nprog_id:\tx\n")); err == nil {
		t.Error("prog_id x parsed")
	}
}

func TestCallStatsPerCallAndTotal(t *testing.T) {
	w := Window{"kfree_skb": {Runtime: 600, Count: 2}, "consume_skb": {Runtime: 300, Count: 4}, "tcp_retransmit_skb": {}}
	if got := w.Total(); got != (Calls{900, 6}) || got.NsPerCall() != 150 {
		t.Errorf("total %v, %v ns/call", got, got.NsPerCall())
	}
	if got := w["tcp_retransmit_skb"].NsPerCall(); got != 0 {
		t.Errorf("a hook never called costs %v ns/call", got)
	}
}

// LoadReading takes the program for each reading hook by name: each must be there, made
// for its hook, and no program may be left without a hook.
func TestReadingProgramsAreOnePerReadingHook(t *testing.T) {
	spec, err := loadReference()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range ReadingHooks {
		p := spec.Programs["read_"+h]
		if p == nil {
			t.Errorf("no program read_%s", h)
			continue
		}
		if p.SectionName != "tp_btf/"+h {
			t.Errorf("read_%s is in section %s, want tp_btf/%s", h, p.SectionName, h)
		}
	}
	if len(spec.Programs) != len(ReadingHooks) {
		t.Errorf("%d reference programs for %d reading hooks", len(spec.Programs), len(ReadingHooks))
	}
}
