package collector

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/config"
)

// filterCfg is the kernel's struct filter_cfg, written into the probes' .rodata.
type filterCfg = bpf.TracepointsFilterCfg

// encodeFilter turns the validated filter config into the kernel's layout. Netns paths
// are resolved to inodes here, once, so the kernel compares integers.
func encodeFilter(f config.Filter) (filterCfg, error) {
	var cfg filterCfg
	prefixes, err := f.Prefixes()
	if err != nil {
		return cfg, err
	}
	protos := f.ProtoNumbers()
	for _, l := range []struct {
		what     string
		n, holds int
	}{
		{"addresses", len(prefixes), len(cfg.Addrs)},
		{"ports", len(f.Port), len(cfg.Ports)},
		{"protocols", len(protos), len(cfg.Protos)},
		{"interfaces", len(f.Iface), len(cfg.Ifaces)},
		{"namespaces", len(f.Netns), len(cfg.Netns)},
		{"VLAN IDs", len(f.VLAN), len(cfg.Vlans)},
		{"marks", len(f.Mark), len(cfg.Marks)},
	} {
		if l.n > l.holds {
			return cfg, fmt.Errorf("%d filter %s: the kernel probes hold %d", l.n, l.what, l.holds)
		}
	}
	for i, p := range prefixes {
		encodePrefix(&cfg.Addrs[i].Addr, &cfg.Addrs[i].Mask, &cfg.Addrs[i].Family, p)
	}
	cfg.N_addrs = uint32(len(prefixes))
	for i, port := range f.Port {
		cfg.Ports[i] = uint16(port)
	}
	cfg.N_ports = uint32(len(f.Port))
	copy(cfg.Protos[:], protos)
	cfg.N_protos = uint32(len(protos))
	for i, name := range f.Iface {
		for j := 0; j < len(name) && j < len(cfg.Ifaces[i])-1; j++ {
			cfg.Ifaces[i][j] = int8(name[j])
		}
	}
	cfg.N_ifaces = uint32(len(f.Iface))
	for i, ns := range f.Netns {
		inode, err := netnsInode(ns)
		if err != nil {
			return cfg, err
		}
		cfg.Netns[i] = inode
	}
	cfg.N_netns = uint32(len(f.Netns))
	for i, id := range f.VLAN {
		if id < 0 || id > vlanIDMax {
			return cfg, fmt.Errorf("filter.vlan %d is not a VLAN ID (0 to %d)", id, vlanIDMax)
		}
		cfg.Vlans[i] = uint16(id)
	}
	cfg.N_vlans = uint32(len(f.VLAN))
	for i, s := range f.Mark {
		m, err := config.ParseMark(s)
		if err != nil {
			return cfg, fmt.Errorf("filter.mark: %w", err)
		}
		cfg.Marks[i].Value, cfg.Marks[i].Mask = m.Value, m.Mask
	}
	cfg.N_marks = uint32(len(f.Mark))
	if f.DropsOnly {
		cfg.DropsOnly = 1
	}
	// The namespaces themselves arrive at run time (FollowNetns): none match until then.
	if len(f.Container) > 0 {
		cfg.Containers = 1
	}
	return cfg, nil
}

// vlanIDMax is the largest 802.1Q VLAN ID: the tag's low 12 bits.
const vlanIDMax = int(bpf.TracepointsLimitsVLAN_VID_MASK)

// encodePrefix writes address and mask as four 32-bit words holding the bytes in
// network order, read natively: the same way the probe loads them from the packet.
func encodePrefix(addr, mask *[4]uint32, family *uint8, p netip.Prefix) {
	p = p.Masked()
	a := p.Addr().AsSlice()
	m := make([]byte, len(a))
	for bit := 0; bit < p.Bits(); bit++ {
		m[bit/8] |= 0x80 >> (bit % 8)
	}
	*family = 6
	if p.Addr().Is4() {
		*family = 4
	}
	for w := 0; w*4 < len(a); w++ {
		addr[w] = binary.NativeEndian.Uint32(a[w*4:])
		mask[w] = binary.NativeEndian.Uint32(m[w*4:])
	}
}

// netnsInode accepts an inode number or a path to a namespace file (/run/netns/NAME,
// /proc/PID/ns/net).
func netnsInode(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	fi, err := os.Stat(s)
	if err != nil {
		return 0, fmt.Errorf("resolving filter.netns %q: %w", s, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("resolving filter.netns %q: no inode", s)
	}
	return uint32(st.Ino), nil
}
