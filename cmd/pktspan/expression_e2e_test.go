//go:build e2e

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pktspan/pktspan/internal/netns"
)

// The expression lab's addresses: its own, so that no other lab's packets count.
var (
	exprClient4  = netip.MustParsePrefix("198.18.16.1/30")
	exprServer4  = netip.MustParsePrefix("198.18.16.2/30")
	exprClient6  = netip.MustParsePrefix("fd00:18:16::1/64")
	exprServer6  = netip.MustParsePrefix("fd00:18:16::2/64")
	exprClientV  = netip.MustParsePrefix("198.18.16.5/30")
	exprServerV  = netip.MustParsePrefix("198.18.16.6/30")
	exprVLAN     = 100 // on the second veth, tagged by tc
	exprUDPPorts = []uint16{5353, 7000}
)

// TestExpressionsFollowWhatTcpdumpMatches is the differential test of filter
// expressions: for each expression of testdata/expressions.txt, the lab's traffic
// (TCP, UDP, ICMP, IPv6, VLAN, fragments) runs once while pktspan follows the
// expression and tcpdump captures every interface the traffic crosses; tcpdump then
// applies the expression to its capture. The packets pktspan followed must be exactly
// those tcpdump matched. pktspan evaluates the expression at every hook until an skb
// matches, and a VLAN packet looks untagged at its VLAN device and tagged at the veth,
// so tcpdump's side is the union over both; only IP packets count (pktspan follows
// nothing else).
func TestExpressionsFollowWhatTcpdumpMatches(t *testing.T) {
	requireRoot(t)
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatal("tcpdump is needed as the reference (make deps installs it)")
	}
	exprs := readExpressions(t)
	bin := buildPktspan(t, t.TempDir())
	lab := newExprLab(t)
	// Every packet of the rounds before: an skb the kernel frees lazily (a read TCP
	// segment waits on a per-CPU list, skb_attempt_defer_free) may be freed during a
	// later round, where pktspan first sees it, rightly follows it if it matches, and
	// tcpdump never sees it.
	earlier := map[string]bool{}
	for _, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			dir := t.TempDir()
			run := startJSONRun(t, bin, "--trace-close-grace", "100ms", expr)
			var caps []*capture
			for _, dev := range lab.captureDevs {
				caps = append(caps, startCapture(t, tcpdump, lab.Server, dev, filepath.Join(dir, dev+".pcap")))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := lab.traffic(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			want := map[string]bool{}
			for _, c := range caps {
				c.stop(t)
				matched := filepath.Join(dir, "matched-"+filepath.Base(c.path))
				if out, err := exec.Command(tcpdump, "-r", c.path, "-w", matched, expr).CombinedOutput(); err != nil {
					t.Fatalf("tcpdump -r %s %q: %v\n%s", c.path, expr, err, out)
				}
				for _, k := range pcapKeys(t, matched) {
					if lab.ours(k) {
						want[k.String()] = true
					}
				}
			}
			round := map[string]bool{}
			for _, c := range caps {
				for _, k := range pcapKeys(t, c.path) {
					round[k.String()] = true
				}
			}
			defer maps.Copy(earlier, round)
			got := map[string]string{} // key → the span's attributes, to tell about
			for k, js := range followedKeys(t, run.stop(t)) {
				if lab.ours(k) {
					got[k.String()] = js
				}
			}
			if len(want) == 0 && !slices.Contains(noMatchExpected, expr) {
				t.Errorf("tcpdump matched none of the lab's packets: the traffic no longer exercises %q", expr)
			}
			var missing, extra []string
			for k := range want {
				if _, ok := got[k]; !ok {
					missing = append(missing, k)
				}
			}
			for k, js := range got {
				switch {
				case want[k]:
				case earlier[k] && !round[k]:
					t.Logf("followed a packet of an earlier round, freed in this one: %s", k)
				default:
					extra = append(extra, k+"\n    "+js)
				}
			}
			slices.Sort(missing)
			slices.Sort(extra)
			if len(missing)+len(extra) > 0 {
				t.Errorf("pktspan %q differs from tcpdump (%d packets matched)\nmatched by tcpdump, not followed:\n  %s\nfollowed, not matched by tcpdump:\n  %s\npktspan stderr:\n%s",
					expr, len(want), strings.Join(missing, "\n  "), strings.Join(extra, "\n  "), run.stderr.String())
			}
		})
	}
}

