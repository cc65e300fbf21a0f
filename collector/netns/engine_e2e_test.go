//go:build e2e

package netns

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/internal/dockertest"
	"github.com/pktspan/pktspan/spanner/attrkey"
)

// The namer against the real Docker Engine: what the Engine API says of a container, a
// container sharing its namespace, one on the host's, a rename, a restart, a death.
func TestTheRealEngineNamesContainersAsTheFakeOneDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("reading containers' namespaces needs root (sudo make e2e)")
	}
	dockertest.Require(t)
	image := dockertest.BuildBusybox(t)
	suffix := fmt.Sprint(os.Getpid())
	net := dockertest.NewNetwork(t, "pktspan-e2e-namer-"+suffix, 210)

	owner := dockertest.Run(t, "--name", "namer-owner-"+suffix, "--network", net.Name,
		"--label", "com.docker.compose.service=svc", image, "sleep", "300")
	dockertest.Run(t, "--name", "namer-sharer-"+suffix, "--network", "container:"+owner, image, "sleep", "300")
	dockertest.Run(t, "--name", "namer-host-"+suffix, "--network", "host", image, "sleep", "300")
	ownerNS := dockertest.NetnsInode(t, owner)

	follow := &followLog{}
	n, logs := start(t, &host{t: t, proc: defaultProcRoot, netnsDir: defaultNetnsDir},
		WithDockerSocket("/var/run/docker.sock"), WithGrace(2*time.Second),
		WithFollow([]string{"namer-sharer-" + suffix, "namer-host-" + suffix}, follow.set))
	hostNS := n.hostInode

	want := kv(
		attrkey.NetnsName.String("namer-owner-"+suffix),
		attrkey.ContainerID.String(owner),
		attrkey.ContainerName.String("namer-owner-"+suffix),
		attrkey.ContainerRuntimeName.String("docker"),
		attrkey.ComposeService.String("svc"),
	)
	if got := attrs(n, ownerNS); got != want {
		t.Errorf("the owner's namespace:\n%s\nwant\n%s", got, want)
	}
	if got := name(n, hostNS); got != "host" {
		t.Errorf("the host's namespace is named %q with a host-network container running", got)
	}
	if got, _ := follow.last(); !slices.Equal(got, sorted(ownerNS, hostNS)) {
		t.Errorf("following %v, want the sharer's (the owner's) %d and the host-network container's %d", got, ownerNS, hostNS)
	}

	dockertest.Docker(t, "rename", "namer-owner-"+suffix, "namer-renamed-"+suffix)
	eventually(t, "the rename is seen", func() bool { return name(n, ownerNS) == "namer-renamed-"+suffix })

	// A container started while the namer runs, killed, restarted: named throughout.
	late := dockertest.Run(t, "--name", "namer-late-"+suffix, "--network", net.Name, image, "sleep", "300")
	lateNS := dockertest.NetnsInode(t, late)
	eventually(t, "the late container is named", func() bool { return name(n, lateNS) == "namer-late-"+suffix })
	dockertest.Docker(t, "restart", "--time", "0", late)
	restartedNS := dockertest.NetnsInode(t, late)
	eventually(t, "the restarted container's namespace is named", func() bool { return name(n, restartedNS) == "namer-late-"+suffix })
	lateLife := now()

	dockertest.Docker(t, "rm", "--force", late)
	eventually(t, "the removed container is gone", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		o := n.tab.get(dockerPrefix + late)
		return o != nil && !o.alive()
	})
	if got := nameAt(n, restartedNS, lateLife); got != "namer-late-"+suffix {
		t.Errorf("in its grace, a packet of the removed container's life is named %q", got)
	}
	eventually(t, "the removed container's name is forgotten after the grace", func() bool {
		return nameAt(n, restartedNS, lateLife) == ""
	})
	if st := n.Stats(); st.Errors != 0 {
		t.Errorf("Stats() = %+v; log:\n%s", st, logs)
	}
	if w := logs.lines("level=WARN"); len(w) > 0 {
		t.Errorf("warnings with a working engine:\n%s", strings.Join(w, ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}
