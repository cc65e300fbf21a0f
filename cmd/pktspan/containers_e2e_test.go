//go:build e2e

// The container tier (docs/DESIGN.md, tier 4): the built pktspan, with JSON output,
// naming the real Docker Engine's containers on their packet spans. Nothing is pulled:
// the containers run a test image built here around the static busybox, on a network of
// their own in 198.19.0.0/16, talking only to a peer container on it. `make test` runs
// them wherever a Docker Engine answers (internal/dockertest decides).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/dockertest"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

// containerLab is a network with a peer container (ping target and HTTP server) and
// the test image.
type containerLab struct {
	bin    string
	image  string
	net    dockertest.Network
	peer   string // the peer's address
	suffix string // makes this run's names its own
}

func newContainerLab(t *testing.T) *containerLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the container tests load eBPF probes and read containers' namespaces: run them as root (sudo make e2e)")
	}
	dockertest.Require(t)
	l := &containerLab{bin: buildPktspan(t, t.TempDir()), image: dockertest.BuildBusybox(t), suffix: fmt.Sprint(os.Getpid())}
	l.net = dockertest.NewNetwork(t, "pktspan-e2e-"+l.suffix, 220)
	l.peer = l.addr(10)
	dockertest.Run(t, "--name", l.name("peer"), "--network", l.net.Name, "--ip", l.peer, l.image, "httpd", "-f", "-p", "80", "-h", "/bin")
	return l
}

func (l *containerLab) name(s string) string { return "pktspan-e2e-" + s + "-" + l.suffix }

func (l *containerLab) addr(host int) string { return fmt.Sprint(l.net.Prefix, host) }

// ping and get are what the containers run: a few echo requests, an HTTP request.
func (l *containerLab) ping(n int) string {
	return fmt.Sprintf("ping -c %d -i 0.2 -W 1 %s >/dev/null", n, l.peer)
}

func (l *containerLab) get() string {
	return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 1 %s 80 >/dev/null`, l.peer)
}

// loop is a container command sending an echo request every 200 ms until stopped.
func (l *containerLab) loop() string {
	return fmt.Sprintf("while true; do ping -c 1 -W 1 %s >/dev/null; sleep 0.2; done", l.peer)
}

// jsonRun is one pktspan writing JSON lines, limited to the lab's subnet.
type jsonRun struct {
	proc           *pktspanproc.Proc
	stdout, stderr bytes.Buffer
}

func (l *containerLab) pktspan(t *testing.T, args ...string) *jsonRun {
	t.Helper()
	return startJSONRun(t, l.bin, append([]string{"--filter-addr", l.net.Subnet, "--log-level", "debug"}, args...)...)
}

// startJSONRun starts pktspan writing JSON lines and returns once it is attached.
func startJSONRun(t *testing.T, bin string, args ...string) *jsonRun {
	t.Helper()
	r := &jsonRun{}
	cmd := exec.Command(bin, append([]string{"--output", "json"}, args...)...)
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, r.stderr.String())
	}
	r.proc = p
	t.Cleanup(func() { _ = p.Stop(os.Kill, time.Second) })
	return r
}

// stop stops pktspan as Ctrl-C does and returns its packet spans.
func (r *jsonRun) stop(t *testing.T) []packetSpan {
	t.Helper()
	if err := r.proc.Stop(os.Interrupt, 30*time.Second); err != nil {
		t.Fatalf("pktspan: %v; stderr:\n%s", err, r.stderr.String())
	}
	var out []packetSpan
	for line := range strings.Lines(r.stdout.String()) {
		var s struct {
			Name       string         `json:"name"`
			Start      int64          `json:"start_unix_nano"`
			Attributes map[string]any `json:"attributes"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("not a JSON line: %v\n%s", err, line)
		}
		if s.Name == "packet" {
			out = append(out, packetSpan{start: time.Unix(0, s.Start), attrs: s.Attributes})
		}
	}
	if n := statValue(t, r.stderr.String(), "netns_errors"); n != 0 {
		t.Errorf("netns_errors=%d with a working engine; stderr:\n%s", n, r.stderr.String())
	}
	return out
}

type packetSpan struct {
	start time.Time
	attrs map[string]any
}

func (p packetSpan) str(key string) string {
	s, _ := p.attrs[key].(string)
	return s
}

func (p packetSpan) String() string {
	return fmt.Sprintf("%s %s > %s netns=%v name=%q container=%q", p.start.Format("15:04:05.000000"), p.str("source.address"),
		p.str("destination.address"), p.attrs["pktspan.netns"], p.str("pktspan.netns.name"), p.str("container.name"))
}

// sentBy returns the packet spans of the packets an address sent: first seen in the
// sender's namespace, they carry its name.
func sentBy(spans []packetSpan, addr string) []packetSpan {
	var out []packetSpan
	for _, s := range spans {
		if s.str("source.address") == addr {
			out = append(out, s)
		}
	}
	return out
}

