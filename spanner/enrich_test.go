package spanner

import (
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// fakeNamer answers from slices built once, as a namer refreshed in the background
// holds them.
type fakeNamer map[uint32][]attribute.KeyValue

func (n fakeNamer) NetnsAttrs(inode uint32, _ int64) []attribute.KeyValue { return n[inode] }

var (
	clientOwner = []attribute.KeyValue{
		attrkey.ContainerID.String("5d0c1f3b9a7e"),
		attrkey.ContainerName.String("client"),
		attrkey.ContainerRuntimeName.String("containerd"),
		attrkey.K8sPodName.String("client-6f7c9"),
		attrkey.K8sPodUID.String("0b1e2f3a-4c5d-6e7f-8091-a2b3c4d5e6f7"),
		attrkey.K8sNamespaceName.String("shop"),
		attrkey.NetnsName.String("cni-1c2d3e"),
	}
	serverOwner = []attribute.KeyValue{
		attrkey.ContainerID.String("9e8d7c6b5a4f"),
		attrkey.ContainerName.String("server"),
		attrkey.ContainerRuntimeName.String("docker"),
		attrkey.NetnsName.String("server"),
	}
	testNamer = fakeNamer{nsClient: clientOwner, nsServer: serverOwner}
)

// ownerKeys are the keys a namer may add.
var ownerKeys = []attribute.Key{
	attrkey.ContainerID, attrkey.ContainerName, attrkey.ContainerRuntimeName,
	attrkey.K8sPodName, attrkey.K8sPodUID, attrkey.K8sNamespaceName, attrkey.NetnsName,
}

// ownerAttrs returns the owner attributes of sp, and whether they directly follow its
// pktspan.netns.
func ownerAttrs(sp Span) (owner []attribute.KeyValue, afterNetns bool) {
	at := -1
	for i, kv := range sp.Attrs {
		if slices.Contains(ownerKeys, kv.Key) {
			if at < 0 {
				at = i
			}
			owner = append(owner, kv)
		}
	}
	return owner, at > 0 && sp.Attrs[at-1].Key == attrkey.Netns
}

func TestNetnsNamerNamesThePacketAndEachStageWhereTheNetnsChanges(t *testing.T) {
	// A SYN from the client's namespace across the veth pair into the server's, where
	// it moves to another interface without changing namespace.
	send := func(h *harness) {
		syn := onClient(0xffff888100000100, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
		h.ev(0, syn, stQueue)
		h.ev(2*us, syn, stXmit)
		h.ev(10*us, syn, stRecv, dev(3, "veth1", nsServer))
		h.ev(12*us, syn, stIPRcv, dev(3, "veth1", nsServer))
		h.ev(14*us, syn, stLocal, dev(1, "lo", nsServer))
		h.ev(15*us, syn, stTCPRcv, dev(1, "lo", nsServer))
		h.ev(20*us, syn, stConsume, dev(1, "lo", nsServer))
		h.flush(sec)
	}
	named := map[string][]attribute.KeyValue{
		packetSpanName:          clientOwner,
		"net:netif_receive_skb": serverOwner,
	}
	for _, tc := range []struct {
		name string
		opts []Option
		want map[string][]attribute.KeyValue // by span name; every other span has none
	}{
		{"default namer adds nothing", nil, nil},
		{"nil namer keeps the default", []Option{WithNetnsNamer(nil)}, nil},
		{"namer's attributes follow pktspan.netns", []Option{WithNetnsNamer(testNamer)}, named},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(tc.opts...)
			send(h)
			spans := h.sink.spans()
			if len(spans) != 1+1+7 {
				t.Fatalf("got %d spans, want the root, the packet and 7 stages", len(spans))
			}
			for _, sp := range spans {
				got, afterNetns := ownerAttrs(sp)
				want := tc.want[sp.Name]
				if !slices.Equal(got, want) {
					t.Errorf("%s: owner attributes %v, want %v", sp.Name, got, want)
				}
				if len(got) > 0 && !afterNetns {
					t.Errorf("%s: owner attributes do not directly follow pktspan.netns: %v", sp.Name, sp.Attrs)
				}
			}
		})
	}
}

// askedNamer records what it was asked.
type askedNamer struct{ asked []string }

func (n *askedNamer) NetnsAttrs(inode uint32, at int64) []attribute.KeyValue {
	n.asked = append(n.asked, fmt.Sprintf("%d@%d", inode, at-t0))
	return nil
}

// A namespace's inode names different owners over time (the kernel reuses it): the
// namer is told when the skb was in it, the packet's first sighting for the packet
// span and the stage's start where a stage entered another namespace.
func TestNetnsNamerIsToldWhenTheSkbWasInTheNamespace(t *testing.T) {
	namer := &askedNamer{}
	h := newHarness(WithNetnsNamer(namer))
	syn := onClient(0xffff888100000100, tcpClient, TCP{Flags: tcpSYN, Seq: 1000})
	h.ev(5*us, syn, stQueue)
	h.ev(7*us, syn, stXmit)
	h.ev(10*us, syn, stRecv, dev(3, "veth1", nsServer))
	h.ev(20*us, syn, stConsume, dev(3, "veth1", nsServer))
	h.flush(sec)
	want := []string{fmt.Sprintf("%d@%d", nsClient, 5*us), fmt.Sprintf("%d@%d", nsServer, 10*us)}
	if !slices.Equal(namer.asked, want) {
		t.Errorf("the namer was asked %v, want %v (inode@ns after t0)", namer.asked, want)
	}
}

func TestNetnsNamerAddsNoAllocationPerPacket(t *testing.T) {
	sink := &discardSink{}
	s := New(sink, WithNetnsNamer(testNamer), WithLogger(discardLog))
	// One packet after another at the same address, from the client's namespace into the
	// server's, so that every export asks the namer twice and finds all else cached.
	hops := []struct {
		st    *Stage
		ns    uint32
		iface string
	}{
		{stQueue, nsClient, "veth0"},
		{stXmit, nsClient, "veth0"},
		{stRecv, nsServer, "veth1"},
		{stConsume, nsServer, "veth1"},
	}
	var ev Event
	now := t0
	send := func() {
		for _, hop := range hops {
			now += int64(2 * us)
			ev = Event{
				TimeUnixNano: now, SKB: 0xffff888100000100, Stage: hop.st, Netns: hop.ns, Ifname: hop.iface,
				Len: 60, Tuple: tcpClient, TCP: TCP{Flags: tcpACK, Seq: 1000, Ack: 5000},
			}
			s.HandleEvent(&ev)
		}
	}
	for range 1000 {
		send()
	}
	before := sink.spans
	if allocs := testing.AllocsPerRun(1000, send); allocs != 0 {
		t.Errorf("%.2f allocations per packet, want none", allocs)
	}
	if sink.spans == before {
		t.Fatal("no span exported")
	}
}