// noMatchExpected are the expressions no lab packet matches: none, at present.
var noMatchExpected []string

func readExpressions(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("testdata/expressions.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// exprLab is a client and a server joined by veth over IPv4 and IPv6, with TCP servers
// on 8080 and 443, and by a second veth that carries VLAN 100: a tc program on the
// client's end tags every frame as an 802.1Q NIC does (aside, in skb->vlan_tci), one on
// the server's end drops them once tcpdump has seen them (this kernel has no 8021q to
// receive them with). Neighbour entries are permanent: no ARP or neighbour discovery
// between runs.
type exprLab struct {
	*netns.Pair
	captureDevs []string
	addrs       map[netip.Addr]bool
}

func newExprLab(t *testing.T) *exprLab {
	t.Helper()
	client, err := netns.New("exprc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err := netns.New("exprs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	cif, sif, err := netns.Link(client, server, exprClient4, exprServer4, netns.WithAddrs(exprClient6, exprServer6))
	if err != nil {
		t.Fatal(err)
	}
	cvlan, svlan, err := netns.Link(client, server, exprClientV, exprServerV)
	if err != nil {
		t.Fatal(err)
	}
	attachTC(t, client, cvlan, ebpf.AttachTCXEgress, asm.Instructions{
		// bpf_skb_vlan_push(skb, htons(ETH_P_8021Q), 100): R1 is the skb already.
		asm.Mov.Imm(asm.R2, int32(binary.BigEndian.Uint16([]byte{0x00, 0x81}))),
		asm.Mov.Imm(asm.R3, int32(exprVLAN)),
		asm.FnSkbVlanPush.Call(),
		asm.Mov.Imm(asm.R0, 0), // TC_ACT_OK
		asm.Return(),
	})
	attachTC(t, server, svlan, ebpf.AttachTCXIngress, asm.Instructions{
		asm.Mov.Imm(asm.R0, 2), // TC_ACT_SHOT
		asm.Return(),
	})
	l := &exprLab{Pair: &netns.Pair{Client: client, Server: server, ClientIf: cif, ServerIf: sif},
		captureDevs: []string{sif, svlan}, addrs: map[netip.Addr]bool{}}
	ctx := context.Background()
	for _, n := range []struct {
		ns        *netns.NS
		dev, peer string
		peerNS    *netns.NS
		peerAddrs []netip.Prefix
	}{
		{client, cif, sif, server, []netip.Prefix{exprServer4, exprServer6}},
		{client, cvlan, svlan, server, []netip.Prefix{exprServerV}},
		{server, sif, cif, client, []netip.Prefix{exprClient4, exprClient6}},
		{server, svlan, cvlan, client, []netip.Prefix{exprClientV}},
	} {
		mac := linkMAC(t, n.peerNS, n.peer)
		for _, a := range n.peerAddrs {
			if out, err := n.ns.Exec(ctx, "ip", "neigh", "replace", a.Addr().String(), "lladdr", mac, "dev", n.dev, "nud", "permanent"); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
	}
	for _, p := range []netip.Prefix{exprClient4, exprServer4, exprClient6, exprServer6, exprClientV, exprServerV} {
		l.addrs[p.Addr()] = true
	}
	for _, a := range []netip.Addr{exprServer4.Addr(), exprServer6.Addr()} {
		for _, port := range []uint16{8080, 443} {
			srv, err := netns.TCPServe(server, a, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
		}
	}
	return l
}

// attachTC runs insns, a tc program, on dev in ns, until the test ends.
func attachTC(t *testing.T, ns *netns.NS, dev string, at ebpf.AttachType, insns asm.Instructions) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatalf("loading the tc program for %s: %v", dev, err)
	}
	t.Cleanup(func() { _ = prog.Close() })
	err = ns.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: at})
		if err != nil {
			return err
		}
		t.Cleanup(func() { _ = l.Close() })
		return nil
	})
	if err != nil {
		t.Fatalf("attaching the tc program to %s: %v", dev, err)
	}
}

func linkMAC(t *testing.T, ns *netns.NS, dev string) string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// ours reports whether both of k's addresses are the lab's.
func (l *exprLab) ours(k packetKey) bool { return l.addrs[k.src] && l.addrs[k.dst] }

