package netns

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

func TestContainersAreNamedWithTheirIDComposeServiceAndPod(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	webNS, podNS := h.namespace("web"), h.namespace("pause")
	web := e.run("shop_web_1", 100, webNS, map[string]string{"com.docker.compose.service": "web", "com.docker.compose.project": "shop"})
	pause := e.run("k8s_POD_api-7d4b9_default_0a1b", 200, podNS, map[string]string{
		"io.kubernetes.pod.name": "api-7d4b9", "io.kubernetes.pod.namespace": "default",
		"io.kubernetes.pod.uid": "0a1b2c3d-0000-4000-8000-000000000001", "io.kubernetes.docker.type": "podsandbox",
	})
	n, _ := start(t, h, WithDockerSocket(e.socket))

	tests := []struct {
		name  string
		inode uint32
		want  string
	}{
		{"compose service", h.inode(webNS), kv(
			attrkey.NetnsName.String("shop_web_1"),
			attrkey.ContainerID.String(web.ID),
			attrkey.ContainerName.String("shop_web_1"),
			attrkey.ContainerRuntimeName.String("docker"),
			attrkey.ComposeService.String("web"),
		)},
		{"pod sandbox under dockershim", h.inode(podNS), kv(
			attrkey.NetnsName.String("default/api-7d4b9"),
			attrkey.ContainerID.String(pause.ID),
			attrkey.ContainerName.String("k8s_POD_api-7d4b9_default_0a1b"),
			attrkey.ContainerRuntimeName.String("docker"),
			attrkey.K8sPodName.String("api-7d4b9"),
			attrkey.K8sPodUID.String("0a1b2c3d-0000-4000-8000-000000000001"),
			attrkey.K8sNamespaceName.String("default"),
		)},
		{"host", h.hostNS, kv(attrkey.NetnsName.String("host"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := attrs(n, tt.inode); got != tt.want {
				t.Errorf("NetnsAttrs(%d) =\n%s\nwant\n%s", tt.inode, got, tt.want)
			}
		})
	}
	if st := n.Stats(); st.Names != 3 || st.Errors != 0 || st.Misses != 0 {
		t.Errorf("Stats() = %+v, want 3 names, no errors, no misses", st)
	}
}

func TestAContainerSharingAnothersNamespaceLeavesItNamedAfterItsOwner(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	ns := h.namespace("owner")
	owner := e.run("owner", 100, ns, nil)
	// A sharer has no sandbox of its own; its process is in the owner's namespace.
	h.process(101, ns, "0::/system.slice/docker-"+containerID("sharer")+".scope\n")
	e.run("sharer", 101, "", nil)
	e.change(containerID("sharer"), func(c *engineContainer) { c.HostConfig.NetworkMode = "container:" + owner.ID })
	follow := &followLog{}
	n, _ := start(t, h, WithDockerSocket(e.socket), WithFollow([]string{"sharer"}, follow.set))

	if got := name(n, h.inode(ns)); got != "owner" {
		t.Errorf("the shared namespace is named %q, want owner", got)
	}
	if got, err := follow.last(); err != nil || !slices.Equal(got, []uint32{h.inode(ns)}) {
		t.Errorf("--filter-container sharer follows %v (%v), want the owner's namespace %d", got, err, h.inode(ns))
	}

	// A sharer started after its owner, through an event.
	h.process(102, ns, "")
	late := e.run("late-sharer", 102, "", nil)
	e.change(late.ID, func(c *engineContainer) { c.HostConfig.NetworkMode = "container:" + owner.ID })
	e.waitStreams(1)
	e.emit("start", late.ID)
	eventually(t, "the late sharer is learnt", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.tab.lives(dockerPrefix+late.ID, h.inode(ns))
	})
	if got := name(n, h.inode(ns)); got != "owner" {
		t.Errorf("after a second sharer, the shared namespace is named %q, want owner", got)
	}
}

