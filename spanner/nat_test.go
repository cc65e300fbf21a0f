package spanner

import (
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

func TestFlowKeyComesFromConntracksOriginalTuple(t *testing.T) {
	h := newHarness()
	// First seen after both translations, with conntrack's entry; then a packet of the
	// same connection as the client sent it, on a hook without conntrack.
	out := onServer(0xffff888100050000, natMasqueraded, TCP{Flags: tcpACK, Seq: 1001, Ack: 9001})
	h.ev(0, out, stQueue, ct(natClient))
	h.ev(2*us, out, stConsume, ct(natClient))
	in := onServer(0xffff888100050100, natClient, TCP{Flags: tcpACK | 0x08, Seq: 1001, Ack: 9001})
	h.ev(ms, in, stRecv)
	h.ev(ms+2*us, in, stConsume)
	h.flush(sec)

	spans := h.sink.spans()
	for _, sp := range spans {
		if sp.TraceID != spans[0].TraceID {
			t.Fatalf("%s is in another trace", sp.Name)
		}
	}
	root := h.sink.roots()[0]
	for key, want := range map[string]string{"src": "198.18.0.1", "dst": "198.18.1.2"} {
		k := attrkey.SourceAddress
		if key == "dst" {
			k = attrkey.DestinationAddress
		}
		if v, _ := attr(root, k); v.AsString() != want {
			t.Errorf("root %s %q, want conntrack's original %q", key, v.AsString(), want)
		}
	}
	if v, _ := attr(root, attrkey.SourcePort); v.AsInt64() != int64(natClient.SrcPort) {
		t.Errorf("root source.port %d, want the client's %d", v.AsInt64(), natClient.SrcPort)
	}
	if st := h.s.Stats(); st.FlowsOpened != 1 || st.AliasesLearned != 1 {
		t.Errorf("stats %+v: want one flow, the masqueraded tuple learned", st)
	}
}

// natConnection plays a client packet from port cport through masquerade to port
// mport, teaching one alias, then the server's reply seen only with the translated
// tuple. It returns the two packets' trace IDs.
func natConnection(h *harness, at time.Duration, skb uint64, cport, mport uint16) (out, reply TraceID) {
	client := natDNATed
	client.SrcPort = cport
	masq := natMasqueraded
	masq.SrcPort = mport
	p := onServer(skb, client, TCP{Flags: tcpACK, Seq: 1001, Ack: 9001})
	h.ev(at, p, stNF, enter, ct(client))
	h.ev(at+2*us, p, stNF, exit(1), nf(4, 2, 1), ct(client), seenAs(masq))
	h.ev(at+3*us, p, stConsume, ct(client), seenAs(masq))
	r := onServer(skb+0x100, reverse(masq), TCP{Flags: tcpACK, Seq: 9001, Ack: 1101})
	h.ev(at+ms, r, stRecv)
	h.ev(at+ms+2*us, r, stConsume)
	g := h.sink.groups
	return g[len(g)-2][0].TraceID, g[len(g)-1][0].TraceID
}

func TestAliasTableEvictsTheLeastRecentlyUsedAndCounts(t *testing.T) {
	h := newHarness(WithNATAliases(1))
	out1, reply1 := natConnection(h, 0, 0xffff888100060000, 50000, 60000)
	if out1 != reply1 {
		t.Fatal("with room for its alias, the reply left the connection's trace")
	}
	// A second connection's alias takes the only slot; the first's reply is lost to it.
	out2, reply2 := natConnection(h, 10*ms, 0xffff888100060200, 50001, 60001)
	if out2 != reply2 {
		t.Error("the newest alias was not kept")
	}
	firstMasq := natMasqueraded
	firstMasq.SrcPort = 60000
	late := onServer(0xffff888100060400, reverse(firstMasq), TCP{Flags: tcpACK, Seq: 9001, Ack: 1101})
	h.ev(20*ms, late, stRecv)
	h.ev(20*ms+2*us, late, stConsume)
	if got := h.sink.groups[len(h.sink.groups)-1][0].TraceID; got == out1 {
		t.Error("a reply joined the connection whose alias was evicted")
	}
	if st := h.s.Stats(); st.AliasesLearned != 2 || st.AliasesEvicted != 1 || st.FlowsOpened != 3 {
		t.Errorf("stats %+v: want 2 learned, 1 evicted, a third flow for the orphaned reply", st)
	}
}

func TestAliasesGoWithTheirFlow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []Option
		forget func(h *harness)
	}{
		{"forgotten after idle", nil, func(h *harness) {
			h.tick(31 * sec) // closes idle
			h.tick(62 * sec) // forgets
		}},
		{"evicted", []Option{WithLimits(1, 100, 64)}, func(h *harness) {
			h.udpPacket(31*sec, 0xffff888100070800, udpClient)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(tc.opts...)
			natConnection(h, 0, 0xffff888100070000, 50000, 60000)
			if len(h.s.aliases.index) != 1 {
				t.Fatalf("%d aliases, want the masqueraded tuple", len(h.s.aliases.index))
			}
			tc.forget(h)
			if n := len(h.s.aliases.index); n != 0 {
				t.Errorf("%d aliases left after their flow went", n)
			}
			if st := h.s.Stats(); st.AliasesEvicted != 0 {
				t.Errorf("AliasesEvicted = %d: aliases going with their flow are not evictions", st.AliasesEvicted)
			}
		})
	}
}

func TestAliasMovesToTheConnectionNATGaveItsTupleTo(t *testing.T) {
	h := newHarness()
	natConnection(h, 0, 0xffff888100080000, 50000, 60000)
	// The first connection is still remembered when NAT reuses its port for another.
	out, reply := natConnection(h, 10*ms, 0xffff888100080200, 50001, 60000)
	if out != reply {
		t.Error("the reply did not join the connection its translated tuple now belongs to")
	}
	if st := h.s.Stats(); st.AliasesLearned != 1 || len(h.s.aliases.index) != 1 {
		t.Errorf("stats %+v, %d aliases: want the one alias moved", st, len(h.s.aliases.index))
	}
}

func TestICMPErrorJoinsItsConnectionWithoutBecomingAnAlias(t *testing.T) {
	h := newHarness()
	h.udpPacket(0, 0xffff888100090000, udpClient)
	// Port unreachable for that datagram: conntrack relates it to the UDP connection.
	unreach := Tuple{Src: udpClient.Dst, Dst: udpClient.Src, Proto: protoICMP}
	p := onServer(0xffff888100090100, unreach, TCP{})
	h.ev(ms, p, stQueue, ct(udpClient))
	h.ev(ms+2*us, p, stConsume, ct(udpClient))
	// An unrelated ping between the same hosts is a flow of its own.
	h.udpPacket(2*ms, 0xffff888100090200, icmpEcho)
	h.flush(sec)
	g := h.sink.groups
	if g[0][0].TraceID != g[1][0].TraceID {
		t.Error("the ICMP error left its connection's trace")
	}
	if g[2][0].TraceID == g[0][0].TraceID {
		t.Error("an unrelated ping joined the connection through its error's tuple")
	}
	if st := h.s.Stats(); st.AliasesLearned != 0 || st.FlowsOpened != 2 {
		t.Errorf("stats %+v: want no alias and two flows", st)
	}
}
