package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/internal/kernelmatrix"
	"github.com/pktspan/pktspan/internal/netns"
)

// The survey's IPv6 addresses on the lab's veth.
var (
	surveyClient6 = netip.MustParsePrefix("fd00:18:18::1/64")
	surveyServer6 = netip.MustParsePrefix("fd00:18:18::2/64")
	// surveySpoofed is a client address the router has no route back to: rp_filter drops
	// what comes from it.
	surveySpoofed = netip.MustParsePrefix("198.18.1.5/32")
)

// runSurvey makes every kind of traffic of kernelmatrix's survey scenarios once, in the
// lab and the NAT lab, under pktspan with backend, then prints the table of how each
// scenario's packets were freed (kernelmatrix.FreeTable).
func runSurvey(ctx context.Context, lab *netns.Lab, bin, backend string, dropsOnly bool, out string) error {
	nat, err := netns.NewNATLab(ctx)
	if err != nil {
		return err
	}
	defer nat.Close()
	if _, err := lab.Client.Exec(ctx, "ip", "addr", "add", surveyClient6.String(), "dev", lab.ClientIf, "nodad"); err != nil {
		return err
	}
	if _, err := lab.Server.Exec(ctx, "ip", "addr", "add", surveyServer6.String(), "dev", lab.ServerIf, "nodad"); err != nil {
		return err
	}
	servers, err := surveyServers(lab, nat)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range servers {
			c.Close()
		}
	}()
	args := []string{"--backend", backend, "--filter-addr", "198.18.0.0/15", "--filter-addr", "fd00:18:18::/64"}
	if dropsOnly {
		args = append(args, "--drops-only")
	}
	err = withPktspan(ctx, bin, out, args, func() error { return surveyTraffic(ctx, lab, nat) })
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(out, "spans.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	spans, err := kernelmatrix.ReadSpans(f)
	if err != nil {
		return err
	}
	table := kernelmatrix.FreeTable(spans)
	fmt.Print(table)
	return os.WriteFile(filepath.Join(out, "frees.txt"), []byte(table), 0o644)
}

// surveyServers starts the servers of the survey's scenarios.
func surveyServers(lab *netns.Lab, nat *netns.NATLab) ([]io.Closer, error) {
	var cs []io.Closer
	add := func(c io.Closer, err error) error {
		if err == nil {
			cs = append(cs, c)
		}
		return err
	}
	srv4, srv6 := netns.LabServer.Addr(), surveyServer6.Addr()
	err := errors.Join(
		add(netns.HTTPServe(lab.Server, srv4, kernelmatrix.PortClientCloses, false)),
		add(netns.HTTPServe(lab.Server, srv6, kernelmatrix.PortClientCloses, false)),
		add(netns.HTTPServe(lab.Server, srv4, kernelmatrix.PortServerCloses, true)),
		add(netns.HTTPServe(lab.Server, srv4, kernelmatrix.PortKeepAlive, false)),
		add(netns.HTTPServe(lab.Server, srv4, kernelmatrix.PortAbort, false)),
		add(netns.TCPServe(lab.Server, srv4, kernelmatrix.PortBulk)),
		add(serveUDP(lab.Server, srv4, kernelmatrix.PortUDPEcho, 0)),
		add(serveUDP(lab.Server, srv6, kernelmatrix.PortUDPEcho, 0)),
		add(serveUDP(nat.Server, netns.NATServer.Addr(), kernelmatrix.PortUDPEcho, 0)),
		add(serveUDP(lab.Server, srv4, kernelmatrix.PortFullQueue, -1)),
	)
	if err != nil {
		for _, c := range cs {
			c.Close()
		}
		return nil, err
	}
	return cs, nil
}

// surveyTraffic runs every scenario once. Healthy exchanges must succeed; the drops are
// provoked and not awaited.
func surveyTraffic(ctx context.Context, lab *netns.Lab, nat *netns.NATLab) error {
	srv4, srv6 := netns.LabServer.Addr(), surveyServer6.Addr()
	errs := []error{
		netns.HTTPGets(ctx, lab.Client, srv4, kernelmatrix.PortClientCloses, 1),
		netns.HTTPGets(ctx, lab.Client, srv6, kernelmatrix.PortClientCloses, 1),
		netns.HTTPGets(ctx, lab.Client, srv4, kernelmatrix.PortServerCloses, 1),
		netns.HTTPGets(ctx, lab.Client, srv4, kernelmatrix.PortKeepAlive, 5),
		abort(ctx, lab.Client, srv4, kernelmatrix.PortAbort),
		bulk(ctx, lab.Client, srv4, kernelmatrix.PortBulk),
		udpExchange(ctx, lab.Client, srv4, kernelmatrix.PortUDPEcho),
		udpExchange(ctx, lab.Client, srv6, kernelmatrix.PortUDPEcho),
		netns.Ping(ctx, lab.Client, srv4),
		netns.Ping(ctx, lab.Client, srv6),
		nat.Request(ctx, []byte("through the router")),
		udpExchange(ctx, nat.Client, netns.NATServer.Addr(), kernelmatrix.PortUDPEcho),
		netns.Ping(ctx, nat.Client, netns.NATServer.Addr()),
		// The drops.
		netns.TCPConnectExpectTimeout(ctx, lab.Client, srv4, netns.DroppedPort, time.Second),
		netns.UDPSend(ctx, lab.Client, srv4, netns.ClosedPort, []byte("anyone?")),
		refused(ctx, lab.Client, srv4, kernelmatrix.PortClosedTCP),
		netns.UDPSend(ctx, nat.Client, netns.NATUnrouted, kernelmatrix.PortNoRoute, []byte("nowhere")),
		fillQueue(ctx, lab.Client, srv4, kernelmatrix.PortFullQueue),
		udpWithTTL(ctx, nat.Client, netns.NATServer.Addr(), kernelmatrix.PortTTL, 1),
		spoofed(ctx, nat),
	}
	time.Sleep(500 * time.Millisecond)
	return errors.Join(errs...)
}

