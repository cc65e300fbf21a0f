package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktspan/pktspan/collector"
	"github.com/pktspan/pktspan/collector/netns"
	"github.com/pktspan/pktspan/config"
	"github.com/pktspan/pktspan/spanner"
	"github.com/pktspan/pktspan/spanner/sink"
)

// buildPktspan builds the command into dir, as a user's `make build` does.
func buildPktspan(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "pktspan")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building pktspan: %v\n%s", err, out)
	}
	return bin
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("running pktspan: %v", err)
	}
	return ee.ExitCode()
}

func TestCommandLineErrorsExitWithTheirCodeAndOneClearLine(t *testing.T) {
	bin := buildPktspan(t, t.TempDir())
	cases := []struct {
		name string
		args []string
		env  []string
		code int
		want string
	}{
		{"bad flag value", []string{"--otlp-compression", "zip"}, nil, exitConfig, `config: otlp.compression: "zip" is not allowed (use gzip, snappy or none)`},
		{"port out of range", []string{"--filter-port", "70000"}, nil, exitConfig, "config: filter.port: 70000 is not a port"},
		{"unknown flag", []string{"--no-such-flag"}, nil, exitConfig, "unknown flag: --no-such-flag"},
		{"missing config file", []string{"--config", "/no/such/pktspan.yaml"}, nil, exitConfig, "/no/such/pktspan.yaml"},
		{"bad environment value", nil, []string{"PKTSPAN_OUTPUT=xml"}, exitConfig, `config: output: "xml"`},
		{"missing BTF file", []string{"--btf", "/no/such/vmlinux"}, nil, exitConfig, "config: btf:"},
		{"help", []string{"--help"}, nil, exitOK, "--otlp-endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(cleanEnviron(), tc.env...)
			out, err := cmd.CombinedOutput()
			if got := exitCode(t, err); got != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", got, tc.code, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// Without root (or CAP_BPF and CAP_PERFMON) pktspan says so and how to fix it. As root
// the test drops to nobody, so the check runs for real either way.
func TestWithoutPrivilegesPktspanSaysToRunAsRoot(t *testing.T) {
	// t.TempDir's parent is private to root: nobody needs a directory it may enter.
	dir, err := os.MkdirTemp("", "pktspan-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildPktspan(t, dir), "--output", "none")
	cmd.Env = cleanEnviron()
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if got := exitCode(t, err); got != exitError {
		t.Errorf("exit code %d, want %d; output:\n%s", got, exitError, out)
	}
	want := "pktspan needs root, or CAP_BPF and CAP_PERFMON, to load eBPF probes: run it with sudo"
	if !strings.Contains(string(out), want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
		t.Errorf("want one line, got %d:\n%s", n+1, out)
	}
}

// summaryFixture is a start-up on a kernel without function backends.
func summaryFixture() collector.Summary {
	return collector.Summary{
		Kernel: "6.18.44", BTF: "/sys/kernel/btf/vmlinux", Tracefs: "/sys/kernel/tracing", DropReasons: 129,
		Conntrack: "from BTF",
		Netfilter: "the nft table and chain of a drop are not read: they need fentry or kprobes",
		NoBackend: []collector.Unavailable{
			{Backend: "fentry", Reason: "the kernel refuses fentry programs"},
			{Backend: "kprobe", Reason: "kernel has no kprobes (CONFIG_KPROBES)"},
		},
		Attached:   []collector.Attached{{Name: "net:netif_receive_skb", Via: "tp_btf"}, {Name: "skb:kfree_skb", Via: "tp_btf"}},
		Skipped:    []collector.Skipped{{Name: "ip_rcv_core", Reason: "no function backend on this kernel"}},
		AttachTime: 44 * time.Millisecond,
		Filter:     "addr=198.18.0.0/30",
	}
}

func TestTextLogsPrintTheSummaryAsTheREADMEsBlockOfLines(t *testing.T) {
	var out bytes.Buffer
	logSummary(newLogger(&out, "info", "text"), &out, "text", summaryFixture())
	want := `kernel 6.18.44, BTF from /sys/kernel/btf/vmlinux, 129 drop reasons
conntrack: from BTF
netfilter: the nft table and chain of a drop are not read: they need fentry or kprobes
function probes: none on this kernel, tracepoints only:
  fentry the kernel refuses fentry programs
  kprobe kernel has no kprobes (CONFIG_KPROBES)
attached 2 probes in 44ms:
  net:netif_receive_skb          tp_btf
  skb:kfree_skb                  tp_btf
  ip_rcv_core                    skipped: no function backend on this kernel
filter: addr=198.18.0.0/30
`
	if out.String() != want {
		t.Errorf("text summary:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	logSummary(newLogger(&out, "warn", "text"), &out, "text", summaryFixture())
	if out.Len() != 0 {
		t.Errorf("summary printed at log level warn:\n%s", out.String())
	}
}

func TestJSONLogsGiveTheSummaryAsOneStructuredRecord(t *testing.T) {
	var out bytes.Buffer
	logSummary(newLogger(&out, "info", "json"), &out, "json", summaryFixture())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one record, got %d lines:\n%s", len(lines), out.String())
	}
	var rec struct {
		Msg       string `json:"msg"`
		Component string `json:"component"`
		Summary   struct {
			Kernel      string                  `json:"kernel"`
			Netfilter   string                  `json:"netfilter"`
			DropReasons int                     `json:"drop_reasons"`
			NoBackend   []collector.Unavailable `json:"no_function_backend"`
			Attached    []collector.Attached    `json:"attached"`
			Skipped     []collector.Skipped     `json:"skipped"`
			AttachTime  time.Duration           `json:"attach_time_ns"`
			Filter      string                  `json:"filter"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, lines[0])
	}
	f := summaryFixture()
	s := rec.Summary
	if rec.Msg != "probes attached" || rec.Component != "pktspan" || s.Kernel != f.Kernel || s.Netfilter != f.Netfilter || s.DropReasons != f.DropReasons ||
		!slices.Equal(s.NoBackend, f.NoBackend) || !slices.Equal(s.Attached, f.Attached) || !slices.Equal(s.Skipped, f.Skipped) ||
		s.AttachTime != f.AttachTime || s.Filter != f.Filter {
		t.Errorf("JSON record %+v does not carry the summary %+v", rec, f)
	}
}

func TestStatsCountEachSinkOnItsOwnAndCarryTheNamersCounters(t *testing.T) {
	var out bytes.Buffer
	sinks := []sinkStats{{name: "console", SinkStats: spanner.SinkStats{Exported: 7}}, {name: "otlp", SinkStats: spanner.SinkStats{Exported: 5, Dropped: 2}}}
	namer := netns.Stats{Names: 3, Misses: 4, Evicted: 5, Errors: 6}
	logStats(newLogger(&out, "info", "text"), "stats", &lossWatch{}, config.Default(), collector.Stats{}, spanner.Stats{Spans: 7}, namer, sinks)
	for _, want := range []string{" spans=7 console_exported=7 console_dropped=0 ", " otlp_exported=5 otlp_dropped=2 ",
		" netns_names=3 netns_misses=4 netns_evicted=5 netns_errors=6 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stats line lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "spans_exported") || strings.Contains(out.String(), "stack_missed") {
		t.Errorf("stats line sums the sinks or counts stacks without --stack:\n%s", out.String())
	}
}

func TestLossIsAWarningFromItsFirstSightingOn(t *testing.T) {
	var out bytes.Buffer
	log := newLogger(&out, "warn", "text")
	loss := &lossWatch{}
	quiet := []sinkStats{{name: "otlp", SinkStats: spanner.SinkStats{Exported: 5}}}
	logStats(log, "stats", loss, config.Default(), collector.Stats{EventsRead: 10}, spanner.Stats{}, netns.Stats{}, quiet)
	if out.Len() != 0 {
		t.Fatalf("a run without loss logs at warn level:\n%s", out.String())
	}
	logStats(log, "stats", loss, config.Default(), collector.Stats{EventsRead: 10, EventsLost: 3}, spanner.Stats{}, netns.Stats{}, quiet)
	logStats(log, "stats", loss, config.Default(), collector.Stats{EventsRead: 20, EventsLost: 3}, spanner.Stats{}, netns.Stats{}, quiet)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "level=WARN msg=\"events or spans lost") {
		t.Fatalf("want the first sighting, then two stats lines, all warnings:\n%s", out.String())
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "level=WARN msg=stats") || !strings.Contains(l, " events_lost=3 ") {
			t.Errorf("stats line after loss is not a warning carrying it: %s", l)
		}
	}
	out.Reset()
	dropped := []sinkStats{{name: "otlp", SinkStats: spanner.SinkStats{Dropped: 9}, causes: []sink.DropCount{{Cause: "queue_full", Spans: 9}}}}
	logStats(newLogger(&out, "error", "text"), "final stats", &lossWatch{}, config.Default(), collector.Stats{}, spanner.Stats{}, netns.Stats{}, dropped)
	if out.Len() != 0 {
		t.Errorf("a warning passed --log-level error:\n%s", out.String())
	}
	logStats(newLogger(&out, "debug", "text"), "final stats", &lossWatch{}, config.Default(), collector.Stats{}, spanner.Stats{}, netns.Stats{}, dropped)
	if !strings.Contains(out.String(), " otlp_dropped=9 otlp_dropped_queue_full=9 ") {
		t.Errorf("final line lacks the drops by cause:\n%s", out.String())
	}
}
