package netns

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// cri is a fake CRI runtime serving the RuntimeService calls the namer makes: Version,
// ListPodSandbox and a verbose PodSandboxStatus.
type cri struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	name   string // "" answers Version with Unimplemented: not a CRI runtime
	socket string

	mu   sync.Mutex
	pods map[string]*fakePod

	lists, statuses atomic.Int64
}

type fakePod struct {
	sb          *runtimeapi.PodSandbox
	hostNetwork bool
	info        string // the verbose status's "info" JSON
}

func newCRI(t *testing.T, runtimeName string) *cri {
	t.Helper()
	c := &cri{name: runtimeName, socket: socketPath(t, "cri.sock"), pods: map[string]*fakePod{}}
	l, err := net.Listen("unix", c.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, c)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return c
}

// pod adds a ready sandbox whose verbose status names its namespace by path (pid 0) or
// by its pause process (path "").
func (c *cri) pod(id, namespace, name, uid, nsPath string, pid int) {
	info := map[string]any{}
	if pid > 0 {
		info["pid"] = pid
	}
	if nsPath != "" {
		info["runtimeSpec"] = map[string]any{"linux": map[string]any{"namespaces": []map[string]string{
			{"type": "pid"}, {"type": "network", "path": nsPath}, {"type": "mount"},
		}}}
	}
	b, _ := json.Marshal(info)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods[id] = &fakePod{info: string(b), sb: &runtimeapi.PodSandbox{
		Id:       id,
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		State:    runtimeapi.PodSandboxState_SANDBOX_READY,
	}}
}

func (c *cri) setState(id string, st runtimeapi.PodSandboxState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods[id].sb.State = st
}

func (c *cri) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	if c.name == "" {
		return nil, status.Error(codes.Unimplemented, "unknown service runtime.v1.RuntimeService")
	}
	return &runtimeapi.VersionResponse{RuntimeName: c.name, RuntimeVersion: "1.7.0", RuntimeApiVersion: "v1"}, nil
}

func (c *cri) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	c.lists.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, p := range c.pods {
		resp.Items = append(resp.Items, p.sb)
	}
	return resp, nil
}

func (c *cri) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	c.statuses.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pods[req.GetPodSandboxId()]
	if p == nil {
		return nil, status.Error(codes.NotFound, "no such sandbox")
	}
	if !req.GetVerbose() {
		return nil, status.Error(codes.InvalidArgument, "the fake answers verbose requests only")
	}
	mode := runtimeapi.NamespaceMode_POD
	if p.hostNetwork {
		mode = runtimeapi.NamespaceMode_NODE
	}
	return &runtimeapi.PodSandboxStatusResponse{
		Status: &runtimeapi.PodSandboxStatus{
			Id: p.sb.Id, Metadata: p.sb.Metadata, State: p.sb.State,
			Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{Network: mode}}},
		},
		Info: map[string]string{"info": p.info},
	}, nil
}

