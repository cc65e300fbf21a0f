package collector

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/config"
)

// cgroupRoot is where the cgroup v2 hierarchy is mounted on systemd hosts and in
// pktspan's container (which mounts the host's): programs attached at its root see the
// sockets of every cgroup, and so of every network namespace.
const cgroupRoot = "/sys/fs/cgroup"

// hybridCgroupRoot is the cgroup v2 mount of hosts that still mount v1 controllers.
const hybridCgroupRoot = "/sys/fs/cgroup/unified"

// correlateResult is what attachCorrelate made, for the caller to adopt or release.
type correlateResult struct {
	coll     *ebpf.Collection
	links    []link.Link
	attached []Attached
	err      error
}

// attachCorrelate loads the request probes (bpf/correlate.c) over the shared maps and
// attaches them to the root of the cgroup v2 hierarchy: egress always, ingress only when
// correlate.trust believes some header arriving from the network.
func (c *Collector) attachCorrelate(ctx context.Context, opts ebpf.CollectionOptions, consts probeConsts) correlateResult {
	root, err := findCgroup2()
	if err != nil {
		return correlateResult{err: fmt.Errorf("--correlate http: %w", err)}
	}
	spec, err := bpf.LoadCorrelate()
	if err != nil {
		return correlateResult{err: fmt.Errorf("loading embedded request probes: %w", err)}
	}
	// The shared maps replace this object's own, which must match them in size.
	for name, m := range opts.MapReplacements {
		if ms := spec.Maps[name]; ms != nil {
			ms.MaxEntries = m.MaxEntries()
		}
	}
	if err := setConsts(spec, consts, map[string]any{bpf.CorrelateVarRequestBytes: uint32(c.correlate.Bytes)}); err != nil {
		return correlateResult{err: err}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return correlateResult{err: fmt.Errorf("loading the request probes into the kernel: %w", err)}
	}
	r := correlateResult{coll: coll}
	for _, p := range fixedProbes {
		if p.family != familyCgroup || p.id == probeHTTPIngress && !c.correlate.Trust.Ingress() {
			continue
		}
		if err := ctx.Err(); err != nil {
			r.err = fmt.Errorf("attaching the request probes: %w", err)
			return r
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: p.cgroupAttach, Program: coll.Programs[p.cgroupProg]})
		if err != nil {
			r.err = fmt.Errorf("--correlate http: attaching %s to the cgroup root %s: %w", p.name(), root, err)
			return r
		}
		r.links = append(r.links, l)
		r.attached = append(r.attached, Attached{p.name(), "cgroup_skb"})
	}
	return r
}

// findCgroup2 returns the mount point of the cgroup v2 hierarchy.
func findCgroup2() (string, error) {
	for _, dir := range []string{cgroupRoot, hybridCgroupRoot} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy at " + cgroupRoot + " or " + hybridCgroupRoot +
		" (mount one: mount -t cgroup2 none " + cgroupRoot + ")")
}

// Correlation is what --correlate http needs of the collector.
type Correlation struct {
	Bytes int          // request bytes the kernel reads
	Trust config.Trust // whose headers are believed
}
