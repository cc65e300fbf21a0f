// Package dockertest is the container tier's test infrastructure (docs/DESIGN.md, tier
// 4): whether a Docker Engine is there to test with (the one place that decides), a
// test image built locally FROM scratch around Debian's static busybox (nothing can be
// pulled), networks on 198.18.0.0/15 subnets, and containers, each removed by ID when
// the test ends.
package dockertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Busybox is the static busybox the busybox-static package installs (make vmtest-deps).
const Busybox = "/bin/busybox"

// commandTimeout bounds one docker command; a test's containers run detached.
const commandTimeout = 2 * time.Minute

// Require returns when a Docker Engine answers `docker version`. Where none does, the
// test fails under CI=true, where the container tier must run, and is skipped elsewhere,
// said loudly on stderr too so that a skipped tier is not mistaken for a passed one.
func Require(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err == nil {
		return
	}
	cause := err.Error()
	if o := strings.TrimSpace(string(out)); o != "" {
		cause += ": " + o
	}
	why := "no Docker Engine answers `docker version` (" + cause + ")"
	if skip, reason := decide(why, os.Getenv("CI")); skip {
		fmt.Fprintf(os.Stderr, "\n!!! %s: %s\n\n", t.Name(), reason)
		t.Skip(reason)
	} else {
		t.Fatal(reason)
	}
}

// decide says whether a test without an engine is skipped, and why.
func decide(why, ci string) (skip bool, reason string) {
	if ci == "true" {
		return false, why + "; under CI=true the container tests must run: start the Docker Engine"
	}
	return true, "SKIPPING the container tests: " + why + " (under CI=true this fails)"
}

// Docker runs the docker command and returns its trimmed standard output, failing the
// test with its error output when it fails.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// BuildBusybox builds the test image, FROM scratch holding the static busybox with its
// applets linked in /bin, tagged pktspan-test/busybox:<hash of its contents>, and
// removes the tag when the test ends.
func BuildBusybox(t testing.TB) string {
	t.Helper()
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatalf("the test image needs Debian's static busybox (make vmtest-deps installs busybox-static): %v", err)
	}
	const dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
	sum := sha256.Sum256(append(bb, dockerfile...))
	tag := "pktspan-test/busybox:" + hex.EncodeToString(sum[:])[:12]
	dir := t.TempDir()
	for name, data := range map[string][]byte{"busybox": bb, "Dockerfile": []byte(dockerfile)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	Docker(t, "build", "--quiet", "--tag", tag, dir)
	t.Cleanup(func() {
		if _, err := docker("image", "rm", tag); err != nil {
			t.Logf("removing the test image: %v", err)
		}
	})
	return tag
}

// Network is a Docker network a test made.
type Network struct {
	ID     string
	Name   string
	Subnet string // 198.19.N.0/24
	Prefix string // 198.19.N.: the subnet's first three octets, for addresses in it
}

// NewNetwork creates a bridge network named name on the first free 198.19.N.0/24 of
// those from first on (never one of Docker's default private ranges), and removes it
// by ID when the test ends.
func NewNetwork(t testing.TB, name string, first int) Network {
	t.Helper()
	var errs []error
	for n := first; n < first+32 && n < 256; n++ {
		subnet := fmt.Sprintf("198.19.%d.0/24", n)
		id, err := docker("network", "create", "--driver", "bridge", "--subnet", subnet, name)
		if err != nil {
			errs = append(errs, err) // a subnet another network holds
			continue
		}
		t.Cleanup(func() {
			if _, err := docker("network", "rm", id); err != nil {
				t.Logf("removing network %s: %v", name, err)
			}
		})
		return Network{ID: id, Name: name, Subnet: subnet, Prefix: fmt.Sprintf("198.19.%d.", n)}
	}
	t.Fatalf("no free 198.19.N.0/24 subnet from %d: %v", first, errors.Join(errs...))
	return Network{}
}

// Run starts a detached container (args as `docker run -d` takes them) and removes it
// by ID when the test ends; it returns the ID.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	id := Docker(t, append([]string{"run", "--detach"}, args...)...)
	RemoveAtEnd(t, id)
	return id
}

// RemoveAtEnd removes the container id, if it is still there, when the test ends.
func RemoveAtEnd(t testing.TB, id string) {
	t.Cleanup(func() {
		if _, err := docker("container", "rm", "--force", "--volumes", id); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("removing container %s: %v", id, err)
		}
	})
}

// RunRM runs a container in the foreground with --rm (args as `docker run` takes them)
// and returns its ID, read from a --cidfile; it is removed by ID at the test's end
// should --rm not have done it.
func RunRM(t testing.TB, args ...string) string {
	t.Helper()
	cidfile := filepath.Join(t.TempDir(), "cid")
	_, runErr := docker(append([]string{"run", "--rm", "--cidfile", cidfile}, args...)...)
	b, err := os.ReadFile(cidfile)
	if err != nil {
		t.Fatalf("%v; no container ID: %v", runErr, err)
	}
	id := strings.TrimSpace(string(b))
	RemoveAtEnd(t, id)
	if runErr != nil {
		t.Fatal(runErr)
	}
	return id
}

// NetnsInode is the inode of a running container's network namespace, read from its
// sandbox key.
func NetnsInode(t testing.TB, id string) uint32 {
	t.Helper()
	key := Docker(t, "container", "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id)
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatalf("container %s's network namespace: %v", id, err)
	}
	return inode(fi)
}
