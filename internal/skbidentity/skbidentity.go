// Package skbidentity reads the shared fixtures on which the kernel side's same_skb
// (bpf/headers/identity.h) and the spanner's isNewSKB must agree: whether an skb seen
// at a followed address is still the followed one, or a new skb the allocator put there
// after a free no probe saw.
package skbidentity

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Headers are what a probe reads of an skb that tells it from another: the IP version
// (0 when no IP header was read), the protocol, and TCP's seq, ack and flags.
type Headers struct {
	L3, L4   uint8
	Seq, Ack uint32
	Flags    uint8
}

// Mode says how a hook relates to the skb's life, as enum follow_mode does.
type Mode uint8

const (
	ModeFollow  Mode = iota // any hook
	ModeFree                // kfree_skb, consume_skb
	ModeDeliver             // a copy to a socket
)

var modes = map[string]Mode{"follow": ModeFollow, "free": ModeFree, "deliver": ModeDeliver}

// Hook says whether the sighting is at one of the hooks no skb passes twice on one
// device.
type Hook uint8

const (
	HookOther   Hook = iota // any other hook
	HookQueue               // net_dev_queue
	HookReceive             // netif_receive_skb
)

var hooks = map[string]Hook{"-": HookOther, "queue": HookQueue, "receive": HookReceive}

// Device is a network device: ifindexes repeat across namespaces. The zero Device is
// none, written "-"; any other is written ifindex@netns.
type Device struct {
	Ifindex, Netns uint32
}

// Case is one fixture line.
type Case struct {
	Name      string
	Tracked   Headers // what was remembered of the followed skb
	Delivered bool    // the followed skb was already delivered to a socket
	// The devices the followed skb last passed net_dev_queue and netif_receive_skb on.
	Queued, Received Device
	Seen             Headers // what the new sighting reads
	Mode             Mode
	Hook             Hook
	Device           Device // the sighting's device
	Same             bool   // the verdict: the same skb (true) or a new one
}

// Path is the fixture file, found from this source file so that tests in any package
// read the one copy.
func Path() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "bpf", "testdata", "skb_identity.txt")
}

// Read parses the fixture file.
func Read() ([]Case, error) {
	f, err := os.Open(Path())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var cases []Case
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := parse(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", Path(), line, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%s has no cases", Path())
	}
	return cases, nil
}

// parse reads
// `name | l3 l4 seq ack flags delivered queued received | l3 l4 seq ack flags mode hook device | verdict`.
func parse(line string) (Case, error) {
	parts := strings.Split(line, "|")
	if len(parts) != 4 {
		return Case{}, fmt.Errorf("want 4 fields separated by |, have %d", len(parts))
	}
	tracked, seen := strings.Fields(parts[1]), strings.Fields(parts[2])
	if len(tracked) != 8 || len(seen) != 8 {
		return Case{}, fmt.Errorf("want 8 values on each side")
	}
	c := Case{Name: strings.TrimSpace(parts[0])}
	var err error
	if c.Tracked, err = headers(tracked[:5]); err != nil {
		return Case{}, err
	}
	if c.Seen, err = headers(seen[:5]); err != nil {
		return Case{}, err
	}
	c.Delivered = tracked[5] != "0"
	mode, ok := modes[seen[5]]
	if !ok {
		return Case{}, fmt.Errorf("unknown mode %q", seen[5])
	}
	c.Mode = mode
	if c.Hook, ok = hooks[seen[6]]; !ok {
		return Case{}, fmt.Errorf("unknown hook %q", seen[6])
	}
	if c.Queued, err = device(tracked[6]); err != nil {
		return Case{}, err
	}
	if c.Received, err = device(tracked[7]); err != nil {
		return Case{}, err
	}
	if c.Device, err = device(seen[7]); err != nil {
		return Case{}, err
	}
	switch v := strings.TrimSpace(parts[3]); v {
	case "same", "new":
		c.Same = v == "same"
	default:
		return Case{}, fmt.Errorf("verdict %q is neither same nor new", v)
	}
	return c, nil
}

// headers parses l3 l4 seq ack flags, each a C literal (decimal or 0x hex).
func headers(f []string) (Headers, error) {
	var v [5]uint64
	for i, s := range f {
		n, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return Headers{}, err
		}
		v[i] = n
	}
	return Headers{L3: uint8(v[0]), L4: uint8(v[1]), Seq: uint32(v[2]), Ack: uint32(v[3]), Flags: uint8(v[4])}, nil
}

// device parses "-" or ifindex@netns, each a C literal.
func device(s string) (Device, error) {
	if s == "-" {
		return Device{}, nil
	}
	ifindex, netns, ok := strings.Cut(s, "@")
	if !ok {
		return Device{}, fmt.Errorf("device %q is neither - nor ifindex@netns", s)
	}
	i, err := strconv.ParseUint(ifindex, 0, 32)
	if err != nil {
		return Device{}, err
	}
	n, err := strconv.ParseUint(netns, 0, 32)
	if err != nil {
		return Device{}, err
	}
	if i == 0 {
		return Device{}, fmt.Errorf("device %q has ifindex 0: write - for none", s)
	}
	return Device{Ifindex: uint32(i), Netns: uint32(n)}, nil
}