func TestAHostNetworkContainerLeavesTheHostNamedHost(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	c := e.run("node-exporter", 100, "", nil)
	e.change(c.ID, func(c *engineContainer) { c.HostConfig.NetworkMode = "host" })
	follow := &followLog{}
	n, _ := start(t, h, WithDockerSocket(e.socket), WithFollow([]string{"node-exporter"}, follow.set))

	if got := attrs(n, h.hostNS); got != kv(attrkey.NetnsName.String("host")) {
		t.Errorf("the host's namespace =\n%s\nwant only pktspan.netns.name=host", got)
	}
	if got, _ := follow.last(); !slices.Equal(got, []uint32{h.hostNS}) {
		t.Errorf("--filter-container node-exporter follows %v, want the host's namespace %d", got, h.hostNS)
	}
}

// A packet seen before the rename, exported after pktspan learnt it, keeps the old name.
func TestARenamedContainerIsNamedByItsNewNameFromItsRenameOn(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	ns := h.namespace("c")
	c := e.run("before", 100, ns, nil)
	n, _ := start(t, h, WithDockerSocket(e.socket))
	if got := name(n, h.inode(ns)); got != "before" {
		t.Fatalf("named %q, want before", got)
	}
	e.waitStreams(1)
	seenBefore := now()
	e.change(c.ID, func(c *engineContainer) { c.Name = "/after" })
	e.emit("rename", c.ID)
	eventually(t, "the new name is used", func() bool { return name(n, h.inode(ns)) == "after" })
	if got := nameAt(n, h.inode(ns), seenBefore); got != "before" {
		t.Errorf("a packet seen before the rename is named %q, want before", got)
	}
	if got := attrs(n, h.inode(ns)); !strings.Contains(got, "container.name=after\n") {
		t.Errorf("after the rename:\n%s", got)
	}
}

// A `docker run --rm` container living 100 ms: its start is inspected while it runs, and
// its packets, exported after it is gone, still carry its name until the grace ends.
func TestAShortLivedContainerIsNamedThroughItsGraceAndForgottenAfter(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	const grace = 400 * time.Millisecond
	n, _ := start(t, h, WithDockerSocket(e.socket), WithGrace(grace))
	e.waitStreams(1)

	ns := h.namespace("short")
	c := e.run("short", 100, ns, nil)
	e.emit("start", c.ID)
	eventually(t, "the container is named", func() bool { return name(n, h.inode(ns)) == "short" })
	during := now()
	time.Sleep(100 * time.Millisecond)
	e.stop(c.ID)
	e.emit("die", c.ID)
	e.remove(c.ID)
	e.emit("destroy", c.ID)
	died := time.Now()
	eventually(t, "the death is seen", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get(dockerPrefix + c.ID)
		return o != nil && !o.alive()
	})
	if got := nameAt(n, h.inode(ns), during); got != "short" && time.Since(died) < grace {
		t.Errorf("within its grace a packet of the gone container's life is named %q, want short", got)
	}
	time.Sleep(2 * deathSlack)
	if got := name(n, h.inode(ns)); got != "" {
		t.Errorf("a packet seen after the container's death is named %q: its inode may be another namespace's", got)
	}
	eventually(t, "the name is forgotten after the grace", func() bool { return nameAt(n, h.inode(ns), during) == "" })
	if since := time.Since(died); since < grace {
		t.Errorf("forgotten %v after its death, before the %v grace", since, grace)
	}

	// One gone before it could be inspected is not named, and not an error.
	gone := e.run("gone", 200, h.namespace("gone"), nil)
	e.remove(gone.ID)
	e.emit("start", gone.ID)
	e.emit("die", gone.ID)
	eventually(t, "the events are handled", func() bool { return e.inspects.Load() >= 2 })
	if st := n.Stats(); st.Errors != 0 {
		t.Errorf("Stats() = %+v: a container gone before its inspection counted as an error", st)
	}
}

