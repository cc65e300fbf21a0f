package netns

import (
	"bytes"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// cgroupPrefix keys the owners the cgroup scan found: cgroup/<container id>.
const cgroupPrefix = "cgroup/"

// maxCgroupFile bounds what is read of a /proc/PID/cgroup file.
const maxCgroupFile = 64 << 10

// cgroupContainer is what a process's cgroup path says of its container.
type cgroupContainer struct {
	id      string // 64 hex digits
	runtime string // docker, containerd, cri-o, podman; "" when the path does not say
	podUID  string // the Kubernetes pod's UID when the path holds one
}

// scanCgroups walks the processes for namespaces no other source names, and names each
// after the container its first process's cgroup names. want limits the walk to those
// namespaces; nil walks them all (a resync), after which a cgroup owner whose
// namespace no container's process is in any more is gone.
func (n *Namer) scanCgroups(want map[uint32]bool) {
	n.mu.Lock()
	named := n.tab.namedBy(kindCgroup)
	n.mu.Unlock()
	seen := make(map[uint32]bool)
	found := make(map[string]owner)
	for p := range n.containerProcesses(func(inode uint32) bool { return !named[inode] && !seen[inode] && (want == nil || want[inode]) }) {
		seen[p.inode] = true
		key := cgroupPrefix + p.c.id
		found[key] = owner{key: key, inode: p.inode, kind: kindCgroup, probe: p.link, attrs: p.c.attrs(), aliases: []string{p.c.id, shortID(p.c.id)}}
	}
	now := time.Now()
	keep := make(map[string]bool, len(found))
	n.mu.Lock()
	defer n.mu.Unlock()
	// A runtime may have named some of them while the processes were read.
	named = n.tab.namedBy(kindCgroup)
	for key, o := range found {
		keep[key] = true
		if !named[o.inode] && !n.tab.lives(key, o.inode) {
			n.putLocked(o)
		}
	}
	if want == nil {
		n.tab.goneExcept(cgroupPrefix, keep, now)
	}
}

// containerIn returns the container whose process is in the namespace, if one is.
func (n *Namer) containerIn(inode uint32) (cgroupContainer, bool) {
	for p := range n.containerProcesses(func(i uint32) bool { return i == inode }) {
		return p.c, true
	}
	return cgroupContainer{}, false
}

// containerProcess is a process in a container's cgroup: its ns/net link, and the
// namespace's inode.
type containerProcess struct {
	link  string
	inode uint32
	c     cgroupContainer
}

// containerProcesses yields the processes in a container's cgroup whose namespace
// wanted says is of interest; the walk stops when the caller breaks out.
func (n *Namer) containerProcesses(wanted func(inode uint32) bool) iter.Seq[containerProcess] {
	return func(yield func(containerProcess) bool) {
		entries, err := os.ReadDir(n.procRoot)
		if err != nil {
			n.fail("processes not read", err, "dir", n.procRoot)
			return
		}
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			// A process that exited meanwhile is no loss: its namespace has others, or none.
			link := filepath.Join(n.procRoot, e.Name(), "ns", "net")
			inode, err := inodeOf(link)
			if err != nil || !wanted(inode) {
				continue
			}
			data, err := readSmall(filepath.Join(n.procRoot, e.Name(), "cgroup"), maxCgroupFile)
			if err != nil {
				continue
			}
			if c, ok := parseCgroup(data); ok && !yield(containerProcess{link: link, inode: inode, c: c}) {
				return
			}
		}
	}
}

func (c cgroupContainer) attrs() []attribute.KeyValue {
	attrs := []attribute.KeyValue{attrkey.NetnsName.String(shortID(c.id)), attrkey.ContainerID.String(c.id)}
	if c.runtime != "" {
		attrs = append(attrs, attrkey.ContainerRuntimeName.String(c.runtime))
	}
	if c.podUID != "" {
		attrs = append(attrs, attrkey.K8sPodUID.String(c.podUID))
	}
	return slices.Clip(attrs)
}

// cgroupScopes are the prefixes the runtimes give a container's cgroup under systemd
// (docker-<id>.scope) and under cgroupfs with CRI-O (crio-<id>).
var cgroupScopes = []struct{ prefix, runtime string }{
	{"docker-", "docker"},
	{"cri-containerd-", "containerd"},
	{"crio-", "cri-o"},
	{"libpod-", "podman"},
}

// parseCgroup finds a container in the contents of /proc/PID/cgroup: the first line
// whose path ends in (or passes through) a container's cgroup.
func parseCgroup(data []byte) (cgroupContainer, bool) {
	for line := range bytes.Lines(data) {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(strings.TrimSpace(string(line)), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if c, ok := parseCgroupPath(parts[2]); ok {
			return c, true
		}
	}
	return cgroupContainer{}, false
}

func parseCgroupPath(path string) (cgroupContainer, bool) {
	elems := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(elems) - 1; i >= 0; i-- {
		e := strings.TrimSuffix(elems[i], ".scope")
		c := cgroupContainer{}
		switch {
		case isContainerID(e):
			c.id = e
			if i > 0 && elems[i-1] == "docker" {
				c.runtime = "docker"
			}
		default:
			for _, s := range cgroupScopes {
				if id, ok := strings.CutPrefix(e, s.prefix); ok && isContainerID(id) {
					c.id, c.runtime = id, s.runtime
				}
			}
		}
		if c.id == "" {
			continue
		}
		for _, p := range elems[:i] {
			if uid, ok := podUID(p); ok {
				c.podUID = uid
			}
		}
		return c, true
	}
	return cgroupContainer{}, false
}

// podUID reads a pod's UID from its cgroup: pod<uid> under cgroupfs,
// kubepods-<qos>-pod<uid with _ for ->.slice under systemd.
func podUID(elem string) (string, bool) {
	elem = strings.TrimSuffix(elem, ".slice")
	i := strings.LastIndex(elem, "pod")
	if i < 0 || i > 0 && elem[i-1] != '-' {
		return "", false
	}
	uid := strings.ReplaceAll(elem[i+len("pod"):], "_", "-")
	if len(uid) != 36 || strings.Count(uid, "-") != 4 || !isHex(strings.ReplaceAll(uid, "-", "")) {
		return "", false
	}
	return uid, true
}

func isContainerID(s string) bool { return len(s) == 64 && isHex(s) }

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return s != ""
}

// readSmall reads at most limit bytes of a file.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
