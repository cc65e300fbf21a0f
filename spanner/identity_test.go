package spanner

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The skb-reuse decision is made twice: in the kernel (same_skb, bpf/headers/identity.h)
// and here. bpf's TestSameSKBInTheProbesAnswersTheSharedFixtures runs the C one over
// the same fixture lines.
func TestIsNewSKBAgreesWithTheKernelFixtures(t *testing.T) {
	f, err := os.Open("../bpf/testdata/skb_identity.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "|")
		if len(parts) != 4 {
			t.Fatalf("malformed fixture line %q", line)
		}
		name, verdict := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[3])
		tracked, seen := fixtureNumbers(t, parts[1], 6), strings.Fields(parts[2])
		if len(seen) != 6 {
			t.Fatalf("malformed fixture line %q", line)
		}
		p := &packet{delivered: tracked[5] != 0}
		p.tuple, p.tcp = fixtureHeaders(tracked)
		ev := &Event{Kind: KindInstant, Stage: &Stage{}}
		ev.Tuple, ev.TCP = fixtureHeaders(fixtureNumbers(t, strings.Join(seen[:5], " "), 5))
		switch seen[5] {
		case "follow":
		case "free":
			ev.Stage.Free = true
		case "deliver":
			ev.Stage.Deliver = true
		default:
			t.Fatalf("unknown mode %q in %q", seen[5], line)
		}
		got := "same"
		if isNewSKB(p, ev) {
			got = "new"
		}
		if got != verdict {
			t.Errorf("%s: isNewSKB says %s, the fixture %s", name, got, verdict)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no fixture lines")
	}
}

// fixtureNumbers parses want numbers written as C literals (decimal or 0x hex).
func fixtureNumbers(t *testing.T, s string, want int) []uint32 {
	t.Helper()
	fields := strings.Fields(s)
	if len(fields) != want {
		t.Fatalf("%q: %d numbers, want %d", s, len(fields), want)
	}
	out := make([]uint32, want)
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 0, 32)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = uint32(v)
	}
	return out
}

// fixtureHeaders builds what the decoder makes of l3 l4 seq ack flags: no tuple when
// l3 is 0 (no IP header read), TCP fields only for TCP.
func fixtureHeaders(v []uint32) (Tuple, TCP) {
	var tu Tuple
	switch v[0] {
	case 4:
		tu.Src, tu.Dst = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	case 6:
		tu.Src, tu.Dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
	default:
		return Tuple{}, TCP{}
	}
	tu.Proto = uint8(v[1])
	if tu.Proto != protoTCP {
		return tu, TCP{}
	}
	return tu, TCP{Seq: v[2], Ack: v[3], Flags: uint8(v[4])}
}