// traffic is one round of the lab's packets. Payloads keep every frame out of 100 to
// 114 bytes (testdata/expressions.txt says why). The VLAN's packets go one way: UDP and
// a TCP connect whose SYN is all that is sent within its wait.
func (l *exprLab) traffic(ctx context.Context) error {
	var errs []error
	for _, dst := range []netip.Addr{exprServer4.Addr(), exprServer6.Addr()} {
		for _, port := range []uint16{8080, 443} {
			if _, err := netns.TCPRequest(ctx, l.Client, dst, port, []byte("pkts")); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, netns.Ping(ctx, l.Client, dst))
	}
	// To closed ports: each datagram draws a port unreachable. Small, large and, to
	// 7000 over IPv4, fragmented.
	for _, dst := range []netip.Addr{exprServer4.Addr(), exprServer6.Addr(), exprServerV.Addr()} {
		errs = append(errs,
			netns.UDPSend(ctx, l.Client, dst, exprUDPPorts[0], []byte("pktspan says hello")),
			netns.UDPSend(ctx, l.Client, dst, exprUDPPorts[0], bytes.Repeat([]byte("pkts"), 100)))
	}
	errs = append(errs, netns.UDPSend(ctx, l.Client, exprServer4.Addr(), exprUDPPorts[1], bytes.Repeat([]byte("pkts"), 600)),
		netns.TCPConnectExpectTimeout(ctx, l.Client, exprServerV.Addr(), 443, 300*time.Millisecond))
	return errors.Join(errs...)
}

// captureBufferKiB is tcpdump's capture buffer (-B). In immediate mode libpcap gives
// every packet a ring frame sized for the largest packet the device may pass up, and a
// veth, which offloads segmentation, may pass 64 KiB ones: the default 2 MiB buffer
// holds about 35 frames, fewer than one round's packets on the lab's veth (about 55,
// sent within milliseconds). A tcpdump not scheduled for those milliseconds on a busy
// host lost the rest of the round ("packets dropped by kernel"), and its capture lacked
// packets pktspan rightly followed. 32 MiB holds about 500.
const captureBufferKiB = 32 << 10

// capture is one tcpdump writing everything on an interface to a file.
type capture struct {
	cmd    *exec.Cmd
	path   string
	stderr bytes.Buffer
	done   chan struct{}
}

// startCapture starts tcpdump in ns on dev and returns once it listens.
func startCapture(t *testing.T, tcpdump string, ns *netns.NS, dev, path string) *capture {
	t.Helper()
	c := &capture{path: path, done: make(chan struct{})}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name(), tcpdump, "-i", dev, "-n", "-p", "-U", "--immediate-mode", "-s", "0",
		"-B", strconv.Itoa(captureBufferKiB), "-w", path)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = pw
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	listening := make(chan struct{})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(pr)
		var once sync.Once
		for sc.Scan() {
			c.stderr.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
	}()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	select {
	case <-listening:
	case <-c.done:
		t.Fatalf("tcpdump on %s exited: %s", dev, c.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump on %s not listening after 10s: %s", dev, c.stderr.String())
	}
	return c
}

// stop ends the capture as Ctrl-C does, so that the file is complete, and fails the
// test if the kernel dropped packets before tcpdump read them: the capture is the
// reference, and one with holes would blame pktspan for packets it rightly followed.
func (c *capture) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump did not stop: %s", c.stderr.String())
	}
	_ = c.cmd.Wait()
	m := kernelDrops.FindStringSubmatch(c.stderr.String())
	if m == nil {
		t.Fatalf("tcpdump did not say how many packets the kernel dropped: %s", c.stderr.String())
	}
	if m[1] != "0" {
		t.Fatalf("tcpdump's capture %s is incomplete, not a reference: %s", c.path, c.stderr.String())
	}
}

// kernelDrops is the count tcpdump reports on exit of the packets its capture buffer had
// no room for.
var kernelDrops = regexp.MustCompile(`(?m)^(\d+) packets? dropped by kernel$`)

