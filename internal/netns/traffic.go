package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Every helper is bounded in time: the caller's deadline if it has one, else these.
const (
	defaultTimeout = 5 * time.Second
	// connTimeout bounds one server-side exchange, so a silent client cannot hold a
	// handler forever.
	connTimeout = 5 * time.Second
	// ExpectTimeoutWait is how long TCPConnectExpectTimeout waits by default: longer
	// than a SYN's round trip between namespaces, shorter than its first retransmission
	// (1 s) plus a reply, so a dropped SYN is told apart in about a second and a half.
	ExpectTimeoutWait = 1500 * time.Millisecond
	maxMessage        = 1 << 20
)

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// TCPServer is an echo server inside a namespace: per connection it reads until the
// client half-closes, sends the same bytes back and closes (FIN, not RST), so every
// exchange is one complete TCP flow.
type TCPServer struct {
	ln   net.Listener
	addr netip.AddrPort

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	served atomic.Int64
}

// TCPServe listens on addr:port inside ns.
func TCPServe(ns *NS, addr netip.Addr, port uint16) (*TCPServer, error) {
	s := &TCPServer{conns: map[net.Conn]struct{}{}}
	err := ns.Do(func() error {
		var err error
		s.ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, port).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("serving tcp in %s: %w", ns.name, err)
	}
	s.addr = s.ln.Addr().(*net.TCPAddr).AddrPort()
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Served counts the requests answered so far (a connection that sends nothing is not one).
func (s *TCPServer) Served() int { return int(s.served.Load()) }

func (s *TCPServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // listener closed
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *TCPServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(connTimeout))
	req, err := io.ReadAll(io.LimitReader(c, maxMessage))
	if err != nil || len(req) == 0 {
		return
	}
	if _, err := c.Write(req); err == nil {
		s.served.Add(1)
	}
}

// Close stops accepting, cuts exchanges in progress and waits for the handlers.
func (s *TCPServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.SetDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("closing tcp server %s: %w", s.addr, err)
	}
	return nil
}

// TCPRequest connects from inside ns to addr:port, sends payload, half-closes and
// returns everything the server sends before closing.
func TCPRequest(ctx context.Context, ns *NS, addr netip.Addr, port uint16, payload []byte) ([]byte, error) {
	var reply []byte
	err := dialTCP(ctx, ns, addr, port, func(c *net.TCPConn) error {
		if _, err := c.Write(payload); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		var err error
		reply, err = io.ReadAll(io.LimitReader(c, maxMessage))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp request from %s %w", ns.name, err)
	}
	return reply, nil
}

// Dial connects from inside ns to addr:port over network ("tcp", "udp") and runs fn on
// the connection, all bounded by ctx's deadline (default 5 s); its error reads
// "to ADDR:PORT: cause".
func Dial(ctx context.Context, ns *NS, network string, addr netip.Addr, port uint16, fn func(c net.Conn) error) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	dst := netip.AddrPortFrom(addr, port).String()
	err := ns.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, dst)
		if err != nil {
			return err
		}
		defer c.Close()
		deadline, _ := ctx.Deadline()
		_ = c.SetDeadline(deadline)
		return fn(c)
	})
	if err != nil {
		return fmt.Errorf("to %s: %w", dst, err)
	}
	return nil
}

// dialTCP is dial for TCP, with the connection's TCP half-close at hand.
func dialTCP(ctx context.Context, ns *NS, addr netip.Addr, port uint16, fn func(c *net.TCPConn) error) error {
	return Dial(ctx, ns, "tcp", addr, port, func(c net.Conn) error { return fn(c.(*net.TCPConn)) })
}

// TCPConnectExpectTimeout tries to connect from inside ns to addr:port and succeeds only
// if the attempt times out, as it does when a firewall drops the SYN. A connection or a
// refusal is an error. wait 0 means ExpectTimeoutWait.
func TCPConnectExpectTimeout(ctx context.Context, ns *NS, addr netip.Addr, port uint16, wait time.Duration) error {
	if wait == 0 {
		wait = ExpectTimeoutWait
	}
	dst := netip.AddrPortFrom(addr, port).String()
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: wait}
		c, err := d.DialContext(ctx, "tcp", dst)
		if err == nil {
			c.Close()
			return errors.New("connected, want a timeout")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil
		}
		return fmt.Errorf("%w, want a timeout", err)
	})
	if err != nil {
		return fmt.Errorf("tcp connect from %s to %s: %w", ns.name, dst, err)
	}
	return nil
}

