package spanner

import (
	"net/netip"
	"testing"

	"github.com/pktspan/pktspan/internal/skbidentity"
)

// The skb-reuse decision is made twice: in the kernel (same_skb, bpf/headers/identity.h)
// and here. bpf's TestSameSKBInTheProbesAnswersTheSharedFixtures runs the C one over the
// same cases.
func TestIsNewSKBAgreesWithTheKernelFixtures(t *testing.T) {
	cases, err := skbidentity.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		p := &packet{delivered: c.Delivered, queued: fixtureDevice(c.Queued), received: fixtureDevice(c.Received)}
		p.tuple, p.tcp = fixtureHeaders(c.Tracked)
		st := &Stage{Free: c.Mode == skbidentity.ModeFree, Deliver: c.Mode == skbidentity.ModeDeliver, Pass: fixturePasses[c.Hook]}
		ev := &Event{Kind: KindInstant, Stage: st, Ifindex: c.Device.Ifindex, Netns: c.Device.Netns}
		ev.Tuple, ev.TCP = fixtureHeaders(c.Seen)
		if got := !isNewSKB(p, ev); got != c.Same {
			t.Errorf("%s: isNewSKB says same=%v, the fixture same=%v", c.Name, got, c.Same)
		}
	}
}

// fixtureHeaders builds what the decoder makes of h: no tuple when no IP header was
// read, TCP fields only for TCP.
func fixtureHeaders(h skbidentity.Headers) (Tuple, TCP) {
	var tu Tuple
	switch h.L3 {
	case 4:
		tu.Src, tu.Dst = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	case 6:
		tu.Src, tu.Dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	default:
		return Tuple{}, TCP{}
	}
	tu.Proto = h.L4
	if tu.Proto != protoTCP {
		return tu, TCP{}
	}
	return tu, TCP{Seq: h.Seq, Ack: h.Ack, Flags: h.Flags}
}

var fixturePasses = map[skbidentity.Hook]DevicePass{
	skbidentity.HookOther:   PassNone,
	skbidentity.HookQueue:   PassQueue,
	skbidentity.HookReceive: PassReceive,
}

func fixtureDevice(d skbidentity.Device) device { return device{d.Ifindex, d.Netns} }
