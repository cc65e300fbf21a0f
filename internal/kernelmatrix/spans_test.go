package kernelmatrix

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/sink"
)

var (
	client = netip.MustParseAddr("198.18.0.1")
	server = netip.MustParseAddr("198.18.0.2")
	stages = map[string]*spanner.Stage{}
)

func stage(name string) *spanner.Stage {
	if s, ok := stages[name]; ok {
		return s
	}
	s := &spanner.Stage{Name: name, Free: name == "skb:kfree_skb" || name == "skb:consume_skb"}
	stages[name] = s
	return s
}

// recorder feeds the real spanner and JSON sink, as pktspan --output json does.
type recorder struct {
	sp  *spanner.Spanner
	out bytes.Buffer
	t   int64
}

func newRecorder() *recorder {
	r := &recorder{t: 1_700_000_000_000_000_000}
	r.sp = spanner.New(sink.NewJSON(&r.out))
	return r
}

func (r *recorder) ev(skb uint64, port uint16, kind spanner.Kind, name string, mod func(*spanner.Event)) {
	r.t += 1000
	ev := spanner.Event{
		TimeUnixNano: r.t, SKB: skb, Stage: stage(name), Kind: kind,
		Tuple: spanner.Tuple{Src: client, Dst: server, SrcPort: 40000, DstPort: port, Proto: 6},
		TCP:   spanner.TCP{Flags: 0x02, Seq: uint32(skb)},
	}
	if mod != nil {
		mod(&ev)
	}
	r.sp.HandleEvent(&ev)
}

func verdict(v int32) func(*spanner.Event) {
	return func(ev *spanner.Event) {
		ev.Netfilter = spanner.Netfilter{Hook: 1, PF: 2, Verdict: v, Valid: true}
	}
}

// journey records a delivered packet, an nft drop and a UDP NO_SOCKET drop; broken
// names what to get wrong.
func journey(broken string) *Spans {
	r := newRecorder()
	nfVerdict := int32(1)
	if broken == "verdict" {
		nfVerdict = 0
	}
	r.ev(1, ReplyPort, spanner.KindEnter, "ip_rcv_core", nil)
	r.ev(1, ReplyPort, spanner.KindExit, "ip_rcv_core", nil)
	r.ev(1, ReplyPort, spanner.KindEnter, "ip_local_deliver", nil)
	r.ev(1, ReplyPort, spanner.KindEnter, "nf_hook_slow", nil)
	r.ev(1, ReplyPort, spanner.KindExit, "nf_hook_slow", verdict(nfVerdict))
	if broken == "nesting" {
		r.ev(1, ReplyPort, spanner.KindExit, "ip_local_deliver", nil)
	}
	r.ev(1, ReplyPort, spanner.KindEnter, "tcp_v4_rcv", nil)
	r.ev(1, ReplyPort, spanner.KindExit, "tcp_v4_rcv", nil)
	if broken != "nesting" {
		r.ev(1, ReplyPort, spanner.KindExit, "ip_local_deliver", nil)
	}
	r.ev(1, ReplyPort, spanner.KindInstant, "skb:consume_skb", nil)

	r.ev(2, DroppedPort, spanner.KindEnter, "nf_hook_slow", nil)
	r.ev(2, DroppedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
		ev.Drop, ev.DropReason, ev.Location = true, "NETFILTER_DROP", "nft_do_chain+0x46f"
	})
	r.ev(2, DroppedPort, spanner.KindExit, "nf_hook_slow", verdict(0))

	if broken != "udp" {
		r.ev(3, ClosedPort, spanner.KindInstant, "skb:kfree_skb", func(ev *spanner.Event) {
			ev.Tuple.Proto, ev.TCP = 17, spanner.TCP{}
			ev.Drop, ev.DropReason = true, "NO_SOCKET"
		})
	}
	r.sp.Flush(r.t + 1)
	s, err := ReadSpans(&r.out)
	if err != nil {
		panic(err)
	}
	return s
}

func TestCheckFunctionSpansAcceptsTheKernelsCallTree(t *testing.T) {
	if errs := CheckFunctionSpans(journey(""), ReplyPort, DroppedPort, ClosedPort); len(errs) > 0 {
		t.Errorf("a correct run was rejected: %v", errs)
	}
}

func TestCheckFunctionSpansRejectsWhatIssue3Forbids(t *testing.T) {
	cases := map[string]string{
		"verdict": "verdict \"DROP\", want ACCEPT",
		"nesting": "tcp_v4_rcv's parent is packet, want the ip_local_deliver stage",
		"udp":     "NO_SOCKET",
	}
	for broken, want := range cases {
		errs := CheckFunctionSpans(journey(broken), ReplyPort, DroppedPort, ClosedPort)
		found := false
		for _, err := range errs {
			found = found || strings.Contains(err.Error(), want)
		}
		if !found {
			t.Errorf("%s: want an error containing %q, got %v", broken, want, errs)
		}
	}
}
