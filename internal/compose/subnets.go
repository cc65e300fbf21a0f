package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
)

// TestNets is where the test's networks lie: the benchmarking range every pktspan test
// uses, never Docker's default ranges.
var TestNets = netip.MustParsePrefix("198.18.0.0/15")

// SubnetEnv picks three /26 subnets of one /24 in 198.19.0.0/16 (the upper half of
// TestNets) that overlaps no Docker network of this engine and no route of this host, and
// returns them as the PKTSPANTEST_SUBNET_* variables of the test override. Random, so
// that runs side by side, and other tests' networks, keep out of each other's way.
func SubnetEnv(ctx context.Context) ([]string, error) {
	taken, err := takenPrefixes(ctx)
	if err != nil {
		return nil, err
	}
	return pickSubnets(taken, rand.IntN(256))
}

// pickSubnets looks at the /24s of 198.19.0.0/16 from the start-th on, wrapping around,
// and splits the first that overlaps nothing taken into the override's three /26s.
func pickSubnets(taken []netip.Prefix, start int) ([]string, error) {
	for i := range 256 {
		third := byte((start + i) % 256)
		block := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, third, 0}), 24)
		if overlapsAny(block, taken) {
			continue
		}
		sub := func(i byte) string {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, third, 64 * i}), 26).String()
		}
		return []string{
			"PKTSPANTEST_SUBNET_FRONT=" + sub(0),
			"PKTSPANTEST_SUBNET_BACK=" + sub(1),
			"PKTSPANTEST_SUBNET_TELEMETRY=" + sub(2),
		}, nil
	}
	return nil, fmt.Errorf("no /24 of 198.19.0.0/16 is free of Docker networks and routes: %v", taken)
}

func overlapsAny(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if p.Overlaps(t) {
			return true
		}
	}
	return false
}

// takenPrefixes lists the IPv4 subnets of every Docker network and every route of this
// host's network namespace.
func takenPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var taken []netip.Prefix
	ids, err := docker(ctx, nil, "network", "ls", "-q")
	if err != nil {
		return nil, err
	}
	if f := strings.Fields(string(ids)); len(f) > 0 {
		out, err := docker(ctx, nil, append([]string{"network", "inspect"}, f...)...)
		if err != nil {
			return nil, err
		}
		var nets []struct {
			IPAM struct{ Config []struct{ Subnet string } }
		}
		if err := json.Unmarshal(out, &nets); err != nil {
			return nil, fmt.Errorf("reading docker network inspect: %w", err)
		}
		for _, n := range nets {
			for _, c := range n.IPAM.Config {
				if p, err := netip.ParsePrefix(c.Subnet); err == nil {
					taken = append(taken, p)
				}
			}
		}
	}
	routes, err := exec.CommandContext(ctx, "ip", "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	for line := range strings.Lines(string(routes)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil {
			taken = append(taken, p)
		}
	}
	return taken, nil
}