// checkNamed requires that the packets one container sent name it, with its ID (when
// given), except the first ones: those a container sends before Docker reports its
// start (it does once the process runs) may carry no name, never another's.
func checkNamed(t *testing.T, spans []packetSpan, name, id string) {
	t.Helper()
	if len(spans) == 0 {
		t.Errorf("no packet span of %s", name)
		return
	}
	var named, unnamed []packetSpan
	for _, s := range spans {
		switch got := s.str("pktspan.netns.name"); {
		case got == name:
			named = append(named, s)
		case got == "":
			unnamed = append(unnamed, s)
		case id != "" && len(got) >= 12 && strings.HasPrefix(id, got):
			// The cgroup fallback's guess, before Docker reported the start: this very
			// container, by its ID.
			unnamed = append(unnamed, s)
		default:
			t.Errorf("a packet of %s is named after another owner: %v", name, s)
		}
	}
	t.Logf("%s: %d packet spans named, %d before its name was known", name, len(named), len(unnamed))
	if len(named) == 0 {
		t.Errorf("no packet span names %s:\n%v", name, spans)
		return
	}
	first := slices.MinFunc(spans, func(a, b packetSpan) int { return a.start.Compare(b.start) }).start
	for _, s := range unnamed {
		if s.start.Sub(first) > 200*time.Millisecond {
			t.Errorf("a packet %v after %s's first is unnamed: %v", s.start.Sub(first), name, s)
		}
	}
	for _, s := range named {
		if s.str("container.name") != name || s.str("container.runtime.name") != "docker" || id != "" && s.str("container.id") != id {
			t.Errorf("a packet of %s (%s) carries %v", name, id, s.attrs)
		}
	}
}

