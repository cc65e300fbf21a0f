package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner/attrkey"
)

func TestTheHostAndIPNetnsNamesAreNamed(t *testing.T) {
	h := newHost(t)
	blue := h.ipNetns("blue")
	n, _ := start(t, h)
	if got := name(n, h.hostNS); got != "host" {
		t.Errorf("the host's namespace is named %q", got)
	}
	if got := attrs(n, blue); got != kv(attrkey.NetnsName.String("blue")) {
		t.Errorf("ip netns blue =\n%s", got)
	}

	// One added later is learnt when a lookup misses it; one deleted goes.
	red := h.ipNetns("red")
	if n.NetnsAttrs(red, now()) != nil {
		t.Fatal("named before it was read")
	}
	if err := os.Remove(filepath.Join(h.netnsDir, "blue")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ip netns red is named", func() bool { return name(n, red) == "red" })
	// The scan red's miss started may have run before blue's file went: blue's death is
	// then seen by the next check of file-known owners.
	eventually(t, "the deleted ip netns blue is gone", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get("netns/blue")
		return o != nil && !o.alive()
	})
}

func TestTheHostIsTheKernelsInitialNamespaceWhenPid1IsUnreadable(t *testing.T) {
	h := newHost(t)
	if err := os.Remove(filepath.Join(h.proc, "1", "ns", "net")); err != nil {
		t.Fatal(err)
	}
	n, _ := start(t, h)
	if got := name(n, initNetInode); got != "host" {
		t.Errorf("inode %d is named %q, want host", uint32(initNetInode), got)
	}
}

