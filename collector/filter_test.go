package collector

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/config"
)

func TestEncodeFilterWritesTheKernelLayout(t *testing.T) {
	cfg, err := encodeFilter(config.Filter{
		Addr:  []string{"198.18.0.0/15", "2001:db8::1"},
		Port:  []int{80, 443},
		Proto: []string{"tcp", "icmp"},
		Iface: []string{"veth0"},
		Netns: []string{"4026531840"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N_addrs != 2 || cfg.N_ports != 2 || cfg.N_protos != 3 || cfg.N_ifaces != 1 || cfg.N_netns != 1 {
		t.Fatalf("counts: %d addrs %d ports %d protos %d ifaces %d netns", cfg.N_addrs, cfg.N_ports, cfg.N_protos, cfg.N_ifaces, cfg.N_netns)
	}
	v4 := cfg.Addrs[0]
	if v4.Family != 4 || v4.Addr[0] != binary.NativeEndian.Uint32([]byte{198, 18, 0, 0}) ||
		v4.Mask[0] != binary.NativeEndian.Uint32([]byte{255, 254, 0, 0}) || v4.Mask[1] != 0 {
		t.Errorf("IPv4 prefix encoded as %+v", v4)
	}
	v6 := cfg.Addrs[1]
	a := netip.MustParseAddr("2001:db8::1").As16()
	if v6.Family != 6 || v6.Addr[3] != binary.NativeEndian.Uint32(a[12:]) || v6.Mask[3] != 0xffffffff {
		t.Errorf("IPv6 address encoded as %+v", v6)
	}
	if cfg.Ports[0] != 80 || cfg.Ports[1] != 443 {
		t.Errorf("ports %v", cfg.Ports[:2])
	}
	if cfg.Protos[0] != 6 || cfg.Protos[1] != 1 || cfg.Protos[2] != 58 {
		t.Errorf("protos %v", cfg.Protos[:3])
	}
	if cfg.Ifaces[0][0] != 'v' || cfg.Ifaces[0][4] != '0' || cfg.Ifaces[0][5] != 0 {
		t.Errorf("iface %v", cfg.Ifaces[0])
	}
	if cfg.Netns[0] != 4026531840 {
		t.Errorf("netns %d", cfg.Netns[0])
	}
}

func TestEncodeFilterWritesVLANsMarksAndDropsOnly(t *testing.T) {
	cfg, err := encodeFilter(config.Filter{
		VLAN:      []int{0, 100, 4095},
		Mark:      []string{"0x10", "0x200/0xf00", "7/0"},
		DropsOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N_vlans != 3 || cfg.Vlans[0] != 0 || cfg.Vlans[1] != 100 || cfg.Vlans[2] != 4095 {
		t.Errorf("vlans: %d %v", cfg.N_vlans, cfg.Vlans)
	}
	// A plain value matches the whole mark; a masked value is stored masked, so the
	// probe's (mark & mask) == value holds for it; mask 0 matches every mark.
	want := [][2]uint32{{0x10, 0xffffffff}, {0x200, 0xf00}, {0, 0}}
	if cfg.N_marks != 3 {
		t.Fatalf("marks: %d", cfg.N_marks)
	}
	for i, w := range want {
		if m := cfg.Marks[i]; m.Value != w[0] || m.Mask != w[1] {
			t.Errorf("mark %d = %#x/%#x, want %#x/%#x", i, m.Value, m.Mask, w[0], w[1])
		}
	}
	if cfg.DropsOnly != 1 {
		t.Error("drops-only not set")
	}
}

func TestEncodeFilterRejectsBadVLANsAndMarks(t *testing.T) {
	marks := make([]string, config.MaxFilterMarks+1)
	for i := range marks {
		marks[i] = "1"
	}
	for _, f := range []config.Filter{
		{VLAN: []int{4096}},
		{VLAN: []int{-1}},
		{Mark: []string{"0x1/0xzz"}},
		{VLAN: make([]int, config.MaxFilterVLANs+1)},
		{Mark: marks},
	} {
		if _, err := encodeFilter(f); err == nil {
			t.Errorf("%+v encoded without error", f)
		}
	}
}

func TestEncodeFilterResolvesNetnsPathsToInodes(t *testing.T) {
	cfg, err := encodeFilter(config.Filter{Netns: []string{"/proc/self/ns/net"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Netns[0] == 0 {
		t.Error("netns path resolved to inode 0")
	}
	if _, err := encodeFilter(config.Filter{Netns: []string{"/no/such/ns"}}); err == nil || !strings.Contains(err.Error(), "/no/such/ns") {
		t.Errorf("missing netns path: %v", err)
	}
}

func TestEncodeFilterTurnsContainerFilteringOnForNamedContainers(t *testing.T) {
	cfg, err := encodeFilter(config.Filter{Container: []string{"web"}, Netns: []string{"4026531840"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Containers != 1 || cfg.N_netns != 1 {
		t.Errorf("containers=%d n_netns=%d, want container filtering on beside one netns", cfg.Containers, cfg.N_netns)
	}
}

func TestFollowNetnsNeedsTheProbesAndFitsTheKernelsSet(t *testing.T) {
	c := New()
	if err := c.FollowNetns([]uint32{1}); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("FollowNetns before Start = %v, want an error saying the probes are not loaded", err)
	}
	if err := c.FollowNetns(make([]uint32, followedNetnsMax+1)); err == nil || !strings.Contains(err.Error(), "holds 64") {
		t.Errorf("FollowNetns of %d namespaces = %v, want an error saying the set holds 64", followedNetnsMax+1, err)
	}
}

func TestEmptyFilterMatchesEverything(t *testing.T) {
	cfg, err := encodeFilter(config.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.N_addrs+cfg.N_ports+cfg.N_protos+cfg.N_ifaces+cfg.N_netns+cfg.N_vlans+cfg.N_marks != 0 || cfg.DropsOnly != 0 || cfg.Containers != 0 {
		t.Errorf("empty filter encoded with counts: %+v", cfg)
	}
}

// config.Validate rejects more filter values than the probes hold; its limits must be
// the kernel struct's array sizes, or a valid config would fail at start.
func TestConfigFilterLimitsAreTheKernelArraySizes(t *testing.T) {
	var cfg filterCfg
	limits := []struct {
		name          string
		config, probe int
	}{
		{"addresses", config.MaxFilterAddrs, len(cfg.Addrs)},
		{"ports", config.MaxFilterPorts, len(cfg.Ports)},
		{"interfaces", config.MaxFilterIfaces, len(cfg.Ifaces)},
		{"namespaces", config.MaxFilterNetns, len(cfg.Netns)},
		{"VLAN IDs", config.MaxFilterVLANs, len(cfg.Vlans)},
		{"marks", config.MaxFilterMarks, len(cfg.Marks)},
		{"containers", config.MaxFilterContainers, followedNetnsMax},
	}
	for _, l := range limits {
		if l.config != l.probe {
			t.Errorf("config allows %d filter %s, the probes hold %d", l.config, l.name, l.probe)
		}
	}
}