func TestContainersAreNamedOnTheirPacketSpans(t *testing.T) {
	l := newContainerLab(t)
	run := l.pktspan(t)

	// Short-lived `docker run --rm` containers, one after another: the kernel may give
	// each the namespace inode of the one before.
	type short struct{ name, addr, id string }
	var shorts []short
	for i := range 3 {
		s := short{name: l.name(fmt.Sprint("short", i)), addr: l.addr(20 + i)}
		s.id = dockertest.RunRM(t, "--name", s.name, "--network", l.net.Name, "--ip", s.addr, l.image, "sh", "-c", l.ping(3)+"; "+l.get())
		shorts = append(shorts, s)
	}
	// One living about 100 ms: an HTTP request and out.
	brief := short{name: l.name("brief"), addr: l.addr(30)}
	brief.id = dockertest.RunRM(t, "--name", brief.name, "--network", l.net.Name, "--ip", brief.addr, l.image, "sh", "-c", l.get())

	// A container in another's namespace: the packets are the owner's.
	ownerName, ownerAddr := l.name("owner"), l.addr(40)
	owner := dockertest.Run(t, "--name", ownerName, "--network", l.net.Name, "--ip", ownerAddr, l.image, "sleep", "300")
	sharerName := l.name("sharer")
	dockertest.RunRM(t, "--name", sharerName, "--network", "container:"+ownerName, l.image, "sh", "-c", l.ping(3))

	// A Compose service.
	composeAddr := l.addr(45)
	composeName, composeID := l.compose(t, composeAddr)

	// A container renamed while it sends.
	renamedAddr := l.addr(50)
	before, after := l.name("before"), l.name("after")
	renamed := dockertest.Run(t, "--name", before, "--network", l.net.Name, "--ip", renamedAddr, l.image, "sh", "-c", l.loop())
	time.Sleep(1500 * time.Millisecond)
	renameAt := time.Now()
	dockertest.Docker(t, "rename", before, after)
	time.Sleep(1500 * time.Millisecond)
	dockertest.Docker(t, "rm", "--force", renamed)

	// The host, through the network's bridge.
	if out, err := exec.Command("ping", "-c", "3", "-i", "0.2", "-W", "1", l.peer).CombinedOutput(); err != nil {
		t.Fatalf("ping from the host: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	spans := run.stop(t)

	t.Run("short-lived containers", func(t *testing.T) {
		for _, s := range shorts {
			checkNamed(t, sentBy(spans, s.addr), s.name, s.id)
		}
	})
	t.Run("a container living 100 ms", func(t *testing.T) {
		// It has exited when Docker reports its start: every packet is named through
		// the namespace pktspan saw mounted on its sandbox.
		sent := sentBy(spans, brief.addr)
		checkNamed(t, sent, brief.name, brief.id)
		for _, s := range sent {
			if s.str("pktspan.netns.name") != brief.name {
				t.Errorf("a packet of the container living 100 ms is not named after it: %v", s)
			}
		}
	})
	t.Run("a container sharing another's namespace", func(t *testing.T) {
		sent := sentBy(spans, ownerAddr)
		checkNamed(t, sent, ownerName, owner)
		for _, s := range spans {
			if s.str("container.name") == sharerName || s.str("pktspan.netns.name") == sharerName {
				t.Errorf("a packet span names the sharer, not the namespace's owner: %v", s)
			}
		}
	})
	t.Run("a Compose service", func(t *testing.T) {
		sent := sentBy(spans, composeAddr)
		checkNamed(t, sent, composeName, composeID)
		for _, s := range sent {
			if s.str("pktspan.netns.name") != "" && s.str("pktspan.compose.service") != "pinger" {
				t.Errorf("a packet of the Compose service carries pktspan.compose.service %q: %v", s.str("pktspan.compose.service"), s)
			}
		}
	})
	t.Run("a renamed container", func(t *testing.T) {
		var old, new int
		for _, s := range sentBy(spans, renamedAddr) {
			got := s.str("pktspan.netns.name")
			switch {
			case got == before && s.start.Before(renameAt):
				old++
			case got == after && s.start.After(renameAt):
				new++
			case s.start.After(renameAt.Add(500*time.Millisecond)) && got != after:
				t.Errorf("a packet 500 ms after the rename is named %q: %v", got, s)
			case s.start.Before(renameAt) && got == after:
				t.Errorf("a packet before the rename, exported at once, carries the new name: %v", s)
			}
		}
		if old == 0 || new == 0 {
			t.Errorf("%d packets named %s before the rename, %d named %s after", old, before, new, after)
		}
	})
	t.Run("the host", func(t *testing.T) {
		sent := sentBy(spans, l.addr(1))
		if len(sent) == 0 {
			t.Fatal("no packet span of the host's pings")
		}
		for _, s := range sent {
			if s.str("pktspan.netns.name") != "host" || s.str("container.name") != "" {
				t.Errorf("a packet the host sent is not named host alone: %v", s.attrs)
			}
		}
	})
}

// compose runs a one-service Compose project (docker-compose 1.29) sending a few pings
// from addr on the lab's network, and returns its container's name and ID.
func (l *containerLab) compose(t *testing.T, addr string) (name, id string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yaml")
	// No top-level name: docker-compose 1.29 does not know it; -p names the project.
	yaml := fmt.Sprintf(`version: "3.8"
services:
  pinger:
    image: %s
    command: ["sh", "-c", %q]
    networks:
      lab:
        ipv4_address: %s
networks:
  lab:
    external: true
    name: %s
`, l.image, l.ping(3), addr, l.net.Name)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	project := "pktspane2e" + l.suffix
	compose := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker-compose", append([]string{"--project-name", project, "--file", file}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	compose("up", "--no-color", "--exit-code-from", "pinger")
	id = dockertest.Docker(t, "ps", "--all", "--quiet", "--no-trunc", "--filter", "label=com.docker.compose.project="+project)
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("the Compose project's containers: %q", id)
	}
	dockertest.RemoveAtEnd(t, id)
	name = strings.TrimPrefix(dockertest.Docker(t, "inspect", "--format", "{{.Name}}", id), "/")
	compose("down")
	return name, id
}

// --filter-container follows a container's namespace, and the new one after a restart;
// another container on the same network sending the same traffic is never followed.
func TestFilterContainerFollowsAContainerAcrossARestart(t *testing.T) {
	l := newContainerLab(t)
	followedName, followedAddr, otherAddr := l.name("followed"), l.addr(60), l.addr(61)
	followed := dockertest.Run(t, "--name", followedName, "--network", l.net.Name, "--ip", followedAddr, l.image, "sh", "-c", l.loop())
	dockertest.Run(t, "--name", l.name("other"), "--network", l.net.Name, "--ip", otherAddr, l.image, "sh", "-c", l.loop())
	first := dockertest.NetnsInode(t, followed)

	run := l.pktspan(t, "--filter-container", followedName)
	time.Sleep(2 * time.Second)
	restartAt := time.Now()
	dockertest.Docker(t, "restart", "--time", "0", followed)
	restarted := time.Now()
	second := dockertest.NetnsInode(t, followed)
	time.Sleep(3 * time.Second)
	spans := run.stop(t)
	t.Logf("namespace %d before the restart, %d after", first, second)

	var before, after int
	for _, s := range spans {
		src, dst := s.str("source.address"), s.str("destination.address")
		if src == otherAddr || dst == otherAddr {
			t.Errorf("a packet of the other container was followed: %v", s)
			continue
		}
		inode := uint32(s.attrs["pktspan.netns"].(float64))
		if inode != first && inode != second {
			t.Errorf("a packet first seen outside the followed container's namespaces: %v", s)
		}
		switch {
		case s.start.Before(restartAt) && inode == first:
			before++
		case s.start.After(restarted) && inode == second:
			after++
		}
		if name := s.str("pktspan.netns.name"); name != "" && name != followedName {
			t.Errorf("a followed packet is named %q: %v", name, s)
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d packets followed before the restart, %d after it, want both; stderr:\n%s", before, after, run.stderr.String())
	}
	if !strings.Contains(run.stderr.String(), fmt.Sprintf("inodes=[%d]", second)) {
		t.Errorf("pktspan never followed the restarted container's namespace %d; stderr:\n%s", second, run.stderr.String())
	}
}