// followedKeys are the packets a run followed, each with its span's attributes as JSON
// to tell about.
func followedKeys(t *testing.T, spans []packetSpan) map[packetKey]string {
	t.Helper()
	out := map[packetKey]string{}
	for _, sp := range spans {
		num := func(k string) int { f, _ := sp.attrs[k].(float64); return int(f) }
		k := packetKey{transport: sp.str("network.transport"), sport: num("source.port"), dport: num("destination.port")}
		k.src, _ = netip.ParseAddr(sp.str("source.address"))
		k.dst, _ = netip.ParseAddr(sp.str("destination.address"))
		if k.transport == "tcp" {
			k.tcp = fmt.Sprintf("%s seq=%d ack=%d", sp.str("pktspan.tcp.flags"), num("pktspan.tcp.seq"), num("pktspan.tcp.ack"))
		}
		if k.transport == "icmp" {
			k.icmp = fmt.Sprintf("%d/%d", num("pktspan.icmp.type"), num("pktspan.icmp.code"))
		}
		js, err := json.Marshal(sp.attrs)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(js)
	}
	return out
}

// packetKey names a packet by what both pktspan's spans and the capture show of it.
// Within one round of the lab's traffic it is unique but for the fragments after the
// first, which share theirs.
type packetKey struct {
	transport    string
	src, dst     netip.Addr
	sport, dport int
	tcp, icmp    string
}

func (k packetKey) String() string {
	s := fmt.Sprintf("%s %s", k.transport, netip.AddrPortFrom(k.src, uint16(k.sport)))
	s += " > " + netip.AddrPortFrom(k.dst, uint16(k.dport)).String()
	if k.tcp != "" {
		s += " " + k.tcp
	}
	if k.icmp != "" {
		s += " icmp " + k.icmp
	}
	return s
}

var tcpFlagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// pcapKeys reads a capture file (Ethernet, tcpdump's default format) and keys its IP
// packets as pktspan names them.
func pcapKeys(t *testing.T, path string) []packetKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Fatalf("%s: not a little-endian pcap file", path)
	}
	var out []packetKey
	for b = b[24:]; len(b) >= 16; {
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n {
			t.Fatalf("%s: truncated record", path)
		}
		if k, ok := frameKey(b[16 : 16+n]); ok {
			out = append(out, k)
		}
		b = b[16+n:]
	}
	return out
}

func frameKey(f []byte) (packetKey, bool) {
	var k packetKey
	if len(f) < 14 {
		return k, false
	}
	etype, p := binary.BigEndian.Uint16(f[12:]), f[14:]
	for etype == 0x8100 && len(p) >= 4 {
		etype, p = binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	var proto byte
	var l4 []byte
	first := true
	switch {
	case etype == 0x0800 && len(p) >= 20:
		hl := int(p[0]&0xf) * 4
		proto = p[9]
		k.src, _ = netip.AddrFromSlice(p[12:16])
		k.dst, _ = netip.AddrFromSlice(p[16:20])
		first = binary.BigEndian.Uint16(p[6:])&0x1fff == 0
		if len(p) >= hl {
			l4 = p[hl:]
		}
	case etype == 0x86dd && len(p) >= 40:
		proto = p[6]
		k.src, _ = netip.AddrFromSlice(p[8:24])
		k.dst, _ = netip.AddrFromSlice(p[24:40])
		l4 = p[40:]
	default:
		return k, false
	}
	switch proto {
	case 6:
		k.transport = "tcp"
		if first && len(l4) >= 14 {
			k.sport, k.dport = int(binary.BigEndian.Uint16(l4)), int(binary.BigEndian.Uint16(l4[2:]))
			var names []string
			for bit, name := range tcpFlagNames {
				if l4[13]&(1<<bit) != 0 {
					names = append(names, name)
				}
			}
			k.tcp = fmt.Sprintf("%s seq=%d ack=%d", strings.Join(names, ","), binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]))
		}
	case 17:
		k.transport = "udp"
		if first && len(l4) >= 4 {
			k.sport, k.dport = int(binary.BigEndian.Uint16(l4)), int(binary.BigEndian.Uint16(l4[2:]))
		}
	case 1, 58:
		k.transport = "icmp"
		if first && len(l4) >= 2 {
			k.icmp = fmt.Sprintf("%d/%d", l4[0], l4[1])
		}
	default:
		k.transport = fmt.Sprint(proto)
	}
	return k, true
}
