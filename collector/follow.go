package collector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/pktspan/pktspan/bpf"
)

// followedNetnsMax is the size of the kernel's set of followed container namespaces.
const followedNetnsMax = int(bpf.TracepointsLimitsFILTER_MAX_CONTAINER_NETNS)

// FollowNetns makes inodes the set of network namespaces --filter-container follows: the
// namespaces the named containers live in now, which the netns namer reports as they
// start, stop and restart. The probes match an skb first seen in one of them (or in a
// filter.netns one). It fails before Start, after Shutdown, and for more namespaces than
// the kernel's set holds.
func (c *Collector) FollowNetns(inodes []uint32) error {
	if len(inodes) > followedNetnsMax {
		return fmt.Errorf("following %d container namespaces: the kernel's set holds %d", len(inodes), followedNetnsMax)
	}
	c.followMu.Lock()
	defer c.followMu.Unlock()
	m := c.followed
	if m == nil {
		return errors.New("following container namespaces: the probes are not loaded")
	}
	want := make(map[uint32]bool, len(inodes))
	for _, inode := range inodes {
		want[inode] = true
	}
	var (
		stale []uint32
		key   uint32
		val   uint8
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		if want[key] {
			delete(want, key)
		} else {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the followed container namespaces: %w", err)
	}
	// Stale ones leave first, so that the set never holds more than it is given.
	for _, inode := range stale {
		if err := m.Delete(inode); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forgetting followed namespace %d: %w", inode, err)
		}
	}
	for inode := range want {
		if err := m.Put(inode, uint8(1)); err != nil {
			return fmt.Errorf("following namespace %d: %w", inode, err)
		}
	}
	return nil
}