func TestParseCgroupFindsTheContainerRuntimeAndPod(t *testing.T) {
	const id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00998877665544332211"
	const uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	tests := []struct {
		file string
		want cgroupContainer
		ok   bool
	}{
		{"docker-cgroupfs-hybrid", cgroupContainer{id: id, runtime: "docker"}, true},
		{"docker-systemd-v2", cgroupContainer{id: id, runtime: "docker"}, true},
		{"containerd-k8s-systemd-v2", cgroupContainer{id: id, runtime: "containerd", podUID: uid}, true},
		{"containerd-k8s-cgroupfs-v1", cgroupContainer{id: id, podUID: uid}, true},
		{"crio-k8s-systemd-v2", cgroupContainer{id: id, runtime: "cri-o", podUID: uid}, true},
		{"podman-rootless-v2", cgroupContainer{id: id, runtime: "podman"}, true},
		{"host-init-v2", cgroupContainer{}, false},
		{"host-service-v2", cgroupContainer{}, false},
		{"crio-conmon-v2", cgroupContainer{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "cgroup", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := parseCgroup(data)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseCgroup() = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// A namespace no runtime the namer asks knows (Docker off here), whose processes run
// in a container's cgroup, is named after that container's ID.
func TestTheCgroupFallbackNamesNamespacesNoRuntimeKnows(t *testing.T) {
	h := newHost(t)
	fixture := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "cgroup", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	_, podNS := h.process(300, h.namespace("k8s"), fixture("containerd-k8s-systemd-v2"))
	h.process(301, filepath.Join(h.proc, "300", "ns", "net"), fixture("containerd-k8s-systemd-v2"))
	_, plainNS := h.process(400, h.namespace("plain"), fixture("host-service-v2"))
	// A process in the host's namespace with a container's cgroup: a host-network
	// container, and the host stays host.
	h.process(500, filepath.Join(h.proc, "1", "ns", "net"), fixture("docker-systemd-v2"))
	follow := &followLog{}
	n, _ := start(t, h, WithFollow([]string{"3f4e5d6c7b8a"}, follow.set))

	want := kv(
		attrkey.NetnsName.String("3f4e5d6c7b8a"),
		attrkey.ContainerID.String("3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00998877665544332211"),
		attrkey.ContainerRuntimeName.String("containerd"),
		attrkey.K8sPodUID.String("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
	)
	if got := attrs(n, podNS); got != want {
		t.Errorf("namespace of a container's processes =\n%s\nwant\n%s", got, want)
	}
	if got := n.NetnsAttrs(plainNS, now()); got != nil {
		t.Errorf("a namespace of processes in no container's cgroup is named %v", got)
	}
	if got := name(n, h.hostNS); got != "host" {
		t.Errorf("the host is named %q", got)
	}
	if got, _ := follow.last(); !slices.Equal(got, []uint32{podNS}) {
		t.Errorf("--filter-container by short ID follows %v, want %d", got, podNS)
	}

	// A container learnt later through the fallback: its namespace's first lookup
	// misses, and the processes are read then.
	_, lateNS := h.process(600, h.namespace("late"), fixture("docker-cgroupfs-hybrid"))
	n.NetnsAttrs(lateNS, now())
	eventually(t, "the late container's namespace is named", func() bool { return name(n, lateNS) == "3f4e5d6c7b8a" })
}

func TestNetnsAttrsDoesNotAllocate(t *testing.T) {
	h := newHost(t)
	blue := h.ipNetns("blue")
	n, _ := start(t, h)
	for _, tc := range []struct {
		name  string
		inode uint32
	}{{"named", blue}, {"unknown", 12345}, {"zero", 0}} {
		if a := testing.AllocsPerRun(1000, func() { n.NetnsAttrs(tc.inode, 1) }); a != 0 {
			t.Errorf("NetnsAttrs of a %s namespace allocates %v times per call", tc.name, a)
		}
	}
}

func TestAFailedFollowUpdateIsCountedAndRetried(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	follow := &followLog{}
	follow.fail.Store(true)
	n, logs := start(t, h, WithDockerSocket(e.socket), WithFollow([]string{"web"}, follow.set))
	if st := n.Stats(); st.Errors == 0 || len(logs.lines("followed containers' namespaces not updated")) != 1 {
		t.Errorf("Stats() = %+v after a refused update; log:\n%s", st, logs)
	}
	follow.fail.Store(false)
	e.waitStreams(1)
	ns := h.namespace("web")
	c := e.run("web", 100, ns, nil)
	e.emit("start", c.ID)
	eventually(t, "the update is retried", func() bool {
		got, _ := follow.last()
		return slices.Equal(got, []uint32{h.inode(ns)})
	})
}

func TestStartFailsOnlyWhenItsContextEnds(t *testing.T) {
	h := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := New(withPaths(h.proc, h.netnsDir, nil), WithDockerSocket(""), WithLogger(discard()))
	if err := n.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start(canceled) = %v, want context.Canceled", err)
	}
}

// The background work ends with Start's context, and the names stay for spans exported
// after it.
func TestTheNamerStopsWithItsRunAndKeepsItsNames(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	ns := h.namespace("web")
	e.run("web", 100, ns, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := New(withPaths(h.proc, h.netnsDir, nil), WithDockerSocket(e.socket), WithLogger(discard()))
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitStreams(1)
	cancel()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the background work outlived Start's context")
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if got := name(n, h.inode(ns)); got != "web" {
		t.Errorf("after the stop the namespace is named %q", got)
	}
}

func TestTheTableEvictsTheOldestGoneOwnersFirst(t *testing.T) {
	tab := newTable(3, time.Hour)
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	own := func(key string, inode uint32) owner {
		return owner{key: key, inode: inode, kind: kindDocker, attrs: dockerAttrs(key, key, nil)}
	}
	tab.put(own("a", 1), at(0))
	tab.put(own("b", 2), at(1))
	tab.put(own("c", 3), at(2))
	tab.gone("b", at(3))
	tab.gone("a", at(4))
	if !tab.put(own("d", 4), at(5)) {
		t.Fatal("no room made for d")
	}
	if tab.get("b") != nil || tab.get("a") == nil {
		t.Errorf("evicted %v: want b, gone first, evicted and a kept", slices.Collect(func(yield func(string) bool) {
			for k := range tab.owners {
				if !yield(k) {
					return
				}
			}
		}))
	}
	tab.gone("a", at(6))
	if !tab.put(own("e", 5), at(7)) || tab.get("a") != nil {
		t.Error("a, the only gone owner, was not evicted for e")
	}
	// Full of living owners: a new one is not kept, and counted.
	if tab.put(own("f", 6), at(8)) || tab.get("f") != nil || tab.evicted != 3 {
		t.Errorf("with every owner alive f was kept, or evictions = %d, want 3", tab.evicted)
	}
	claims := tab.claims()
	if len(claims) != 3 || claims[3] == nil || claims[4] == nil || claims[5] == nil {
		t.Errorf("claims() = %v, want the living c, d, e", claims)
	}
}

// lookup is NetnsAttrs over a table's claims: the name of the namespace inode at a time.
func lookup(tab *table, inode uint32, at time.Time) string {
	return lookupClaims(tab.claims()[inode], at)
}

// lookupClaims is the name NetnsAttrs would give at at from claims cs.
func lookupClaims(cs []claim, at time.Time) string {
	for _, c := range cs {
		if c.from <= at.UnixNano() && at.UnixNano() <= c.until {
			return c.attrs[0].Value.AsString()
		}
	}
	return ""
}

func TestTheTableNamesANamespaceAfterTheOwnerOfTheTime(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type life struct {
		key      string
		kind     kind
		from     float64 // seconds after t0; 0: unknown
		goneAt   float64 // seconds after t0; 0: living
		learntAt float64
	}
	tests := []struct {
		name  string
		lives []life
		want  map[float64]string // lookup time → name
	}{
		{"a container over an ip netns name of its namespace",
			[]life{{"netns/x", kindNetnsFile, 0, 0, 1}, {"docker/web", kindDocker, 2, 0, 3}},
			map[float64]string{5: "docker/web", 1: "docker/web"}},
		{"a pod over its Docker sandbox (dockershim)",
			[]life{{"pod:s/1", kindPod, 1, 0, 2}, {"docker/pause", kindDocker, 1.5, 0, 2}},
			map[float64]string{3: "pod:s/1"}},
		{"a reused inode: each life holds its own packets, none the gap between",
			[]life{{"docker/old", kindDocker, 1, 3, 1.1}, {"docker/new", kindDocker, 5, 0, 5.1}},
			map[float64]string{2: "docker/old", 3.05: "docker/old", 4: "", 5.5: "docker/new"}},
		{"a reused inode whose new owner only a cgroup guess knows",
			[]life{{"docker/old", kindDocker, 1, 3, 1.1}, {"cgroup/new", kindCgroup, 0, 0, 5.1}},
			map[float64]string{2: "docker/old", 5.5: "cgroup/new"}},
		{"a gone container over a later guess of its own namespace",
			[]life{{"docker/web", kindDocker, 1, 3, 1.1}, {"cgroup/web", kindCgroup, 0, 0, 1.2}},
			map[float64]string{2: "docker/web", 2.9: "docker/web", 4: "cgroup/web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(8, time.Hour)
			for _, l := range tt.lives {
				o := owner{key: l.key, inode: 7, kind: l.kind, attrs: dockerAttrs(l.key, l.key, nil)}
				o.attrs[0] = attrkey.NetnsName.String(l.key)
				if l.from > 0 {
					o.from = at(l.from)
				}
				// A guess learnt after the runtime's owner is not retired by it.
				tab.owners[o.key] = &o
				o.since, o.seen = at(l.learntAt), at(l.learntAt)
				if l.goneAt > 0 {
					tab.markGone(&o, at(l.goneAt))
				}
			}
			for when, want := range tt.want {
				if got := lookup(tab, 7, at(when)); got != want {
					t.Errorf("at %vs the namespace is named %q, want %q", when, got, want)
				}
			}
		})
	}
}

func TestARenamedOwnerNamesEachPacketAsItsNamespaceWasNamedWhenSeen(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	named := func(key, name string, kind kind, from float64) owner {
		o := owner{key: key, inode: 7, kind: kind, from: at(from), attrs: dockerAttrs(key, name, nil)}
		o.attrs[0] = attrkey.NetnsName.String(name)
		return o
	}
	type step struct {
		learnt  float64 // seconds after t0
		name    string
		renamed float64 // the rename event's time; 0: a listing, which cannot tell
		goneAt  float64 // then it dies; 0: it lives
	}
	tests := []struct {
		name  string
		steps []step
		want  map[float64]string // lookup time → name
	}{
		{"a rename learnt late takes effect at its event's time",
			[]step{{1, "before", 0, 0}, {4, "after", 3, 0}},
			map[float64]string{2: "before", 2.99: "before", 3: "after", 3.5: "after", 9: "after"}},
		{"a rename seen only by a listing takes effect when it is learnt",
			[]step{{1, "before", 0, 0}, {4, "after", 0, 0}},
			map[float64]string{3.5: "before", 4.5: "after"}},
		{"two renames, then the death",
			[]step{{1, "a", 0, 0}, {3, "b", 3, 0}, {5, "c", 5, 7}},
			map[float64]string{2: "a", 4: "b", 6: "c", 7.05: "c", 8: ""}},
		{"a rename event older than the last rename takes effect no earlier than it",
			[]step{{1, "a", 0, 0}, {3, "b", 3, 0}, {4, "c", 2, 0}},
			map[float64]string{2.5: "a", 3: "c", 3.5: "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(8, time.Hour)
			for _, s := range tt.steps {
				o := named("docker/web", s.name, kindDocker, 1)
				if s.renamed > 0 {
					o.renamed = at(s.renamed)
				}
				tab.put(o, at(s.learnt))
				if s.goneAt > 0 {
					tab.gone(o.key, at(s.goneAt))
				}
			}
			for when, want := range tt.want {
				if got := lookup(tab, 7, at(when)); got != want {
					t.Errorf("at %vs the namespace is named %q, want %q", when, got, want)
				}
			}
		})
	}

	t.Run("a renamed owner still speaks for its namespace since the earliest birth known", func(t *testing.T) {
		tab := newTable(8, time.Hour)
		tab.put(named("netns/x", "x", kindNetnsFile, 0.5), at(0.5))
		tab.put(named("docker/web", "before", kindDocker, 1), at(1))
		renamed := named("docker/web", "after", kindDocker, 1)
		renamed.renamed = at(3)
		tab.put(renamed, at(3.1))
		for when, want := range map[float64]string{0.5: "before", 2: "before", 3.5: "after"} {
			if got := lookup(tab, 7, at(when)); got != want {
				t.Errorf("at %vs the namespace is named %q, want %q", when, got, want)
			}
		}
	})

	t.Run("no instant is claimed by two of an owner's names", func(t *testing.T) {
		o := named("docker/web", "d", kindDocker, 1)
		for _, p := range []struct {
			name  string
			until float64
		}{{"a", 2}, {"b", 3}, {"c", 3}} { // c replaced at the time it was given
			o.past = append(o.past, pastName{attrs: named("docker/web", p.name, kindDocker, 1).attrs, until: at(p.until)})
		}
		for _, gone := range []bool{false, true} {
			if gone {
				o.gone = at(9)
			}
			cs := o.claims(at(1).UnixNano())
			for i, a := range cs {
				for _, b := range cs[i+1:] {
					if a.from <= a.until && b.from <= b.until && a.from <= b.until && b.from <= a.until {
						t.Errorf("gone=%v: claims [%d, %d] and [%d, %d] share an instant", gone, a.from, a.until, b.from, b.until)
					}
				}
			}
			for when, want := range map[float64]string{1.5: "a", 2: "b", 2.5: "b", 3: "d", 8: "d"} {
				if got := lookupClaims(cs, at(when)); got != want {
					t.Errorf("gone=%v: at %vs the name is %q, want %q", gone, when, got, want)
				}
			}
		}
	})

	t.Run("past names stay within their bound and the grace, the bound's losses counted", func(t *testing.T) {
		tab := newTable(8, 30*time.Second)
		for i := range maxPastNames + 2 {
			o := named("docker/web", fmt.Sprint("n", i), kindDocker, 1)
			o.renamed = at(float64(2 + i))
			tab.put(o, at(float64(2+i)))
		}
		if got := len(tab.get("docker/web").past); got != maxPastNames || tab.evicted != 1 {
			t.Errorf("%d past names kept, %d evicted; want %d and 1", got, tab.evicted, maxPastNames)
		}
		if got := lookup(tab, 7, at(2.5)); got != "n1" {
			t.Errorf("the oldest name kept names %q, want n1 (n0 went for the bound)", got)
		}
		late := named("docker/web", "late", kindDocker, 1)
		late.renamed = at(100)
		tab.put(late, at(100))
		if got := tab.get("docker/web").past; len(got) != 1 || got[0].attrs[0].Value.AsString() != fmt.Sprint("n", maxPastNames+1) {
			t.Errorf("after the grace past names are %v, want only the one renamed now", got)
		}
	})
}

// A container seen first through its processes' cgroup, then by its runtime: the guess
// is retired, and names no packet after the container's death.
func TestARuntimesOwnerRetiresTheCgroupGuessOfItsNamespace(t *testing.T) {
	tab := newTable(8, time.Hour)
	t0 := time.Now()
	guess := cgroupContainer{id: containerID("web"), runtime: "docker"}
	tab.put(owner{key: cgroupPrefix + guess.id, inode: 7, kind: kindCgroup, attrs: guess.attrs()}, t0)
	tab.put(owner{key: dockerPrefix + guess.id, inode: 7, kind: kindDocker, attrs: dockerAttrs(guess.id, "web", nil), from: t0}, t0)
	tab.gone(dockerPrefix+guess.id, t0.Add(time.Second))
	if got := lookup(tab, 7, t0.Add(500*time.Millisecond)); got != "web" {
		t.Errorf("a packet of the container's life is named %q, want web", got)
	}
	if got := lookup(tab, 7, t0.Add(2*time.Second)); got != "" {
		t.Errorf("a packet after the container's death is named %q by the retired guess", got)
	}
}

// A probe finds a container gone as of when it was last seen; the runtime's death event,
// later, moves its death to the time the runtime gives.
func TestARuntimesDeathTimeCorrectsAProbesEstimate(t *testing.T) {
	tab := newTable(8, time.Hour)
	t0 := time.Now()
	o := owner{key: "docker/web", inode: 7, kind: kindDocker, attrs: dockerAttrs("web", "web", nil), probe: "/gone"}
	tab.put(o, t0)
	tab.checked(tab.probes(), map[string]bool{"docker/web": true}, t0.Add(time.Second))
	tab.gone("docker/web", t0.Add(900*time.Millisecond))
	if got := lookup(tab, 7, t0.Add(800*time.Millisecond)); got != "web" {
		t.Errorf("a packet before the runtime's death time is named %q, want web", got)
	}
	if !tab.expire(t0.Add(time.Hour + time.Second)) {
		t.Error("the corrected death never expires")
	}
}

// The kernel's initial namespace's inode is what the kernel defines; this host's
// own namespace shows it when the test runs in it.
func TestInitNetInodeIsTheKernelsWhenReadable(t *testing.T) {
	inode, err := inodeOf("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no /proc/self/ns/net: %v", err)
	}
	init1, err := inodeOf("/proc/1/ns/net")
	if err != nil || init1 != inode {
		t.Skip("this test does not run in the host's namespace")
	}
	if inode != initNetInode {
		t.Errorf("the host's namespace is %d, want PROC_NET_INIT_INO %d", inode, uint32(initNetInode))
	}
}

func TestKeysNeverCollideAcrossSources(t *testing.T) {
	for _, p := range []string{dockerPrefix, cgroupPrefix, "netns/", "pod:"} {
		for _, q := range []string{dockerPrefix, cgroupPrefix, "netns/", "pod:"} {
			if p != q && strings.HasPrefix(p, q) {
				t.Errorf("prefix %s starts with %s: goneExcept(%s) would take the other source's owners", p, q, q)
			}
		}
	}
}