// A restart gives a container a new namespace: the old one keeps its name through the
// grace, --filter-container follows the new one.
func TestARestartedContainerIsFollowedIntoItsNewNamespace(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	first, second := h.namespace("first"), h.namespace("second")
	c := e.run("db", 100, first, nil)
	follow := &followLog{}
	n, _ := start(t, h, WithDockerSocket(e.socket), WithFollow([]string{"db"}, follow.set))
	if got, _ := follow.last(); !slices.Equal(got, []uint32{h.inode(first)}) {
		t.Fatalf("following %v, want the first namespace %d", got, h.inode(first))
	}
	e.waitStreams(1)

	firstLife := now()
	e.stop(c.ID)
	e.emit("die", c.ID)
	eventually(t, "nothing is followed while db is down", func() bool { got, _ := follow.last(); return len(got) == 0 })
	e.change(c.ID, func(c *engineContainer) {
		c.State.Running, c.State.Pid, c.NetworkSettings.SandboxKey = true, 300, second
	})
	e.emit("start", c.ID)
	eventually(t, "the new namespace is followed", func() bool {
		got, _ := follow.last()
		return slices.Equal(got, []uint32{h.inode(second)})
	})
	if got := nameAt(n, h.inode(first), firstLife); got != "db" {
		t.Errorf("a packet of the first life is named %q, want db through the grace", got)
	}
	if got := name(n, h.inode(second)); got != "db" {
		t.Errorf("a packet of the second life is named %q, want db", got)
	}
}

// The kernel gives a freed namespace's inode to the next one at once: a container
// started right after another died may live in a namespace with the dead one's inode.
// Each packet is named after the owner of its time, and one seen before the new owner
// is known after neither.
func TestAReusedInodeNamesEachPacketAfterTheOwnerOfItsTime(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	ns := h.namespace("reused")
	inode := h.inode(ns)
	old := e.run("old", 100, ns, nil)
	n, _ := start(t, h, WithDockerSocket(e.socket))
	e.waitStreams(1)
	oldLife := now()

	e.stop(old.ID)
	e.emit("die", old.ID)
	eventually(t, "the old container is gone", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return !n.tab.get(dockerPrefix + old.ID).alive()
	})
	time.Sleep(2 * deathSlack)
	// The new container's first packet, before Docker says it started.
	if got := name(n, inode); got != "" {
		t.Errorf("a packet seen after the old container's death, before the new one is known, is named %q", got)
	}
	gap := now()
	time.Sleep(2 * birthSlack)

	fresh := e.run("new", 200, ns, nil)
	e.emit("start", fresh.ID)
	eventually(t, "the new container is named", func() bool { return name(n, inode) == "new" })
	for _, tc := range []struct {
		what string
		at   int64
		want string
	}{
		{"the old container's life", oldLife, "old"},
		{"between the two lives", gap, ""},
		{"the new container's life", now(), "new"},
	} {
		if got := nameAt(n, inode, tc.at); got != tc.want {
			t.Errorf("a packet seen in %s is named %q, want %q", tc.what, got, tc.want)
		}
	}
}

func TestAResyncAfterALostEventStreamLearnsWhatWasMissed(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	staysNS, goesNS := h.namespace("stays"), h.namespace("goes")
	e.run("stays", 100, staysNS, nil)
	goes := e.run("goes", 101, goesNS, nil)
	n, _ := start(t, h, WithDockerSocket(e.socket), WithGrace(0))
	e.waitStreams(1)

	// One container starts and another goes, and the stream breaks before it says so.
	comesNS := h.namespace("comes")
	e.run("comes", 102, comesNS, nil)
	e.remove(goes.ID)
	e.cut()

	eventually(t, "the container started meanwhile is named", func() bool { return name(n, h.inode(comesNS)) == "comes" })
	eventually(t, "the container gone meanwhile is forgotten", func() bool { return n.NetnsAttrs(h.inode(goesNS), now()) == nil })
	if got := name(n, h.inode(staysNS)); got != "stays" {
		t.Errorf("the container running throughout is named %q, want stays", got)
	}
	if st := n.Stats(); st.Errors == 0 {
		t.Errorf("Stats() = %+v: the lost stream is not counted", st)
	}
	// The stream comes back, and events count again.
	e.waitStreams(2)
	laterNS := h.namespace("later")
	later := e.run("later", 103, laterNS, nil)
	e.emit("start", later.ID)
	eventually(t, "a container started after the reconnection is named", func() bool { return name(n, h.inode(laterNS)) == "later" })
}

