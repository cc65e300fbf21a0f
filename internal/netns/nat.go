package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// The NAT lab's addresses: the client reaches the server only through the router's
// public address and port, which the router translates (DNAT) to the server's, while
// masquerading the client behind its own inside address (SNAT).
var (
	// NATUnrouted is an address the NAT lab's router has no route to.
	NATUnrouted     = netip.MustParseAddr("198.18.3.1")
	NATClient       = netip.MustParsePrefix("198.18.1.1/30")
	NATRouterPublic = netip.MustParsePrefix("198.18.1.2/30")
	NATRouterInside = netip.MustParsePrefix("198.18.2.1/30")
	NATServer       = netip.MustParsePrefix("198.18.2.2/30")
)

// NATPublicPort is the router's port that DNAT sends to the server's ReplyPort.
const NATPublicPort = 80

// NATLab is three hosts in a row: client — router — server. The server has no route
// back to the client's network, so a connection works only through both translations.
type NATLab struct {
	Client, Router, Server *NS
	server                 *TCPServer
}

// NewNATLab builds the NAT lab; on error nothing is left behind.
func NewNATLab(ctx context.Context) (_ *NATLab, err error) {
	lab := &NATLab{} // not the named result: see NewPair
	defer func() {
		if err != nil {
			_ = lab.Close()
		}
	}()
	if lab.Client, err = New("natclient"); err != nil {
		return nil, err
	}
	if lab.Router, err = New("natrouter"); err != nil {
		return nil, err
	}
	if lab.Server, err = New("natserver"); err != nil {
		return nil, err
	}
	if _, _, err = Link(lab.Client, lab.Router, NATClient, NATRouterPublic); err != nil {
		return nil, err
	}
	_, inside, err := Link(lab.Server, lab.Router, NATServer, NATRouterInside)
	if err != nil {
		return nil, err
	}
	if _, err = lab.Client.Exec(ctx, "ip", "route", "add", "default", "via", NATRouterPublic.Addr().String()); err != nil {
		return nil, fmt.Errorf("building nat lab: %w", err)
	}
	if _, err = lab.Router.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return nil, fmt.Errorf("building nat lab: %w", err)
	}
	rules := fmt.Sprintf(`table ip pktspan_nat {
 chain pre {
  type nat hook prerouting priority dstnat; policy accept;
  ip daddr %s tcp dport %d dnat to %s:%d
 }
 chain post {
  type nat hook postrouting priority srcnat; policy accept;
  oifname %q masquerade
 }
}
`, NATRouterPublic.Addr(), NATPublicPort, NATServer.Addr(), ReplyPort, inside)
	if err = lab.Router.Nft(ctx, rules); err != nil {
		return nil, err
	}
	if lab.server, err = TCPServe(lab.Server, NATServer.Addr(), ReplyPort); err != nil {
		return nil, err
	}
	return lab, nil
}

// Request sends one TCP request from the client to the router's public port and
// requires the server's echo.
func (l *NATLab) Request(ctx context.Context, payload []byte) error {
	reply, err := TCPRequest(ctx, l.Client, NATRouterPublic.Addr(), NATPublicPort, payload)
	if err == nil && string(reply) != string(payload) {
		err = fmt.Errorf("nat request: reply %q, want the echo of %q", reply, payload)
	}
	return err
}

// Close stops the server and removes the three namespaces.
func (l *NATLab) Close() error {
	var errs []error
	if l.server != nil {
		errs = append(errs, l.server.Close())
	}
	for _, ns := range []*NS{l.Server, l.Router, l.Client} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}
