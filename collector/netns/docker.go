package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

// engineAPIVersion is pinned in every path: Docker 20.10 and newer serve API 1.41, and
// the fields read here are the same in every version since.
const engineAPIVersion = "v1.41"

// Bounds of the Engine API client: one request's time, and the bytes read of a reply.
const (
	requestTimeout  = 5 * time.Second
	maxListBytes    = 64 << 20
	maxInspectBytes = 4 << 20
	maxErrorBytes   = 4 << 10
)

// dockerPrefix keys the owners learnt from Docker: docker/<container id>.
const dockerPrefix = "docker/"

// eventFilters are the only events the namer asks for: a container's namespace comes
// with its start and goes with its death; a rename renames it.
const eventFilters = `{"type":["container"],"event":["create","start","die","destroy","rename"]}`

// engineAPI is a client of the few Engine API endpoints the namer reads, over the
// daemon's unix socket.
type engineAPI struct {
	client    *http.Client
	transport *http.Transport
}

func newEngineAPI(socket string) *engineAPI {
	dialer := &net.Dialer{Timeout: requestTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &engineAPI{client: &http.Client{Transport: tr}, transport: tr}
}

func (a *engineAPI) close() { a.transport.CloseIdleConnections() }

// engineContainer is what the namer reads of GET /containers/{id}/json.
type engineContainer struct {
	ID    string `json:"Id"`
	Name  string `json:"Name"`
	State struct {
		Running    bool   `json:"Running"`
		Pid        int    `json:"Pid"`
		StartedAt  string `json:"StartedAt"`  // RFC 3339, set once the process runs
		FinishedAt string `json:"FinishedAt"` // RFC 3339, set once it exited
	} `json:"State"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	HostConfig struct {
		NetworkMode string `json:"NetworkMode"`
	} `json:"HostConfig"`
	NetworkSettings struct {
		SandboxKey string `json:"SandboxKey"`
	} `json:"NetworkSettings"`
}

// engineEvent is what the namer reads of an event of GET /events.
type engineEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID string `json:"ID"`
		// Attributes of a container's event: its name, image and labels.
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	TimeNano int64 `json:"timeNano"`
}

// time is when the event happened, as the daemon says, or now when it does not.
func (ev engineEvent) time() time.Time {
	if ev.TimeNano > 0 {
		return time.Unix(0, ev.TimeNano)
	}
	return time.Now()
}

// get sends GET path and returns the reply of a 200; any other status is an error
// carrying the daemon's message, errGone for a 404.
func (a *engineAPI) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := "http://docker/" + engineAPIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("docker engine API: %w", err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker engine API: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var msg struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	if json.Unmarshal(b, &msg) != nil {
		msg.Message = strings.TrimSpace(string(b))
	}
	err = fmt.Errorf("docker engine API: GET %s: %s: %s", path, resp.Status, msg.Message)
	if resp.StatusCode == http.StatusNotFound {
		err = fmt.Errorf("%w: %w", errGone, err)
	}
	return nil, err
}

// getJSON decodes the reply to GET path into out, reading at most limit bytes.
func (a *engineAPI) getJSON(ctx context.Context, path string, limit int64, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := a.get(ctx, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(out); err != nil {
		return fmt.Errorf("docker engine API: reading GET %s: %w", path, err)
	}
	return nil
}

// running lists the IDs of the running containers.
func (a *engineAPI) running(ctx context.Context) ([]string, error) {
	var list []struct {
		ID string `json:"Id"`
	}
	if err := a.getJSON(ctx, "/containers/json", maxListBytes, &list); err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return ids, nil
}

func (a *engineAPI) inspect(ctx context.Context, id string) (engineContainer, error) {
	var c engineContainer
	err := a.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/json", maxInspectBytes, &c)
	return c, err
}

// events streams the container events from since on (the daemon replays those it
// still holds) until ctx ends or the stream breaks, calling fn for each. The daemon
// sends the reply's header with the first event only, so this blocks until then.
func (a *engineAPI) events(ctx context.Context, since time.Time, fn func(engineEvent)) error {
	q := url.Values{
		"filters": {eventFilters},
		"since":   {strconv.FormatInt(since.Unix(), 10) + "." + fmt.Sprintf("%09d", since.Nanosecond())},
	}
	resp, err := a.get(ctx, "/events", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev engineEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("docker engine API: event stream: %w", err)
		}
		fn(ev)
	}
}

// dockerSource names containers from the Engine API: a full listing at start, after a
// lost event stream and every resync, and each container's start, death and rename as
// events tell them. Only its run goroutine (and Start before it) changes its state.
type dockerSource struct {
	n       *Namer
	api     *engineAPI
	created *createdContainers
	socket  string
	since   time.Time // events are asked for from here on
	up      bool      // the last call answered
}

// startDocker learns the running containers; a socket that is missing leaves Docker
// out, one that does not answer is retried in the background.
func (n *Namer) startDocker(ctx context.Context) *dockerSource {
	if _, err := os.Stat(n.dockerSocket); err != nil {
		n.log.Warn("Docker containers not named: no Engine API socket (set --netns-docker-socket, or \"\" where Docker does not run)",
			"socket", n.dockerSocket, "error", errors.Unwrap(err))
		return nil
	}
	d := &dockerSource{n: n, api: newEngineAPI(n.dockerSocket), created: newCreatedContainers(n.limit), socket: n.dockerSocket, since: time.Now()}
	// Watched before the first listing, so that no container started after it is missed.
	d.openSandboxes()
	if err := d.sync(ctx, true); err != nil {
		n.errors.Add(1)
		n.log.Warn("Docker containers not named until the Engine API answers", "socket", n.dockerSocket, "error", err)
		return d
	}
	d.up = true
	return d
}

// run follows the event stream and relists every resync until ctx ends.
func (d *dockerSource) run(ctx context.Context) {
	events := make(chan engineEvent, 256)
	lost := make(chan error, 1)
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		d.stream(ctx, events, lost)
	}()
	defer func() { <-streamDone }()
	if w := d.n.sandboxes.Load(); w != nil {
		d.runSandboxes(ctx, w)
	}
	tick := time.NewTicker(d.n.resync)
	defer tick.Stop()
	full := !d.up
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			d.handle(ctx, ev)
		case err := <-lost:
			d.n.fail("Docker event stream lost", err)
			// Events missed while it was down are replayed from the last one seen, as
			// far as the daemon holds them; a full listing covers the rest.
			full = d.resync(ctx, true)
		case <-tick.C:
			full = d.resync(ctx, full)
			if d.n.sandboxes.Load() == nil {
				if w := d.openSandboxes(); w != nil {
					d.runSandboxes(ctx, w)
				}
			}
		}
	}
}

// openSandboxes starts remembering the namespaces Docker mounts for its containers'
// sandboxes. The directory appears with the first container: until then it is tried
// again at each resync.
func (d *dockerSource) openSandboxes() *sandboxWatch {
	w, err := watchSandboxes(d.n.procRoot, d.n.sandboxDir, d.n.limit, d.mounted)
	if err != nil {
		d.n.log.Debug("Docker's sandboxes not watched: a container that exits before its start is reported is not named", "error", err)
		return nil
	}
	d.n.sandboxes.Store(w)
	return w
}

// mounted names a namespace Docker has just mounted on a sandbox, before the
// container's own process runs: the process holding it (runc's, in the prestart hook
// that mounts it) is already in the container's cgroup, which gives the container's ID,
// and the container's create event gave its name and labels. The start event comes
// later, often after a short-lived container's packets have been exported.
func (d *dockerSource) mounted(path string, ns sandboxNS) {
	c, ok := d.n.containerIn(ns.inode)
	if !ok {
		return
	}
	attrs, ok := d.created.get(c.id)
	if !ok {
		return
	}
	name := attrs["name"]
	o := owner{key: dockerPrefix + c.id, inode: ns.inode, kind: kindDocker, aliases: []string{name, c.id, shortID(c.id)},
		attrs: dockerAttrs(c.id, name, attrs), probe: path, from: ns.at}
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	if cur := d.n.tab.get(o.key); cur != nil && cur.alive() && cur.inode == o.inode {
		return
	}
	d.n.putLocked(o)
	d.n.publishLocked()
}

func (d *dockerSource) runSandboxes(ctx context.Context, w *sandboxWatch) {
	d.n.wg.Add(1)
	go func() {
		defer d.n.wg.Done()
		w.run(ctx)
	}()
}

// resync lists the containers again and says whether the next listing must be full.
func (d *dockerSource) resync(ctx context.Context, full bool) bool {
	err := d.sync(ctx, full)
	switch {
	case err != nil && d.up:
		d.n.errors.Add(1)
		d.n.log.Warn("Docker Engine API does not answer; containers are named again once it does", "socket", d.socket, "error", err)
	case err != nil:
		d.n.fail("Docker Engine API does not answer", err, "socket", d.socket)
	case !d.up:
		d.n.log.Info("Docker Engine API answers: containers named", "socket", d.socket)
	}
	d.up = err == nil
	return err != nil
}

// stream reads the event stream into events, reconnecting after a loss (reported on
// lost) with a growing pause, from the last event seen.
func (d *dockerSource) stream(ctx context.Context, events chan<- engineEvent, lost chan<- error) {
	since := d.since
	pause := 500 * time.Millisecond
	for {
		read := false
		err := d.api.events(ctx, since, func(ev engineEvent) {
			read = true
			if ev.TimeNano > 0 {
				since = time.Unix(0, ev.TimeNano)
			}
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		})
		if ctx.Err() != nil {
			return
		}
		if read {
			pause = 500 * time.Millisecond
		}
		select {
		case lost <- err:
		default: // a loss is already waiting to be handled
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, d.n.resync)
	}
}

// handle applies one event.
func (d *dockerSource) handle(ctx context.Context, ev engineEvent) {
	if ev.Type != "container" || ev.Actor.ID == "" {
		return
	}
	switch ev.Action {
	case "create":
		d.created.put(ev.Actor.ID, ev.Actor.Attributes)
	case "start", "rename":
		var renamed time.Time
		if ev.Action == "rename" {
			renamed = ev.time()
		}
		if d.learn(ctx, ev.Actor.ID, renamed) {
			d.n.publish()
		}
	case "die", "destroy":
		if ev.Action == "destroy" {
			d.created.remove(ev.Actor.ID)
		}
		d.n.mu.Lock()
		d.n.tab.gone(dockerPrefix+ev.Actor.ID, ev.time())
		d.n.publishLocked()
		d.n.mu.Unlock()
	}
}

// sync lists the running containers and learns those not known yet (all of them when
// full: one may have restarted unseen, in a new namespace); the others are gone.
func (d *dockerSource) sync(ctx context.Context, full bool) error {
	ids, err := d.api.running(ctx)
	if err != nil {
		return err
	}
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		key := dockerPrefix + id
		keep[key] = true
		d.n.mu.Lock()
		o := d.n.tab.get(key)
		known := o != nil && o.alive()
		d.n.mu.Unlock()
		if !known || full {
			d.learn(ctx, id, time.Time{})
		}
	}
	d.n.mu.Lock()
	d.n.tab.goneExcept(dockerPrefix, keep, time.Now())
	d.n.publishLocked()
	d.n.mu.Unlock()
	return nil
}

// learn inspects a container and records it, reporting whether it did. renamed is when
// a rename event says it was renamed (zero for any other look).
func (d *dockerSource) learn(ctx context.Context, id string, renamed time.Time) bool {
	c, err := d.api.inspect(ctx, id)
	if err == nil {
		var o owner
		if o, err = d.owner(c); err == nil {
			o.renamed = renamed
			d.n.mu.Lock()
			defer d.n.mu.Unlock()
			d.n.putLocked(o)
			if !c.State.Running {
				d.n.tab.gone(o.key, runtimeTime(c.State.FinishedAt, time.Now()))
			}
			return true
		}
	}
	if errors.Is(err, errGone) {
		// A container that lived for less than the inspection took.
		d.n.log.Debug("container gone before it was inspected", "id", id)
		return false
	}
	d.n.fail("container not named", err, "id", id)
	return false
}

// owner is what a running container says of its namespace. One in its own namespace
// names it; one sharing another container's (--network container:NAME) or the host's
// is a member only, for --filter-container.
func (d *dockerSource) owner(c engineContainer) (owner, error) {
	name := strings.TrimPrefix(c.Name, "/")
	o := owner{key: dockerPrefix + c.ID, kind: kindDocker, aliases: []string{name, c.ID, shortID(c.ID)}}
	sandbox, seen := d.n.sandboxes.Load().lookup(c.NetworkSettings.SandboxKey)
	if !c.State.Running || c.State.Pid <= 0 {
		// It exited before it was inspected (a `docker run --rm` of 100 ms): its
		// namespace is gone, but the watch saw it mounted on the sandbox.
		if !seen || c.HostConfig.NetworkMode == "host" || strings.HasPrefix(c.HostConfig.NetworkMode, "container:") {
			return owner{}, errGone
		}
		o.inode, o.attrs, o.from = sandbox.inode, dockerAttrs(c.ID, name, c.Config.Labels), d.born(c, sandbox, seen)
		return o, nil
	}
	ownNS := filepath.Join(d.n.procRoot, strconv.Itoa(c.State.Pid), "ns", "net")
	mode := c.HostConfig.NetworkMode
	switch {
	case mode == "host":
		o.inode = d.n.hostInode
		return o, nil
	case strings.HasPrefix(mode, "container:"):
		d.n.mu.Lock()
		if other := d.n.tab.get(dockerPrefix + strings.TrimPrefix(mode, "container:")); other != nil && other.alive() {
			o.inode = other.inode
		}
		d.n.mu.Unlock()
		if o.inode != 0 {
			return o, nil
		}
		inode, err := inodeOf(ownNS)
		if err != nil {
			return owner{}, fmt.Errorf("reading the namespace of container %s: %w", name, err)
		}
		o.inode = inode
		return o, nil
	}
	// The sandbox key is the namespace's own file; the process's link is read where
	// that path is not visible (pktspan in a container without Docker's run directory).
	o.probe = c.NetworkSettings.SandboxKey
	inode, err := inodeOf(o.probe)
	if o.probe == "" || err != nil {
		o.probe = ownNS
		if inode, err = inodeOf(ownNS); err != nil {
			return owner{}, fmt.Errorf("reading the namespace of container %s: %w", name, err)
		}
	}
	o.inode = inode
	o.attrs = dockerAttrs(c.ID, name, c.Config.Labels)
	o.from = d.born(c, sandbox, seen && sandbox.inode == inode)
	return o, nil
}

// born is when a container's namespace began to be its own: when its sandbox's
// namespace was seen mounted, before the process ran, or else when Docker says it
// started (zero when it does not say).
func (d *dockerSource) born(c engineContainer, sandbox sandboxNS, seen bool) time.Time {
	started := runtimeTime(c.State.StartedAt, time.Time{})
	if seen && (started.IsZero() || sandbox.at.Before(started)) {
		return sandbox.at
	}
	return started
}

// runtimeTime reads a time Docker reports, or def where it reports none: it writes the
// zero time for what has not happened.
func runtimeTime(s string, def time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil && t.Year() > 1 {
		return t
	}
	return def
}

// dockerAttrs names a container's namespace: after the container, or after its pod
// where Kubernetes' labels say it holds one (dockershim's pod sandboxes).
func dockerAttrs(id, name string, labels map[string]string) []attribute.KeyValue {
	pod, ns, uid := labels["io.kubernetes.pod.name"], labels["io.kubernetes.pod.namespace"], labels["io.kubernetes.pod.uid"]
	netnsName := name
	if pod != "" && ns != "" {
		netnsName = ns + "/" + pod
	}
	attrs := []attribute.KeyValue{
		attrkey.NetnsName.String(netnsName),
		attrkey.ContainerID.String(id),
		attrkey.ContainerName.String(name),
		attrkey.ContainerRuntimeName.String("docker"),
	}
	if svc := labels["com.docker.compose.service"]; svc != "" {
		attrs = append(attrs, attrkey.ComposeService.String(svc))
	}
	if pod != "" {
		attrs = append(attrs, attrkey.K8sPodName.String(pod))
	}
	if uid != "" {
		attrs = append(attrs, attrkey.K8sPodUID.String(uid))
	}
	if ns != "" {
		attrs = append(attrs, attrkey.K8sNamespaceName.String(ns))
	}
	return slices.Clip(attrs)
}

// shortID is the 12-character form of a container ID that docker ps shows.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// createdContainers keeps what create events said of the containers not destroyed yet,
// within a limit: the name and labels of a container whose sandbox is mounted before
// its start is reported.
type createdContainers struct {
	limit   int
	evicted atomic.Uint64 // containers forgotten for the limit before they were destroyed

	mu    sync.Mutex // guards what follows
	attrs map[string]map[string]string
	order []string // IDs, the oldest first; some may be destroyed already
}

func newCreatedContainers(limit int) *createdContainers {
	return &createdContainers{limit: limit, attrs: make(map[string]map[string]string)}
}

func (c *createdContainers) put(id string, attrs map[string]string) {
	if id == "" || attrs["name"] == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.attrs[id]; !ok {
		c.order = append(c.order, id)
	}
	c.attrs[id] = attrs
	for len(c.attrs) > c.limit || len(c.order) > 2*c.limit {
		oldest := c.order[0]
		c.order = c.order[1:]
		if _, ok := c.attrs[oldest]; ok {
			delete(c.attrs, oldest)
			c.evicted.Add(1)
		}
	}
}

func (c *createdContainers) get(id string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.attrs[id]
	return a, ok
}

func (c *createdContainers) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.attrs, id)
}
