//go:build e2e

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

// Datagrams a socket reads on veth are freed where no tracepoint sees it, and the next
// one often comes at the same skb address with the same UDP headers: each must still be
// a packet span of its own, queued once, not a stage of the one before.
func TestEveryUDPDatagramReadAfterAnUnseenFreeIsAPacketSpanOfItsOwn(t *testing.T) {
	requireRoot(t)
	const (
		datagrams = 500
		gap       = time.Millisecond // ~1000/s: frees and allocations alternate
		port      = 9000
	)
	bin := buildPktspan(t, t.TempDir())
	pair, err := netns.NewPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pair.Close() })

	var reader *net.UDPConn
	if err := pair.Server.Do(func() error {
		reader, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netns.LabServer.Addr(), port)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })
	read := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for n < 1+datagrams {
			if err := reader.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				break
			}
			if _, _, err := reader.ReadFromUDP(buf); err != nil {
				break
			}
			n++
		}
		read <- n
	}()

	// A datagram before pktspan starts resolves the server's address: else ARP's solicit
	// takes a clone of the first datagram, seen only at its free, a packet span more.
	payload := []byte("one datagram of many")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := netns.UDPSend(ctx, pair.Client, netns.LabServer.Addr(), port, payload); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "--output", "json", "--filter-addr", netns.LabClient.Masked().String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	proc, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = proc.Stop(os.Kill, time.Second) })

	err = netns.Dial(ctx, pair.Client, "udp", netns.LabServer.Addr(), port, func(c net.Conn) error {
		for range datagrams {
			if _, err := c.Write(payload); err != nil {
				return err
			}
			time.Sleep(gap)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := <-read; n != 1+datagrams {
		t.Fatalf("the socket read %d datagrams of %d", n, 1+datagrams)
	}
	time.Sleep(time.Second)
	if err := proc.Stop(os.Interrupt, 30*time.Second); err != nil {
		t.Fatalf("pktspan: %v; stderr:\n%s", err, stderr.String())
	}

	// A datagram sent during the run is one packet span with one pass through
	// net_dev_queue. A span seen only at its free (the datagram sent before pktspan
	// started, freed during the run) is no datagram of the run, and no merge either.
	packets := udpPacketsTo(t, stdout.String(), port)
	var sent, wrong, freeOnly []string
	for id, stages := range packets {
		switch n := len(slices.DeleteFunc(slices.Clone(stages), func(s string) bool { return s != "net:net_dev_queue" })); {
		case n == 1:
			sent = append(sent, id)
		case n == 0 && len(stages) == 1 && strings.HasPrefix(stages[0], "skb:"):
			freeOnly = append(freeOnly, id+": "+stages[0])
		default:
			wrong = append(wrong, id+": "+strings.Join(stages, " "))
		}
	}
	if len(sent) != datagrams {
		t.Errorf("%d packet spans passed net_dev_queue once for %d datagrams", len(sent), datagrams)
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d packet spans merge datagrams or miss their queueing:\n%s", len(wrong), len(packets), strings.Join(wrong[:min(len(wrong), 5)], "\n"))
	}
	if len(freeOnly) > 0 {
		t.Logf("packet spans seen only at their free: %v", freeOnly)
	}
	t.Logf("pktspan stderr:\n%s", stderr.String())
}

// udpPacketsTo reads pktspan's JSON lines: the packet spans of UDP datagrams to port,
// by span ID, with the names of their stages in order.
func udpPacketsTo(t *testing.T, out string, port int) map[string][]string {
	t.Helper()
	packets, stages := map[string][]string{}, map[string][]string{}
	for line := range strings.Lines(out) {
		var s struct {
			SpanID     string         `json:"span_id"`
			Parent     *string        `json:"parent_span_id"`
			Name       string         `json:"name"`
			Attributes map[string]any `json:"attributes"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(errors.Join(err, errors.New(line)))
		}
		switch {
		case s.Name == "packet" && s.Attributes["network.transport"] == "udp" && s.Attributes["destination.port"] == float64(port):
			packets[s.SpanID] = nil
		case s.Parent != nil:
			stages[*s.Parent] = append(stages[*s.Parent], s.Name)
		}
	}
	for id := range packets {
		packets[id] = stages[id]
	}
	return packets
}
