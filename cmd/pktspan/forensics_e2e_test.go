//go:build e2e

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/internal/jaeger"
)

// --stack: the SYN an nft rule drops carries, on its drop event in Jaeger and under its
// drop line on the console, the kernel stack of the drop, symbolized, from the free up
// through nftables and the netfilter hook.
func TestStackPutsTheKernelStackOfAnNftDropOnItsDropEventAndUnderItsConsoleLine(t *testing.T) {
	w := setup(t)
	run := w.run(t, "stack", []string{"--filter-addr", serverAddr.Masked().String(), "--stack"}, w.lab.Traffic)

	spans := w.waitFor(t, run.service, run.since, func(s *traceSet) bool {
		return s.dropped(droppedPort, "NETFILTER_DROP") != nil
	})
	drop := spans.dropped(droppedPort, "NETFILTER_DROP")
	var stack string
	for _, e := range drop.GetEvents() {
		if e.Name == "drop" {
			stack, _ = jaeger.AttrString(e.GetAttributes(), "pktspan.drop.stack")
		}
	}
	for _, fn := range []string{"nft_do_chain+0x", "nf_hook_slow+0x"} {
		if !strings.Contains(stack, fn) {
			t.Errorf("the drop event's stack lacks %s:\n%s", fn, stack)
		}
	}
	if v, _ := jaeger.AttrString(drop.GetAttributes(), "pktspan.drop.stack"); v != "" {
		t.Errorf("the stack is on the packet span too, not on its drop event alone")
	}

	console := run.stdout.String()
	excerpt := stackExcerpt(console)
	t.Logf("console, the drop and its stack:\n%s", excerpt)
	if !strings.Contains(excerpt, "nft_do_chain+0x") || !strings.Contains(excerpt, "nf_hook_slow+0x") {
		t.Errorf("no stack through nft_do_chain and nf_hook_slow under a console drop line:\n%s", head(console, 60))
	}
	// A handful of drops in a 1024-stack table: every stack was stored and read.
	if n := statValue(t, run.stderr.String(), "stack_missed"); n != 0 {
		t.Errorf("stack_missed=%d in a run of a few drops", n)
	}
}

// stackExcerpt is the first NETFILTER_DROP line of the console and the frame lines under it.
func stackExcerpt(console string) string {
	lines := strings.Split(console, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "DROP NETFILTER_DROP") {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.HasPrefix(lines[j], " ") {
			j++
		}
		return strings.Join(lines[i:j], "\n")
	}
	return ""
}

// The start-up summary: with text logs a block of lines (no escaped line breaks), the
// function backends' unavailability named once with its cause, and what it costs the
// netfilter drops said once; with JSON logs one record holding the same facts.
func TestStartupSummaryIsABlockOfLinesInTextLogsAndOneRecordInJSONLogs(t *testing.T) {
	w := setup(t)
	text := w.start(t, "pktspan-e2e-summary-text", "--filter-addr", serverAddr.Masked().String())
	text.stop(t)
	stderr := text.stderr.String()
	t.Logf("pktspan stderr (text):\n%s", stderr)
	// The block starts on a line of its own: "kernel …".
	block := ""
	if i := strings.Index("\n"+stderr, "\nkernel "); i >= 0 {
		block = stderr[i:]
		if j := strings.Index(block, "\nfilter: "); j >= 0 {
			block = block[:j+len("\nfilter: ")]
		}
	}
	if !strings.Contains(block, "\nattached ") || !strings.Contains(block, "\n  skb:kfree_skb ") || strings.Contains(stderr, `\n`) {
		t.Errorf("the summary is not a block of lines:\n%s", stderr)
	}
	if strings.Contains(stderr, "MEMLOCK") {
		t.Errorf("the summary blames the locked-memory limit:\n%s", stderr)
	}
	const needFunctions = "the nft table and chain of a drop are not read: they need fentry or kprobes"
	if strings.Contains(block, "function probes: none") {
		// A host without function probes (this one): each said once.
		if strings.Count(stderr, "refuses fentry programs") != 1 {
			t.Errorf("fentry's unavailability is not said once with its cause:\n%s", stderr)
		}
		if strings.Count(stderr, needFunctions) != 1 {
			t.Errorf("the summary does not say once that the nft table and chain need fentry or kprobes:\n%s", stderr)
		}
	} else if strings.Contains(stderr, needFunctions) || !strings.Contains(block, "\n  nft_do_chain ") {
		// Function probes run: nft_do_chain is attached and nothing says otherwise.
		t.Errorf("function probes run, but the summary does not attach nft_do_chain or says the table and chain need them:\n%s", stderr)
	}

	js := w.start(t, "pktspan-e2e-summary-json", "--filter-addr", serverAddr.Masked().String(), "--log-format", "json")
	js.stop(t)
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(js.stderr.String()), "\n") {
		var rec struct {
			Msg     string `json:"msg"`
			Summary struct {
				Kernel   string `json:"kernel"`
				Attached []struct {
					Name, Via string
				} `json:"attached"`
			} `json:"summary"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a log line is not JSON under --log-format json: %v\n%s", err, line)
			continue
		}
		if rec.Msg == "probes attached" {
			found = rec.Summary.Kernel != "" && len(rec.Summary.Attached) > 0
		}
	}
	if !found {
		t.Errorf("no probes attached record with the summary's facts:\n%s", js.stderr.String())
	}
}
