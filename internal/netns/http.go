package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// HTTPServer answers every request inside a namespace with a short body; when
// closeAfter is set it closes each connection after its response (the server closes
// first), else it keeps connections alive for the client to close.
type HTTPServer struct {
	srv  *http.Server
	done chan struct{}
}

// HTTPServe serves HTTP on addr:port inside ns.
func HTTPServe(ns *NS, addr netip.Addr, port uint16, closeAfter bool) (*HTTPServer, error) {
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, port).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("serving http in %s: %w", ns.name, err)
	}
	s := &HTTPServer{done: make(chan struct{}), srv: &http.Server{
		ReadHeaderTimeout: connTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if closeAfter {
				w.Header().Set("Connection", "close")
			}
			_, _ = io.WriteString(w, "hello from pktspan's lab\n")
		}),
	}}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server and its connections.
func (s *HTTPServer) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// HTTPGets makes n GET requests from inside ns to addr:port over one kept-alive
// connection where the server allows it, then closes the client's idle connections
// (the client closes first unless the server did).
func HTTPGets(ctx context.Context, ns *NS, addr netip.Addr, port uint16, n int) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	tr := &http.Transport{
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, address)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + netip.AddrPortFrom(addr, port).String() + "/"
	var errs []error
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		errs = append(errs, err, resp.Body.Close())
		if err == nil && resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("status %s", resp.Status))
		}
		// A pause lets the server's close (when it closes) arrive before the next request.
		time.Sleep(50 * time.Millisecond)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("http from %s to %s: %w", ns.name, url, err)
	}
	return nil
}
