//go:build e2e

// Tier 2: network namespaces, veth and nftables need root; `make e2e` runs these tests.

package netns

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireRoot fails (never skips): a tier 2 run that cannot test is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netns tests need root (network namespaces, veth, nftables): run them as root, e.g. `sudo make e2e`")
	}
}

func newNS(t *testing.T, name string) *NS {
	t.Helper()
	ns, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

var (
	clientAddr  = netip.MustParsePrefix("198.18.0.1/24")
	serverAddr  = netip.MustParsePrefix("198.18.0.2/24")
	clientAddr6 = netip.MustParsePrefix("fd00:18::1/64")
	serverAddr6 = netip.MustParsePrefix("fd00:18::2/64")
)

func TestLinkedNamespacesCarryTCPUDPAndPingAndNftDrops(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	client, server := newNS(t, "client"), newNS(t, "server")

	ifc, ifs, err := Link(client, server, clientAddr, serverAddr, WithAddrs(clientAddr6, serverAddr6))
	if err != nil {
		t.Fatal(err)
	}
	out, err := server.Exec(ctx, "ip", "-brief", "addr", "show", "dev", ifs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ifs, "UP", serverAddr.String(), serverAddr6.String()} {
		if !strings.Contains(string(out), want) {
			t.Errorf("server's %s lacks %q: %s", ifs, want, out)
		}
	}
	if _, err := client.Exec(ctx, "ip", "link", "show", "dev", ifc); err != nil {
		t.Error(err)
	}
	if out, err := client.Exec(ctx, "ip", "link", "show", "dev", ifs); err == nil {
		t.Errorf("client sees the server's end %s: %s", ifs, out)
	}

	srv := serve(t, server, serverAddr.Addr(), 80)
	srv6 := serve(t, server, serverAddr6.Addr(), 80)
	srv81 := serve(t, server, serverAddr.Addr(), 81)

	t.Run("tcp", func(t *testing.T) {
		for _, dst := range []netip.Addr{serverAddr.Addr(), serverAddr6.Addr()} {
			reply, err := TCPRequest(ctx, client, dst, 80, []byte("hello "+dst.String()))
			if err != nil {
				t.Fatal(err)
			}
			if want := "hello " + dst.String(); string(reply) != want {
				t.Errorf("reply %q, want %q", reply, want)
			}
		}
		if srv.Served() != 1 || srv6.Served() != 1 {
			t.Errorf("served %d and %d, want 1 each", srv.Served(), srv6.Served())
		}
	})

	t.Run("nft drop", func(t *testing.T) {
		// Port 81 answers before the rule, so the timeout below is the rule's doing.
		if _, err := TCPRequest(ctx, client, serverAddr.Addr(), 81, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := TCPConnectExpectTimeout(ctx, client, serverAddr.Addr(), 81, 0); err == nil {
			t.Fatal("connect to an open port: want an error")
		}
		err := server.Nft(ctx, `table inet pktspan_test {
			chain input {
				type filter hook input priority filter; policy accept;
				tcp dport 81 drop
			}
		}`)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := TCPConnectExpectTimeout(ctx, client, serverAddr.Addr(), 81, 0); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timed out after %v, want about %v", d, ExpectTimeoutWait)
		}
		if srv81.Served() != 1 {
			t.Errorf("port 81 served %d, want 1 (before the rule)", srv81.Served())
		}
		// Port 80 is not affected.
		if _, err := TCPRequest(ctx, client, serverAddr.Addr(), 80, []byte("y")); err != nil {
			t.Error(err)
		}
		// A closed port refuses quickly, which is not the expected timeout.
		if err := TCPConnectExpectTimeout(ctx, client, serverAddr.Addr(), 82, 0); err == nil {
			t.Error("connect to a closed port: want a refusal error")
		}
	})

	t.Run("udp closed port", func(t *testing.T) {
		for _, dst := range []netip.Addr{serverAddr.Addr(), serverAddr6.Addr()} {
			if err := UDPSend(ctx, client, dst, 9, []byte("nobody listens")); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		for _, dst := range []netip.Addr{serverAddr.Addr(), serverAddr6.Addr()} {
			if err := Ping(ctx, client, dst); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("do", func(t *testing.T) {
		var inside []byte
		err := server.Do(func() error {
			var err error
			inside, err = os.ReadFile("/proc/thread-self/net/dev")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(inside, []byte(ifs)) {
			t.Errorf("inside Do, no %s in /proc/net/dev:\n%s", ifs, inside)
		}
		host, err := os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(host, []byte(ifs+":")) {
			t.Errorf("after Do, the test still sees %s", ifs)
		}
	})
}

func serve(t *testing.T, ns *NS, addr netip.Addr, port uint16) *TCPServer {
	t.Helper()
	s, err := TCPServe(ns, addr, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestCloseRemovesTheNamespaceAndIsIdempotent(t *testing.T) {
	requireRoot(t)
	a, b := newNS(t, "gone-a"), newNS(t, "gone-b")
	if _, _, err := Link(a, b, clientAddr, serverAddr); err != nil {
		t.Fatal(err)
	}
	if err := a.Nft(t.Context(), "table ip pktspan_test { }"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*NS{a, b} {
		if !strings.Contains(netnsList(t), ns.Name()) {
			t.Fatalf("%s not in ip netns list", ns.Name())
		}
		if err := ns.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ns.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	list := netnsList(t)
	for _, ns := range []*NS{a, b} {
		if strings.Contains(list, ns.Name()) {
			t.Errorf("%s still listed after Close:\n%s", ns.Name(), list)
		}
		if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it gone", ns.Path(), err)
		}
	}
}

func TestNewAndLinkRejectBadNamesAndNonTestAddresses(t *testing.T) {
	requireRoot(t)
	if _, err := New("Bad/Name"); err == nil {
		t.Error("New accepted a label with a slash")
	}
	a, b := newNS(t, "rej-a"), newNS(t, "rej-b")
	for _, p := range []string{"10.0.0.1/24", "192.168.1.1/24", "198.16.0.1/24", "2001:db8::1/64", "fc00::1/64", "fd00::1/7", "198.18.0.1/8"} {
		if _, _, err := Link(a, b, netip.MustParsePrefix(p), serverAddr); err == nil {
			t.Errorf("Link accepted %s", p)
		}
	}
}
