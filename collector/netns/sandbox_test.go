package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountNamespace does what Docker does for a sandbox: it creates the file and binds a
// new network namespace on it. It returns the namespace's inode; the namespace goes
// with the unmount at the test's end.
func mountNamespace(t *testing.T, path string) uint32 {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread that made the namespace is left locked: it ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("binding a network namespace on %s (needs root): %v", path, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
	inode, ok := mountedNamespace(path)
	if !ok {
		t.Fatalf("no namespace mounted on %s", path)
	}
	return inode
}

// unmountNamespace does what Docker does when the container's network is released.
func unmountNamespace(t *testing.T, path string) {
	t.Helper()
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// A container whose whole life fits before its start event is handled (docker run --rm
// of 100 ms) has exited when it is inspected: its packets are named after it through
// the namespace seen mounted on its sandbox.
func TestAContainerThatExitedBeforeItWasInspectedIsNamedThroughItsSandbox(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	const grace = time.Hour
	n, _ := start(t, h, WithDockerSocket(e.socket), WithGrace(grace))
	e.waitStreams(1)

	sandbox := filepath.Join(h.sandboxDir, "0123456789ab")
	inode := mountNamespace(t, sandbox)
	born := now()
	c := e.run("brief", 0, sandbox, map[string]string{"com.docker.compose.service": "brief"})
	time.Sleep(10 * time.Millisecond)
	during := now()
	time.Sleep(10 * time.Millisecond)
	// It exits and Docker releases its network before the namer hears of its start.
	unmountNamespace(t, sandbox)
	finished := time.Now()
	e.change(c.ID, func(c *engineContainer) {
		c.State.Running, c.State.Pid, c.State.FinishedAt = false, 0, finished.Format(time.RFC3339Nano)
	})
	e.emit("start", c.ID)
	e.emit("die", c.ID)

	eventually(t, "the exited container is named", func() bool { return nameAt(n, inode, during) == "brief" })
	if got := nameAt(n, inode, born); got != "brief" {
		t.Errorf("a packet sent between the sandbox's mount and Docker's start time is named %q, want brief", got)
	}
	if got := nameAt(n, inode, finished.Add(2*deathSlack).UnixNano()); got != "" {
		t.Errorf("a packet seen after the container finished is named %q: its inode may be another namespace's", got)
	}
	if st := n.Stats(); st.Errors != 0 {
		t.Errorf("Stats() = %+v, want no errors", st)
	}

	// A container whose sandbox was never seen mounted stays unnamed, and is no error.
	unseen := e.run("unseen", 0, filepath.Join(h.sandboxDir, "ba9876543210"), nil)
	e.change(unseen.ID, func(c *engineContainer) { c.State.Running = false })
	e.emit("start", unseen.ID)
	eventually(t, "the events are handled", func() bool { return e.inspects.Load() >= 2 })
	if st := n.Stats(); st.Errors != 0 || st.Names != 2 {
		t.Errorf("Stats() = %+v, want the host and brief named, no errors", st)
	}
}

func TestTheSandboxWatchRemembersWithinItsLimitAndCountsWhatItForgot(t *testing.T) {
	dir := t.TempDir()
	w, err := watchSandboxes("/proc", dir, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	at := time.Now()
	for i, name := range []string{"a", "b", "c"} {
		w.record(name, uint32(100+i), at)
	}
	if _, ok := w.lookup(filepath.Join(dir, "a")); ok {
		t.Error("the oldest of three sandboxes is remembered past a limit of two")
	}
	if ns, ok := w.lookup("/elsewhere/c"); !ok || ns.inode != 102 {
		t.Errorf("lookup(c) = %+v, %v; want inode 102", ns, ok)
	}
	if got := w.evicted.Load(); got != 1 {
		t.Errorf("evicted = %d, want 1", got)
	}
	// Past sandboxKeep a sandbox is let go without counting: its start came long ago.
	w.record("d", 103, at.Add(sandboxKeep+time.Second))
	if got := w.evicted.Load(); got != 1 {
		t.Errorf("evicted = %d after forgetting sandboxes older than %v, want still 1", got, sandboxKeep)
	}
}

// Docker mounts a container's namespace on its sandbox before the container's process
// runs, while the process holding it is already in the container's cgroup: the
// namespace is named then, from what the create event said, before the start event.
func TestAContainerIsNamedWhenItsSandboxIsMountedBeforeItsStartIsReported(t *testing.T) {
	h := newHost(t)
	e := newEngine(t)
	n, _ := start(t, h, WithDockerSocket(e.socket))
	e.waitStreams(1)

	c := e.run("early", 0, "", map[string]string{"com.docker.compose.service": "early"})
	e.emit("create", c.ID)
	sandbox := filepath.Join(h.sandboxDir, "5ca1ab1e0000")
	// Docker creates the file; runc's process is in the new namespace and the
	// container's cgroup when the prestart hook mounts it there.
	if err := os.WriteFile(sandbox, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	h.process(300, sandbox, "0::/system.slice/docker-"+c.ID+".scope\n")
	eventually(t, "the create event is handled", func() bool {
		_, ok := n.docker.created.get(c.ID)
		return ok
	})
	inode := mountNamespace(t, sandbox)

	eventually(t, "the namespace is named at its mount", func() bool { return name(n, inode) == "early" })
	if got := attrs(n, inode); !strings.Contains(got, "pktspan.compose.service=early") || !strings.Contains(got, "container.id="+c.ID) {
		t.Errorf("NetnsAttrs = %s, want the container's ID and compose service", got)
	}
	if got := e.inspects.Load(); got != 0 {
		t.Errorf("%d inspections: the name came from the create event and the cgroup alone", got)
	}
	e.emit("destroy", c.ID)
	eventually(t, "a destroyed container is forgotten by the create cache", func() bool {
		_, ok := n.docker.created.get(c.ID)
		return !ok
	})
}

func TestTheCreateCacheStaysWithinItsLimit(t *testing.T) {
	c := newCreatedContainers(2)
	for _, id := range []string{"a", "b", "c"} {
		c.put(id, map[string]string{"name": id})
	}
	if _, ok := c.get("a"); ok {
		t.Error("the oldest of three created containers is kept past a limit of two")
	}
	if got := c.evicted.Load(); got != 1 {
		t.Errorf("evicted = %d, want 1", got)
	}
	c.remove("b")
	for i := range 10 {
		c.put(fmt.Sprint("x", i), map[string]string{"name": "x"})
		c.remove(fmt.Sprint("x", i))
	}
	if len(c.order) > 4 {
		t.Errorf("%d IDs kept in order for a limit of two", len(c.order))
	}
}
