//go:build e2e

package collector

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/config"
)

// followedSet reads the kernel's set of followed container namespaces.
func followedSet(t *testing.T, c *Collector) []uint32 {
	t.Helper()
	c.followMu.Lock()
	defer c.followMu.Unlock()
	var (
		out []uint32
		key uint32
		val uint8
	)
	it := c.followed.Iterate()
	for it.Next(&key, &val) {
		out = append(out, key)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// The probes load with container filtering on (the verifier takes the map lookup), and
// FollowNetns makes the kernel's set exactly what it is given, each time.
func TestFollowNetnsRewritesTheKernelsSetOfFollowedNamespaces(t *testing.T) {
	c := quietCollector(WithFilter(config.Filter{Container: []string{"web"}}))
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.Summary().Filter; !strings.Contains(got, "container=web") {
		t.Errorf("the summary's filter %q does not name the container", got)
	}
	for _, set := range [][]uint32{{4026532001, 4026532002}, {4026532002, 4026532003}, nil, {4026532004}} {
		if err := c.FollowNetns(set); err != nil {
			t.Fatalf("FollowNetns(%v) = %v", set, err)
		}
		if got := followedSet(t, c); !slices.Equal(got, set) {
			t.Errorf("after FollowNetns(%v) the kernel follows %v", set, got)
		}
	}
	full := make([]uint32, followedNetnsMax)
	for i := range full {
		full[i] = 4026533000 + uint32(i)
	}
	if err := c.FollowNetns(full); err != nil || len(followedSet(t, c)) != followedNetnsMax {
		t.Errorf("FollowNetns of a full set = %v, %d followed", err, len(followedSet(t, c)))
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.FollowNetns([]uint32{1}); err == nil {
		t.Error("FollowNetns after Shutdown succeeded")
	}
}