// Thousands of short-lived containers: the table never holds more than its limit,
// the oldest gone go first, the running ones stay named, and evictions are counted.
func TestTheCacheStaysWithinItsLimitUnderChurn(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	const limit = 64
	steady := make([]uint32, 8)
	for i := range steady {
		ns := h.namespace(fmt.Sprint("steady-", i))
		e.run(fmt.Sprint("steady-", i), 100+i, ns, nil)
		steady[i] = h.inode(ns)
	}
	n, _ := start(t, h, WithDockerSocket(e.socket), WithLimit(limit))
	e.waitStreams(1)

	const churn = 2000
	var last uint32
	for i := range churn {
		ns := h.namespace(fmt.Sprint("churn-", i))
		c := e.run(fmt.Sprint("churn-", i), 1000+i, ns, nil)
		e.emit("start", c.ID)
		e.waitInspected(c.ID)
		e.stop(c.ID)
		e.emit("die", c.ID)
		e.remove(c.ID)
		e.emit("destroy", c.ID)
		last = h.inode(ns)
		if i%100 == 0 {
			n.mu.Lock()
			size := len(n.tab.owners)
			n.mu.Unlock()
			if size > limit {
				t.Fatalf("after %d containers the table holds %d owners, over its limit %d", i, size, limit)
			}
		}
	}
	eventually(t, "the last container is seen", func() bool { return name(n, last) == fmt.Sprint("churn-", churn-1) })
	eventually(t, "every event is handled", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get(dockerPrefix + containerID(fmt.Sprint("churn-", churn-1)))
		return o != nil && !o.alive()
	})
	n.mu.Lock()
	size, queued := len(n.tab.owners), len(n.tab.goneQ)
	n.mu.Unlock()
	if size > limit || queued > 2*limit+16 {
		t.Errorf("the table holds %d owners (limit %d) and %d gone refs", size, limit, queued)
	}
	for i, inode := range steady {
		if got := name(n, inode); got != fmt.Sprint("steady-", i) {
			t.Errorf("running container steady-%d is named %q", i, got)
		}
	}
	if got := name(n, last); got == "" {
		t.Error("the last gone container, the newest in the table, was evicted before older ones")
	}
	st := n.Stats()
	if st.Names > limit || st.Evicted < churn-limit || st.Errors != 0 {
		t.Errorf("Stats() = %+v, want at most %d names, at least %d evicted, no errors", st, limit, churn-limit)
	}
}

func TestAMissingDockerSocketIsOneWarningNotAnError(t *testing.T) {
	h := newHost(t)
	n, logs := start(t, h, WithDockerSocket(socketPath(t, "missing.sock")))
	if got := logs.lines("level=WARN"); len(got) != 1 || !strings.Contains(got[0], "Docker containers not named") {
		t.Errorf("warnings:\n%s\nwant one saying Docker containers are not named", strings.Join(got, ""))
	}
	if got := name(n, h.hostNS); got != "host" {
		t.Errorf("the host is named %q without Docker", got)
	}
}

func TestADockerSocketThatRefusesIsOneWarningAndIsRetried(t *testing.T) {
	h := newHost(t)
	path := socketPath(t, "docker.sock")
	// A socket file nobody listens on: what a stopped daemon leaves.
	l, err := netListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	n, logs := start(t, h, WithDockerSocket(path), WithResync(50*time.Millisecond))
	if got := logs.lines("level=WARN"); len(got) != 1 || !strings.Contains(got[0], "until the Engine API answers") {
		t.Errorf("warnings:\n%s\nwant one", strings.Join(got, ""))
	}
	eventually(t, "the retries are counted", func() bool { return n.Stats().Errors >= 2 })
	if got := logs.lines("level=WARN"); len(got) != 1 {
		t.Errorf("retries added warnings:\n%s", strings.Join(got, ""))
	}
}
