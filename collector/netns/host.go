package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// initNetInode is the inode of the kernel's initial network namespace
// (PROC_NET_INIT_INO, fixed since Linux 3.8): the host's, when /proc/1/ns/net cannot
// be read (some sandboxes hide pid 1).
const initNetInode = 0xEFFFFFF9

// readHost returns the inode of the host's namespace: pid 1's.
func (n *Namer) readHost() uint32 {
	inode, err := inodeOf(filepath.Join(n.procRoot, "1", "ns", "net"))
	if err != nil {
		n.log.Debug("pid 1's namespace unreadable: the host's is the kernel's initial one", "error", err)
		return initNetInode
	}
	return inode
}

func hostOwner(inode uint32) owner {
	return owner{key: "host", inode: inode, kind: kindHost, attrs: []attribute.KeyValue{attrkey.NetnsName.String("host")}}
}

// syncNetnsDir names the namespaces `ip netns` keeps as files in /run/netns.
func (n *Namer) syncNetnsDir() {
	const prefix = "netns/"
	entries, err := os.ReadDir(n.netnsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.fail("ip netns names not read", err, "dir", n.netnsDir)
	}
	found := make(map[string]uint32, len(entries))
	for _, e := range entries {
		// A file being removed, or one whose namespace is gone, names nothing.
		if inode, err := inodeOf(filepath.Join(n.netnsDir, e.Name())); err == nil {
			found[e.Name()] = inode
		}
	}
	now := time.Now()
	keep := make(map[string]bool, len(found))
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, inode := range found {
		key := prefix + name
		keep[key] = true
		if !n.tab.lives(key, inode) {
			n.putLocked(owner{key: key, inode: inode, kind: kindNetnsFile, probe: filepath.Join(n.netnsDir, name),
				attrs: []attribute.KeyValue{attrkey.NetnsName.String(name)}})
		}
	}
	n.tab.goneExcept(prefix, keep, now)
}

// inodeOf returns the inode of the namespace a file stands for: /proc/PID/ns/net, a
// /run/netns bind mount, Docker's sandbox key.
func inodeOf(path string) (uint32, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode", path)
	}
	return uint32(st.Ino), nil
}
