package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// host is a fake of what the namer reads on a host: /proc (pid 1 and the processes
// the tests add), /run/netns, and namespace files standing for network namespaces (a
// temp file's inode plays a namespace's inode).
type host struct {
	t          *testing.T
	dir        string
	proc       string
	netnsDir   string
	sandboxDir string // Docker's namespace files of its sandboxes
	hostNS     uint32
}

func newHost(t *testing.T) *host {
	t.Helper()
	dir := t.TempDir()
	h := &host{t: t, dir: dir, proc: filepath.Join(dir, "proc"), netnsDir: filepath.Join(dir, "run-netns"), sandboxDir: filepath.Join(dir, "docker-netns")}
	for _, d := range []string{h.proc, h.netnsDir, h.sandboxDir, filepath.Join(dir, "ns")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, h.hostNS = h.process(1, h.namespace("host"), "0::/init.scope\n")
	return h
}

// namespace makes a file standing for a new network namespace and returns its path.
func (h *host) namespace(name string) string {
	h.t.Helper()
	path := filepath.Join(h.dir, "ns", name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// inode is the inode of a namespace file, as the kernel would report the namespace's.
func (h *host) inode(path string) uint32 {
	h.t.Helper()
	inode, err := inodeOf(path)
	if err != nil {
		h.t.Fatal(err)
	}
	return inode
}

// process adds /proc/PID with its namespace link pointing at ns and its cgroup file,
// and returns the link and the namespace's inode.
func (h *host) process(pid int, ns, cgroup string) (string, uint32) {
	h.t.Helper()
	dir := filepath.Join(h.proc, strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	link := filepath.Join(dir, "ns", "net")
	if err := os.Symlink(ns, link); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return link, h.inode(ns)
}

// ipNetns adds /run/netns/NAME for a new namespace and returns its inode.
func (h *host) ipNetns(name string) uint32 {
	h.t.Helper()
	ns := h.namespace("ip-" + name)
	if err := os.Symlink(ns, filepath.Join(h.netnsDir, name)); err != nil {
		h.t.Fatal(err)
	}
	return h.inode(ns)
}

// socketPath is a path for a unix socket short enough for sun_path (108 bytes), which
// t.TempDir's long names may pass.
func socketPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// serveUnix serves h on a unix socket until the test ends.
func serveUnix(t *testing.T, path string, h http.Handler) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
}

// engine is a fake Docker Engine API 1.41: containers to list and inspect, and an event
// stream the test writes to and may cut.
type engine struct {
	t      *testing.T
	socket string

	mu         sync.Mutex
	containers map[string]*engineContainer
	sendMu     sync.Mutex // held while events go out: apart from mu, which inspect takes
	streams    map[*stream]bool

	lists, inspects atomic.Int64
	streamsOpened   atomic.Int64
	inspected       chan string // IDs inspected while running, for tests that wait on it
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	e := &engine{t: t, socket: socketPath(t, "docker.sock"), containers: map[string]*engineContainer{}, streams: map[*stream]bool{},
		inspected: make(chan string, 64)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.41/containers/json", e.list)
	mux.HandleFunc("GET /v1.41/containers/{id}/json", e.inspect)
	mux.HandleFunc("GET /v1.41/events", e.events)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the namer asked the Engine API for %s %s", r.Method, r.URL)
		http.Error(w, `{"message":"page not found"}`, http.StatusNotFound)
	})
	serveUnix(t, e.socket, mux)
	return e
}

// containerID makes a 64-hex-digit container ID from a name.
func containerID(name string) string {
	return fmt.Sprintf("%064x", []byte(name))[:64]
}

// run adds a running container and returns it for the caller to adjust before
// announcing it (start).
func (e *engine) run(name string, pid int, sandboxKey string, labels map[string]string) *engineContainer {
	c := &engineContainer{ID: containerID(name), Name: "/" + name}
	c.State.Running, c.State.Pid, c.State.StartedAt = true, pid, time.Now().Format(time.RFC3339Nano)
	c.Config.Labels = labels
	c.HostConfig.NetworkMode = "bridge"
	c.NetworkSettings.SandboxKey = sandboxKey
	e.mu.Lock()
	e.containers[c.ID] = c
	e.mu.Unlock()
	return c
}

// change edits a container under the engine's lock.
func (e *engine) change(id string, f func(c *engineContainer)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e.containers[id])
}

// stop marks a container dead; remove deletes it.
func (e *engine) stop(id string) {
	e.change(id, func(c *engineContainer) { c.State.Running, c.State.Pid = false, 0 })
}

func (e *engine) remove(id string) {
	e.mu.Lock()
	delete(e.containers, id)
	e.mu.Unlock()
}

// stream is one open event stream: the handler writes what arrives on ch until ch is
// closed (cut) or the client goes (done).
type stream struct {
	ch   chan engineEvent
	done chan struct{}
}

// emit sends an event to every open stream.
func (e *engine) emit(action, id string) {
	ev := engineEvent{Type: "container", Action: action, TimeNano: time.Now().UnixNano()}
	ev.Actor.ID = id
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.mu.Lock()
	if c := e.containers[id]; c != nil {
		// As Docker does: the name, the image and the labels.
		ev.Actor.Attributes = map[string]string{"name": strings.TrimPrefix(c.Name, "/"), "image": "busybox"}
		maps.Copy(ev.Actor.Attributes, c.Config.Labels)
	}
	var open []*stream
	for s := range e.streams {
		open = append(open, s)
	}
	e.mu.Unlock()
	for _, s := range open {
		select {
		case s.ch <- ev:
		case <-s.done:
		}
	}
}

// cut ends every open event stream, as a daemon restart would.
func (e *engine) cut() {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.streams {
		close(s.ch)
		delete(e.streams, s)
	}
}

// waitStreams waits until n streams were opened in all.
func (e *engine) waitStreams(n int64) {
	e.t.Helper()
	eventually(e.t, "the namer opens event stream "+strconv.FormatInt(n, 10), func() bool { return e.streamsOpened.Load() >= n })
}

func (e *engine) list(w http.ResponseWriter, r *http.Request) {
	e.lists.Add(1)
	e.mu.Lock()
	var out []map[string]any
	for _, c := range e.containers {
		if c.State.Running {
			out = append(out, map[string]any{"Id": c.ID, "Names": []string{c.Name}, "State": "running"})
		}
	}
	e.mu.Unlock()
	writeJSON(w, out)
}

func (e *engine) inspect(w http.ResponseWriter, r *http.Request) {
	e.inspects.Add(1)
	e.mu.Lock()
	c, ok := e.containers[r.PathValue("id")]
	var body []byte
	if ok {
		body, _ = json.Marshal(c)
	}
	e.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"No such container: %s"}`, r.PathValue("id"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	select {
	case e.inspected <- r.PathValue("id"):
	default:
	}
}

// waitInspected waits until the namer inspected the container id.
func (e *engine) waitInspected(id string) {
	e.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-e.inspected:
			if got == id {
				return
			}
		case <-timeout:
			e.t.Fatalf("container %s not inspected", id)
		}
	}
}

func (e *engine) events(w http.ResponseWriter, r *http.Request) {
	if got := r.URL.Query().Get("filters"); got != eventFilters {
		e.t.Errorf("events filters = %s, want %s", got, eventFilters)
	}
	if _, err := strconv.ParseFloat(r.URL.Query().Get("since"), 64); err != nil {
		e.t.Errorf("events since = %q, not a timestamp", r.URL.Query().Get("since"))
	}
	st := &stream{ch: make(chan engineEvent, 64), done: make(chan struct{})}
	e.mu.Lock()
	e.streams[st] = true
	e.mu.Unlock()
	e.streamsOpened.Add(1)
	defer func() {
		close(st.done)
		e.mu.Lock()
		delete(e.streams, st)
		e.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-st.ch:
			if !ok {
				return
			}
			_ = enc.Encode(ev)
			w.(http.Flusher).Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer collects a namer's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines holding s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// start starts a namer on the fake host, with Docker and CRI off unless opts say
// otherwise, long resyncs and grace, and a log kept in the returned buffer.
func start(t *testing.T, h *host, opts ...Option) (*Namer, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	all := append([]Option{
		withPaths(h.proc, h.netnsDir, nil),
		withSandboxDir(h.sandboxDir),
		WithDockerSocket(""),
		WithResync(time.Hour),
		WithGrace(time.Hour),
		WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}, opts...)
	n := New(all...)
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
	})
	return n, logs
}

// now is when a packet seen now was seen.
func now() int64 { return time.Now().UnixNano() }

// attrs renders the attributes of a namespace a packet is in now as key=value lines,
// in their order.
func attrs(n *Namer, inode uint32) string {
	var b strings.Builder
	for _, kv := range n.NetnsAttrs(inode, now()) {
		fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value.String())
	}
	return b.String()
}

// name is the pktspan.netns.name of a namespace a packet is in now, or "".
func name(n *Namer, inode uint32) string { return nameAt(n, inode, now()) }

// nameAt is the pktspan.netns.name of a namespace a packet was in at a time, or "".
func nameAt(n *Namer, inode uint32, at int64) string {
	for _, kv := range n.NetnsAttrs(inode, at) {
		if kv.Key == "pktspan.netns.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

// kv renders attributes as attrs does.
func kv(pairs ...attribute.KeyValue) string {
	var b strings.Builder
	for _, p := range pairs {
		fmt.Fprintf(&b, "%s=%s\n", p.Key, p.Value.String())
	}
	return b.String()
}

var errNoFollow = errors.New("no follow set yet")

// followLog records the sets a namer's WithFollow reports.
type followLog struct {
	mu   sync.Mutex
	sets [][]uint32
	fail atomic.Bool
}

func (f *followLog) set(inodes []uint32) error {
	if f.fail.Load() {
		return errors.New("map update refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, append([]uint32(nil), inodes...))
	return nil
}

func (f *followLog) last() ([]uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sets) == 0 {
		return nil, errNoFollow
	}
	return f.sets[len(f.sets)-1], nil
}

// netListenUnix listens on a unix socket path, for a test to close at once.
func netListenUnix(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Closing a listener removes its file; this one's file must stay, as a dead
	// daemon's does.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	return l, nil
}

// discard is a logger for tests that do not read the log.
func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
