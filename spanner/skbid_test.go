package spanner

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// exportedAddresses runs two packets at one address, freed and reused, and one at
// another, and returns what their packet spans carry as pktspan.skb.address.
func exportedAddresses(opts ...Option) (attrs []string, skbs []uint64) {
	h := randomHarness(opts...)
	h.udpPacket(0, 0xffff888100120000, udpClient)
	h.udpPacket(ms, 0xffff888100120000, udpClient)
	h.udpPacket(2*ms, 0xffff888100120100, udpClient)
	for _, g := range h.sink.groups {
		if g[0].Name == packetSpanName {
			v, _ := attr(g[0], attrkey.SKBAddress)
			attrs = append(attrs, v.AsString())
			skbs = append(skbs, g[0].SKB)
		}
	}
	return attrs, skbs
}

func TestSKBAddressesLeaveAsOpaqueIDsStableWithinARun(t *testing.T) {
	ids, skbs := exportedAddresses()
	if len(ids) != 3 {
		t.Fatalf("exported %d packet spans, want 3", len(ids))
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "skb-") || len(id) != len("skb-")+16 || strings.Contains(id, "ffff8881") {
			t.Errorf("pktspan.skb.address %q is not an opaque ID", id)
		}
	}
	if ids[0] != ids[1] || ids[0] == ids[2] {
		t.Errorf("IDs %v: want one per address, the same for the same address", ids)
	}
	if skbs[0] != 0xffff888100120000 || skbs[2] != 0xffff888100120100 {
		t.Errorf("Span.SKB %#x: want the real addresses for the console", skbs)
	}
	other, _ := exportedAddresses()
	if other[0] == ids[0] {
		t.Errorf("two runs gave the address the same ID %q: the key is not drawn per run", ids[0])
	}
}

func TestSKBAddressesLeaveAsTheyAreWhenExportedOnPurpose(t *testing.T) {
	ids, _ := exportedAddresses(WithSKBAddressExported())
	want := []string{"0xffff888100120000", "0xffff888100120000", "0xffff888100120100"}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("pktspan.skb.address %v, want %v", ids, want)
	}
}