type udpServer struct{ c net.PacketConn }

func (s *udpServer) Close() error { return s.c.Close() }

// serveUDP echoes datagrams; rcvbuf -1 makes a socket with the smallest receive buffer
// that never reads, so its queue fills.
func serveUDP(ns *netns.NS, addr netip.Addr, port uint16, rcvbuf int) (*udpServer, error) {
	s := &udpServer{}
	err := ns.Do(func() error {
		var err error
		s.c, err = net.ListenPacket("udp", netip.AddrPortFrom(addr, port).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	if rcvbuf < 0 {
		return s, s.c.(*net.UDPConn).SetReadBuffer(1)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := s.c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = s.c.WriteTo(buf[:n], from)
		}
	}()
	return s, nil
}

// inNS runs fn on a connection from ns to addr:port, within 5 s.
func inNS(ctx context.Context, ns *netns.NS, network string, addr netip.Addr, port uint16, fn func(net.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := netns.Dial(ctx, ns, network, addr, port, fn); err != nil {
		return fmt.Errorf("%s %w", network, err)
	}
	return nil
}

// abort sends a request and closes with a RST, unread.
func abort(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16) error {
	return inNS(ctx, ns, "tcp", addr, port, func(c net.Conn) error {
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: lab\r\n\r\n")); err != nil {
			return err
		}
		return c.(*net.TCPConn).SetLinger(0)
	})
}

// bulk sends 512 KiB, half-closes and reads the echo.
func bulk(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16) error {
	const want = 512 << 10
	echo, err := netns.TCPRequest(ctx, ns, addr, port, make([]byte, want))
	if err == nil && len(echo) != want {
		err = fmt.Errorf("echo of %d bytes, want %d", len(echo), want)
	}
	return err
}

func udpExchange(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16) error {
	return inNS(ctx, ns, "udp", addr, port, func(c net.Conn) error {
		if _, err := c.Write([]byte("request")); err != nil {
			return err
		}
		_, err := c.Read(make([]byte, 64))
		return err
	})
}

// refused connects to a port nobody listens on and requires the refusal.
func refused(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16) error {
	err := inNS(ctx, ns, "tcp", addr, port, func(net.Conn) error { return nil })
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("connect to a closed port: %v, want a refusal", err)
}

// fillQueue sends more datagrams than the server's smallest receive buffer holds.
func fillQueue(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16) error {
	return inNS(ctx, ns, "udp", addr, port, func(c net.Conn) error {
		for range 64 {
			if _, err := c.Write(make([]byte, 1000)); err != nil {
				return err
			}
		}
		return nil
	})
}

// udpWithTTL sends a datagram that expires after ttl hops.
func udpWithTTL(ctx context.Context, ns *netns.NS, addr netip.Addr, port uint16, ttl int) error {
	return inNS(ctx, ns, "udp", addr, port, func(c net.Conn) error {
		raw, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, ttl)
		}); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		_, err = c.Write([]byte("expires"))
		return err
	})
}

// spoofed sends a datagram from an address the router has no route back to, with the
// router's reverse path filter on.
func spoofed(ctx context.Context, nat *netns.NATLab) error {
	if _, err := nat.Client.Exec(ctx, "ip", "addr", "add", surveySpoofed.String(), "dev", "lo"); err != nil {
		return err
	}
	for _, s := range []string{"net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"} {
		if _, err := nat.Router.Exec(ctx, "sysctl", "-qw", s); err != nil {
			return err
		}
	}
	out, err := nat.Router.Exec(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "veth") {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			if _, err := nat.Router.Exec(ctx, "sysctl", "-qw", "net.ipv4.conf."+name+".rp_filter=1"); err != nil {
				return err
			}
		}
	}
	return nat.Client.Do(func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: surveySpoofed.Addr().AsSlice()},
			&net.UDPAddr{IP: netns.NATServer.Addr().AsSlice(), Port: int(kernelmatrix.PortRPFilter)})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("spoofed"))
		return err
	})
}