func TestPodsAreNamedThroughCRIByTheirNamespacePathOrPauseProcess(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "containerd")
	byPath := h.namespace("pod-a")
	c.pod("sb-a", "shop", "web-5f7c", "11111111-2222-4333-8444-555555555555", byPath, 0)
	byPidNS := h.namespace("pod-b")
	h.process(4242, byPidNS, "")
	c.pod("sb-b", "kube-system", "coredns-1", "66666666-7777-4888-9999-000000000000", "", 4242)
	c.pod("sb-host", "kube-system", "kube-proxy-x", "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "", 1)
	c.pods["sb-host"].hostNetwork = true
	c.pod("sb-old", "shop", "web-old", "00000000-0000-4000-8000-000000000000", h.namespace("pod-old"), 0)
	c.setState("sb-old", runtimeapi.PodSandboxState_SANDBOX_NOTREADY)

	follow := &followLog{}
	n, _ := start(t, h, WithCRISocket(c.socket), WithFollow([]string{"kube-system/coredns-1", "kube-system/kube-proxy-x"}, follow.set))

	want := kv(
		attrkey.NetnsName.String("shop/web-5f7c"),
		attrkey.K8sPodName.String("web-5f7c"),
		attrkey.K8sPodUID.String("11111111-2222-4333-8444-555555555555"),
		attrkey.K8sNamespaceName.String("shop"),
		attrkey.ContainerRuntimeName.String("containerd"),
	)
	if got := attrs(n, h.inode(byPath)); got != want {
		t.Errorf("pod named by its namespace's path:\n%s\nwant\n%s", got, want)
	}
	if got := name(n, h.inode(byPidNS)); got != "kube-system/coredns-1" {
		t.Errorf("pod named by its pause process: %q", got)
	}
	if got := name(n, h.inode(h.dir+"/ns/pod-old")); got != "" {
		t.Errorf("a sandbox that is not ready is named %q", got)
	}
	if got := name(n, h.hostNS); got != "host" {
		t.Errorf("a host-network pod renamed the host %q", got)
	}
	if got, _ := follow.last(); !slices.Equal(got, sorted(h.inode(byPidNS), h.hostNS)) {
		t.Errorf("following %v, want coredns's namespace and the host's (kube-proxy)", got)
	}
	if st := n.Stats(); st.Errors != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

func sorted(v ...uint32) []uint32 {
	slices.Sort(v)
	return v
}

// The CRI has no event stream every runtime serves: a pod's first packet, a lookup that
// misses, makes the namer list the pods then, not at the next resync.
func TestAPodStartedLaterIsNamedOnItsFirstLookup(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "cri-o")
	n, _ := start(t, h, WithCRISocket(c.socket))

	ns := h.namespace("new-pod")
	c.pod("sb-new", "default", "job-1", "12121212-3434-4565-8787-909090909090", ns, 0)
	if n.NetnsAttrs(h.inode(ns), now()) != nil {
		t.Fatal("named before it was listed")
	}
	eventually(t, "the missed pod is named", func() bool { return name(n, h.inode(ns)) == "default/job-1" })
	if got := attrs(n, h.inode(ns)); !strings.Contains(got, "container.runtime.name=cri-o\n") {
		t.Errorf("runtime name from the CRI's Version:\n%s", got)
	}
	if st := n.Stats(); st.Misses == 0 {
		t.Errorf("Stats() = %+v: the lookup before the pod was known is not a miss", st)
	}

	// A namespace nobody owns is searched for once, not at every lookup.
	stranger := h.inode(h.namespace("stranger"))
	time.Sleep(missInterval) // the search for the pod above is not counted
	before := c.lists.Load()
	for range 50 {
		n.NetnsAttrs(stranger, now())
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(2 * missInterval)
	n.mu.Lock()
	tried := n.tried[stranger]
	n.mu.Unlock()
	if !tried || c.lists.Load()-before != 1 {
		t.Errorf("an unowned namespace looked up 50 times: tried=%v, pods listed %d times, want once", tried, c.lists.Load()-before)
	}
}

func TestAPodGoneFromTheListKeepsItsNameForTheGrace(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "containerd")
	ns := h.namespace("pod")
	c.pod("sb", "default", "api", "13131313-3434-4565-8787-909090909090", ns, 0)
	n, _ := start(t, h, WithCRISocket(c.socket), WithResync(50*time.Millisecond), WithGrace(300*time.Millisecond))
	if got := name(n, h.inode(ns)); got != "default/api" {
		t.Fatalf("named %q", got)
	}
	during := now()
	c.setState("sb", runtimeapi.PodSandboxState_SANDBOX_NOTREADY)
	eventually(t, "the stopped pod is gone", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get("pod:" + c.socket + "/sb")
		return o != nil && !o.alive()
	})
	if got := nameAt(n, h.inode(ns), during); got != "default/api" {
		t.Errorf("within its grace, a packet of the pod's life is named %q", got)
	}
	eventually(t, "the name is forgotten after the grace", func() bool { return nameAt(n, h.inode(ns), during) == "" })
}

// A pod's namespace removed (the runtime tore the sandbox down) is seen gone within a
// second, without waiting for the next listing: its inode may be the next pod's.
func TestAPodWhoseNamespaceWentIsGoneBeforeTheNextListing(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "containerd")
	ns := h.namespace("pod")
	c.pod("sb", "default", "api", "13131313-3434-4565-8787-909090909090", ns, 0)
	n, _ := start(t, h, WithCRISocket(c.socket))
	inode := h.inode(ns)
	if err := os.Remove(ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod is gone", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get("pod:" + c.socket + "/sb")
		return o != nil && !o.alive()
	})
	eventually(t, "a packet seen now is not the gone pod's", func() bool { return name(n, inode) == "" })
}

func TestARuntimeWithoutTheCRIIsOneWarningAndLeftOut(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "")
	n, logs := start(t, h, WithCRISocket(c.socket), WithResync(20*time.Millisecond))
	if got := logs.lines("level=WARN"); len(got) != 1 || !strings.Contains(got[0], "does not serve the CRI") {
		t.Errorf("warnings:\n%s\nwant one saying the runtime does not serve the CRI", strings.Join(got, ""))
	}
	time.Sleep(100 * time.Millisecond)
	if st := n.Stats(); st.Errors != 0 || len(n.cris) != 0 {
		t.Errorf("Stats() = %+v with %d CRI sources: a runtime without the CRI is asked again", st, len(n.cris))
	}
}

func TestDefaultCRISocketsAreUsedOnlyWhereTheyExist(t *testing.T) {
	h := newHost(t)
	c := newCRI(t, "containerd")
	ns := h.namespace("pod")
	c.pod("sb", "default", "api", "13131313-3434-4565-8787-909090909090", ns, 0)
	n := New(withPaths(h.proc, h.netnsDir, []string{socketPath(t, "absent.sock"), c.socket}),
		WithDockerSocket(""), WithLogger(discard()))
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if got := name(n, h.inode(ns)); got != "default/api" {
		t.Errorf("the pod on the default socket that exists is named %q", got)
	}
	if len(n.cris) != 1 {
		t.Errorf("%d CRI sources, want the one whose socket exists", len(n.cris))
	}
}
