package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// maxCRIMessage bounds a CRI reply: a node's sandbox list with their labels.
const maxCRIMessage = 16 << 20

// criSource names pod sandboxes from a CRI runtime (containerd, CRI-O). Pods are
// listed at start, every resync, and when a lookup misses: the CRI has no event stream
// every runtime serves. Only the Namer's loop (and Start before it) uses it.
type criSource struct {
	socket string
	prefix string // keys its owners: pod:<socket>/<sandbox id>
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	name   string // the runtime's own name: containerd, cri-o
	up     bool   // the last call answered
}

// startCRI connects to the configured CRI socket, or to the default ones present, and
// learns their pods. A runtime that does not answer is retried at each resync; one
// that does not serve the CRI (containerd without its CRI plugin, as Docker runs it)
// is left out.
func (n *Namer) startCRI(ctx context.Context) []*criSource {
	paths := []string{n.criSocket}
	if n.criSocket == "" {
		paths = nil
		for _, p := range n.criDefaults {
			if _, err := os.Stat(p); err == nil {
				paths = append(paths, p)
			}
		}
	} else if _, err := os.Stat(n.criSocket); err != nil {
		n.log.Warn("pods not named: no CRI socket (set --netns-cri-socket, or \"\" to look for the default ones)",
			"socket", n.criSocket, "error", errors.Unwrap(err))
		return nil
	}
	var out []*criSource
	for _, p := range paths {
		conn, err := grpc.NewClient("unix://"+p,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxCRIMessage)))
		if err != nil {
			n.errors.Add(1)
			n.log.Warn("pods not named: CRI client", "socket", p, "error", err)
			continue
		}
		c := &criSource{socket: p, prefix: "pod:" + p + "/", conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}
		if err := c.version(ctx); err != nil {
			if status.Code(err) == codes.Unimplemented {
				n.log.Warn("pods not named: the runtime on this socket does not serve the CRI", "socket", p, "error", err)
				_ = conn.Close()
				continue
			}
			n.errors.Add(1)
			n.log.Warn("pods not named until the CRI runtime answers", "socket", p, "error", err)
		} else {
			c.up = true
			n.syncPods(ctx, c)
		}
		out = append(out, c)
	}
	return out
}

func (c *criSource) close() { _ = c.conn.Close() }

// version asks the runtime's name, which is the pods' container.runtime.name.
func (c *criSource) version(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return fmt.Errorf("CRI Version: %w", err)
	}
	c.name = v.GetRuntimeName()
	return nil
}

// syncCRI lists every runtime's pods again.
func (n *Namer) syncCRI(ctx context.Context) {
	for _, c := range n.cris {
		if !c.up {
			if err := c.version(ctx); err != nil {
				n.log.Debug("CRI runtime does not answer", "socket", c.socket, "error", err)
				continue
			}
			c.up = true
			n.log.Info("CRI runtime answers: pods named", "socket", c.socket, "runtime", c.name)
		}
		n.syncPods(ctx, c)
	}
}

// syncPods learns the ready sandboxes not known yet; the others are gone.
func (n *Namer) syncPods(ctx context.Context, c *criSource) {
	lctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := c.rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{})
	cancel()
	if err != nil {
		c.up = false
		n.errors.Add(1)
		n.log.Warn("CRI runtime does not answer; pods are named again once it does", "socket", c.socket, "error", err)
		return
	}
	keep := make(map[string]bool)
	for _, sb := range resp.GetItems() {
		if sb.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		key := c.prefix + sb.GetId()
		keep[key] = true
		n.mu.Lock()
		o := n.tab.get(key)
		n.mu.Unlock()
		// A sandbox keeps its namespace for its whole life.
		if o != nil && o.alive() {
			continue
		}
		if o, err := n.podOwner(ctx, c, key, sb); err != nil {
			n.fail("pod not named", err, "sandbox", sb.GetId())
		} else {
			n.put(o)
		}
	}
	n.mu.Lock()
	n.tab.goneExcept(c.prefix, keep, time.Now())
	n.mu.Unlock()
}

// podOwner reads a sandbox's namespace from its verbose status.
func (n *Namer) podOwner(ctx context.Context, c *criSource, key string, sb *runtimeapi.PodSandbox) (owner, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
	if err != nil {
		return owner{}, fmt.Errorf("CRI PodSandboxStatus: %w", err)
	}
	md := sb.GetMetadata()
	o := owner{key: key, kind: kindPod, aliases: []string{md.GetNamespace() + "/" + md.GetName()}}
	if st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		o.inode = n.hostInode
		return o, nil
	}
	if o.inode, o.probe, err = n.sandboxInode(st.GetInfo()); err != nil {
		return owner{}, err
	}
	if sb.GetCreatedAt() > 0 {
		o.from = time.Unix(0, sb.GetCreatedAt())
	}
	o.attrs = []attribute.KeyValue{
		attrkey.NetnsName.String(md.GetNamespace() + "/" + md.GetName()),
		attrkey.K8sPodName.String(md.GetName()),
		attrkey.K8sPodUID.String(md.GetUid()),
		attrkey.K8sNamespaceName.String(md.GetNamespace()),
		attrkey.ContainerRuntimeName.String(c.name),
	}
	return o, nil
}

// sandboxInfo is what containerd and CRI-O both put, as JSON, under "info" in a
// sandbox's verbose status: the OCI spec of its pause container, which names the
// network namespace's path, and (containerd) the pause process.
type sandboxInfo struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

// sandboxInode reads the namespace's inode from its path, or from the pause process,
// and says which path it read.
func (n *Namer) sandboxInode(info map[string]string) (uint32, string, error) {
	var si sandboxInfo
	if err := json.Unmarshal([]byte(info["info"]), &si); err != nil {
		return 0, "", fmt.Errorf("reading the sandbox's verbose status: %w", err)
	}
	for _, ns := range si.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			if inode, err := inodeOf(ns.Path); err == nil {
				return inode, ns.Path, nil
			}
		}
	}
	if si.Pid > 0 {
		path := filepath.Join(n.procRoot, strconv.Itoa(si.Pid), "ns", "net")
		inode, err := inodeOf(path)
		return inode, path, err
	}
	return 0, "", errors.New("the sandbox's verbose status names no readable network namespace nor process")
}
