package bpf

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/internal/skbidentity"
)

// hostCC is the C compiler for the harness: the Makefile installs clang for the
// probes, and gcc is the Debian default.
func hostCC(t *testing.T) string {
	t.Helper()
	for _, cc := range []string{"clang", "cc", "gcc"} {
		if p, err := exec.LookPath(cc); err == nil {
			return p
		}
	}
	t.Fatal("no C compiler (clang, cc or gcc) to build the same_skb harness: run make deps")
	return ""
}

// buildHarness compiles testdata/NAME_harness.c, which includes a probes' header, for
// the host, and returns the binary.
func buildHarness(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command(hostCC(t), "-O2", "-Wall", "-Werror", "-Iheaders", "-o", bin, "testdata/"+name+"_harness.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the %s harness: %v\n%s", name, err, out)
	}
	return bin
}

// The kernel side's same_skb, compiled for the host from the very header the probes
// include, answers every shared fixture as it says. spanner's
// TestIsNewSKBAgreesWithTheKernelFixtures checks the Go side against the same cases.
func TestSameSKBInTheProbesAnswersTheSharedFixtures(t *testing.T) {
	cases, err := skbidentity.Read()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildHarness(t, "identity")
	var in bytes.Buffer
	for _, c := range cases {
		tr, s := c.Tracked, c.Seen
		delivered := 0
		if c.Delivered {
			delivered = 1
		}
		fmt.Fprintln(&in, tr.L3, tr.L4, tr.Seq, tr.Ack, tr.Flags, delivered,
			c.Queued.Ifindex, c.Queued.Netns, c.Received.Ifindex, c.Received.Netns,
			s.L3, s.L4, s.Seq, s.Ack, s.Flags, followMode(t, c.Mode), hookProbe(t, c.Hook), c.Device.Ifindex, c.Device.Netns)
	}
	run := exec.Command(bin)
	run.Stdin = &in
	out, err := run.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if len(got) != len(cases) {
		t.Fatalf("harness answered %d cases of %d", len(got), len(cases))
	}
	for i, c := range cases {
		if want := map[bool]string{true: "same", false: "new"}[c.Same]; got[i] != want {
			t.Errorf("%s: same_skb says %s, the fixture %s", c.Name, got[i], want)
		}
	}
}

// followMode is the value of enum follow_mode (bpf/headers/identity.h) for m.
func followMode(t *testing.T, m skbidentity.Mode) int {
	t.Helper()
	switch m {
	case skbidentity.ModeFollow:
		return 0
	case skbidentity.ModeFree:
		return 1
	case skbidentity.ModeDeliver:
		return 2
	}
	t.Fatalf("no follow_mode for %d", m)
	return 0
}

// hookProbe is an enum probe_id at hook h: a function's for any hook but the two whose
// devices same_skb compares.
func hookProbe(t *testing.T, h skbidentity.Hook) TracepointsProbeId {
	t.Helper()
	switch h {
	case skbidentity.HookOther:
		return TracepointsProbeIdPROBE_FUNC_BASE
	case skbidentity.HookQueue:
		return TracepointsProbeIdPROBE_NET_DEV_QUEUE
	case skbidentity.HookReceive:
		return TracepointsProbeIdPROBE_NETIF_RECEIVE_SKB
	}
	t.Fatalf("no probe for hook %d", h)
	return 0
}
