package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// The lab's ports: what its traffic exercises and the tests look for.
const (
	ReplyPort   = 8080 // a TCP server in the server namespace answers
	DroppedPort = 81   // an nft rule in the server namespace drops TCP
	ClosedPort  = 9999 // no UDP socket listens: NO_SOCKET
	// DataDropPort accepts connections, but an nft rule drops segments longer than
	// DataDropLen bytes: a flow whose drop comes after packets that went through.
	DataDropPort = 82
	DataDropLen  = 200
)

// The nft table and base chain in the server namespace whose rules drop the lab's
// DroppedPort and DataDropPort traffic.
const (
	LabNftTable = "pktspan_lab"
	LabNftChain = "input"
)

// The lab's two hosts.
var (
	LabClient = netip.MustParsePrefix("198.18.0.1/30")
	LabServer = netip.MustParsePrefix("198.18.0.2/30")
)

// LabVLAN is an 802.1Q link the lab can add over its veth.
type LabVLAN struct {
	ID             int
	Client, Server netip.Prefix
}

// LabVLANs are the links Lab.AddVLANs adds.
var LabVLANs = [2]LabVLAN{
	{100, netip.MustParsePrefix("198.18.0.5/30"), netip.MustParsePrefix("198.18.0.6/30")},
	{200, netip.MustParsePrefix("198.18.0.9/30"), netip.MustParsePrefix("198.18.0.10/30")},
}

// Pair is the lab's two hosts alone: a client and a server namespace joined by veth,
// with LabClient and LabServer on its ends, and nothing else in them.
type Pair struct {
	Client, Server *NS
	// ClientIf and ServerIf are the veth ends in each namespace.
	ClientIf, ServerIf string
}

// NewPair builds the pair; on error nothing is left behind.
func NewPair() (_ *Pair, err error) {
	// The results are not named after p: `return nil, err` must not clear what the
	// deferred Close removes.
	p := &Pair{}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	if p.Client, err = New("client"); err != nil {
		return nil, err
	}
	if p.Server, err = New("server"); err != nil {
		return nil, err
	}
	if p.ClientIf, p.ServerIf, err = Link(p.Client, p.Server, LabClient, LabServer); err != nil {
		return nil, err
	}
	return p, nil
}

// Close removes both namespaces.
func (p *Pair) Close() error {
	var errs []error
	for _, ns := range []*NS{p.Server, p.Client} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}

// Lab is the two-host topology the end-to-end tests, the kernel matrix and the demo
// share: a Pair with TCP echo servers on ReplyPort and DataDropPort in the server, nft
// rules dropping TCP to DroppedPort and long segments to DataDropPort, and nothing on
// UDP ClosedPort.
type Lab struct {
	Pair
	servers []*TCPServer
}

// NewLab builds the lab; on error nothing is left behind.
func NewLab(ctx context.Context) (_ *Lab, err error) {
	pair, err := NewPair()
	if err != nil {
		return nil, err
	}
	lab := &Lab{Pair: *pair}
	defer func() {
		if err != nil {
			_ = lab.Close()
		}
	}()
	rules := fmt.Sprintf("table inet %s {\n chain %s {\n  type filter hook input priority 0; policy accept;\n"+
		"  tcp dport %d drop\n  tcp dport %d meta length > %d drop\n }\n}\n", LabNftTable, LabNftChain, DroppedPort, DataDropPort, DataDropLen)
	if err = lab.Server.Nft(ctx, rules); err != nil {
		return nil, err
	}
	for _, port := range []uint16{ReplyPort, DataDropPort} {
		srv, err := TCPServe(lab.Server, LabServer.Addr(), port)
		if err != nil {
			return nil, err
		}
		lab.servers = append(lab.servers, srv)
	}
	return lab, nil
}

// Traffic is one round: a TCP request and its reply, a UDP datagram to the closed
// port, and a TCP connect the nft rule drops (it times out after about 1.5 s).
func (l *Lab) Traffic(ctx context.Context) error {
	dst := LabServer.Addr()
	reply, err := TCPRequest(ctx, l.Client, dst, ReplyPort, []byte("ping"))
	if err == nil && len(reply) == 0 {
		err = errors.New("tcp request: empty reply")
	}
	return errors.Join(err,
		UDPSend(ctx, l.Client, dst, ClosedPort, []byte("anyone?")),
		TCPConnectExpectTimeout(ctx, l.Client, dst, DroppedPort, 1500*time.Millisecond))
}

// AddVLANs adds LabVLANs on both ends of the veth (the kernel needs 802.1Q support:
// the 8021q module).
func (l *Lab) AddVLANs() error {
	for _, v := range LabVLANs {
		if _, err := VLAN(l.Client, l.ClientIf, v.ID, v.Client); err != nil {
			return err
		}
		if _, err := VLAN(l.Server, l.ServerIf, v.ID, v.Server); err != nil {
			return err
		}
	}
	return nil
}

// TrafficDataDrop opens a connection to DataDropPort and sends a segment the server's
// nft rule drops: the handshake goes through, the data never arrives.
func (l *Lab) TrafficDataDrop(ctx context.Context) error {
	return TCPSendExpectNoReply(ctx, l.Client, LabServer.Addr(), DataDropPort, make([]byte, 2*DataDropLen), 0)
}

// Close stops the servers and removes both namespaces (their nft tables go with them).
func (l *Lab) Close() error {
	var errs []error
	for _, srv := range l.servers {
		errs = append(errs, srv.Close())
	}
	return errors.Join(append(errs, l.Pair.Close())...)
}
