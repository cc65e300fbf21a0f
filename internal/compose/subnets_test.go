package compose

import (
	"net/netip"
	"slices"
	"testing"
)

func TestPickSubnetsSkipsWhatIsTakenAndWrapsAround(t *testing.T) {
	taken := []netip.Prefix{
		netip.MustParsePrefix("198.19.254.0/24"),
		netip.MustParsePrefix("198.19.255.128/25"), // a part of a /24 takes all of it
		netip.MustParsePrefix("198.19.0.0/25"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}
	got, err := pickSubnets(taken, 254)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"PKTSPANTEST_SUBNET_FRONT=198.19.1.0/26",
		"PKTSPANTEST_SUBNET_BACK=198.19.1.64/26",
		"PKTSPANTEST_SUBNET_TELEMETRY=198.19.1.128/26",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPickSubnetsFailsWhenTheRangeIsFull(t *testing.T) {
	if got, err := pickSubnets([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, 0); err == nil {
		t.Errorf("picked %v inside a taken 198.18.0.0/15", got)
	}
}
