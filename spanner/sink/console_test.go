package sink

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/attrkey"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestConsolePrintsEachGroupAsItsGolden(t *testing.T) {
	for _, tc := range []struct {
		golden string
		groups [][]spanner.Span
	}{
		{"console_tcp.golden", [][]spanner.Span{tcpGroup()}},
		{"console_drop.golden", [][]spanner.Span{dropGroup()}},
		{"console_normal_free.golden", [][]spanner.Span{normalFreeGroup()}},
		{"console_drop_stack.golden", [][]spanner.Span{stackedDropGroup(), tcpGroup()}},
		{"console_flow.golden", [][]spanner.Span{tcpGroup(), rootGroup()}},
		{"console_nat_clone.golden", [][]spanner.Span{natCloneGroup()}},
		{"console_netns_names.golden", [][]spanner.Span{namedNetnsGroup()}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var out bytes.Buffer
			c := NewConsole(&out, WithLocation(time.UTC))
			n := 0
			for _, g := range tc.groups {
				c.Export(g)
				n += len(g)
			}
			if err := c.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats(); st.Exported != uint64(n) || st.Dropped != 0 {
				t.Errorf("Stats = %+v, want %d exported", st, n)
			}
			if bytes.Contains(out.Bytes(), []byte("\x1b[")) {
				t.Error("escape codes written to a buffer")
			}
			checkGolden(t, tc.golden, out.Bytes())
		})
	}
}

func TestConsoleTellsPacketFromFlowByRoleNotByName(t *testing.T) {
	pkt := tcpGroup()
	pkt[0].Name = "skb"
	var out bytes.Buffer
	c := NewConsole(&out, WithLocation(time.UTC))
	c.Export(pkt)
	c.Export(rootGroup())
	checkGolden(t, "console_flow.golden", out.Bytes())
}

func TestConsoleColorsOnlyTheDropLineRed(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out, WithLocation(time.UTC), WithColor(true))
	c.Export(tcpGroup())
	c.Export(dropGroup())
	c.Export(normalFreeGroup())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	red := 0
	for _, l := range lines {
		isRed := strings.HasPrefix(l, ansiRed) && strings.HasSuffix(l, ansiReset)
		if isRed {
			red++
		}
		if strings.Contains(l, "DROP NETFILTER_DROP nft_do_chain+0x1f3") != isRed {
			t.Errorf("red=%v for line %q", isRed, l)
		}
	}
	if red != 1 {
		t.Errorf("%d red lines, want 1:\n%s", red, out.String())
	}
}

func TestConsoleColorsByDefaultOnlyOnATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if NewConsole(w).color {
		t.Error("color on for a pipe")
	}
	if NewConsole(&bytes.Buffer{}).color {
		t.Error("color on for a buffer")
	}
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal to test color: %v", err)
	}
	defer ptmx.Close()
	if !NewConsole(ptmx).color {
		t.Error("color off for a terminal")
	}
	if NewConsole(ptmx, WithColor(false)).color {
		t.Error("WithColor(false) ignored")
	}
}

func TestConsoleShowsTheDropOnTheLastLineWithoutAFreeStage(t *testing.T) {
	// Stage limits may cut the skb:kfree_skb stage; the drop still shows on the last line.
	g := dropGroup()[:3]
	var out bytes.Buffer
	NewConsole(&out, WithLocation(time.UTC)).Export(g)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "nf_hook_slow") || !strings.Contains(last, "DROP NETFILTER_DROP nft_do_chain+0x1f3") {
		t.Errorf("last line %q lacks the drop", last)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestConsoleCountsAFailedWriteAsDroppedAndShutdownReportsIt(t *testing.T) {
	c := NewConsole(failWriter{})
	c.Export(tcpGroup())
	if st := c.Stats(); st.Dropped != 7 || st.Exported != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if err := c.Shutdown(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestConsoleShowsTheKernelAddressWhereSpansCarryAnOpaqueID(t *testing.T) {
	g := tcpGroup()
	for i, kv := range g[0].Attrs {
		if kv.Key == attrkey.SKBAddress {
			g[0].Attrs[i] = attrkey.SKBAddress.String("skb-0123456789abcdef")
		}
	}
	g[0].Attrs = append(g[0].Attrs, attrkey.SKBCloneOf.String("skb-fedcba9876543210"))
	g[0].SKB, g[0].SKBCloneOf = 0xffff888004a1c200, 0xffff888004a1c000
	var out bytes.Buffer
	NewConsole(&out, WithLocation(time.UTC)).Export(g)
	if strings.Contains(out.String(), "skb-") {
		t.Errorf("console shows an opaque ID:\n%s", out.String())
	}
	for _, want := range []string{" 0xffff888004a1c200 ", "clone_of=0xffff888004a1c000"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
}