// UDPSend sends one datagram from inside ns to addr:port and returns once it is sent;
// no answer is awaited, so a closed port (ICMP port unreachable) is not an error.
func UDPSend(ctx context.Context, ns *NS, addr netip.Addr, port uint16, payload []byte) error {
	err := Dial(ctx, ns, "udp", addr, port, func(c net.Conn) error {
		_, err := c.Write(payload)
		return err
	})
	if err != nil {
		return fmt.Errorf("udp send from %s %w", ns.name, err)
	}
	return nil
}

var pingSeq atomic.Uint32

// Ping sends one ICMP (or ICMPv6) echo request from inside ns to addr over a raw socket
// and waits for the matching reply (default 5 s when ctx has no deadline).
func Ping(ctx context.Context, ns *NS, addr netip.Addr) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	network, request, reply := "ip4:icmp", byte(8), byte(0)
	if addr.Is6() {
		network, request, reply = "ip6:ipv6-icmp", 128, 129
	}
	id, sq := uint16(os.Getpid()), uint16(pingSeq.Add(1))
	msg := []byte{request, 0, 0, 0, 0, 0, 0, 0, 'p', 'k', 't', 's', 'p', 'a', 'n'}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], sq)
	if addr.Is4() {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg)) // the kernel fills ICMPv6's
	}
	err := ns.Do(func() error {
		c, err := net.ListenPacket(network, "")
		if err != nil {
			return err
		}
		defer c.Close()
		deadline, _ := ctx.Deadline()
		_ = c.SetDeadline(deadline)
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf) // the IPv4 header is already stripped
			if err != nil {
				return fmt.Errorf("waiting for echo reply: %w", err)
			}
			b := buf[:n]
			peer, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			if n >= 8 && b[0] == reply && peer.Unmap() == addr.Unmap() &&
				binary.BigEndian.Uint16(b[4:]) == id && binary.BigEndian.Uint16(b[6:]) == sq {
				return nil
			}
		}
	})
	if err != nil {
		return fmt.Errorf("ping from %s to %s: %w", ns.name, addr, err)
	}
	return nil
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TCPStream connects from inside ns to addr:port and sends writes chunks of size bytes
// with Nagle off and gap between them, so each chunk leaves as its own segment and the
// connection carries thousands of packets; then it half-closes and reads the echo. It
// returns the number of bytes echoed.
func TCPStream(ctx context.Context, ns *NS, addr netip.Addr, port uint16, writes, size int, gap time.Duration) (int, error) {
	var echoed int64
	err := dialTCP(ctx, ns, addr, port, func(c *net.TCPConn) error {
		if err := c.SetNoDelay(true); err != nil {
			return err
		}
		// Read while writing: the echo comes only after the half-close, but a reader
		// keeps the server's reply from filling the window if that ever changes.
		done := make(chan error, 1)
		go func() {
			var err error
			echoed, err = io.Copy(io.Discard, io.LimitReader(c, maxMessage))
			done <- err
		}()
		chunk := make([]byte, size)
		for i := range writes {
			chunk[0] = byte(i)
			if _, err := c.Write(chunk); err != nil {
				return err
			}
			time.Sleep(gap)
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		return <-done
	})
	if err != nil {
		return 0, fmt.Errorf("tcp stream from %s %w", ns.name, err)
	}
	return int(echoed), nil
}

// TCPSendExpectNoReply connects from inside ns to addr:port, sends payload and succeeds
// only if no reply comes before wait (from the connect on) is over: the connection
// opens, but a firewall drops the data. A failed connect is an error. wait 0 means
// ExpectTimeoutWait.
func TCPSendExpectNoReply(ctx context.Context, ns *NS, addr netip.Addr, port uint16, payload []byte, wait time.Duration) error {
	if wait == 0 {
		wait = ExpectTimeoutWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := dialTCP(ctx, ns, addr, port, func(c *net.TCPConn) error {
		if _, err := c.Write(payload); err != nil {
			return err
		}
		if err := c.CloseWrite(); err != nil {
			return err
		}
		n, err := c.Read(make([]byte, 1))
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil
		}
		return fmt.Errorf("read %d bytes (%v), want no reply", n, err)
	})
	if err != nil {
		return fmt.Errorf("tcp send from %s %w", ns.name, err)
	}
	return nil
}
