package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cleanEnviron is this process's environment without PKTSPAN_* and OTEL_* variables,
// so that each case says exactly what pktspan is given.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PKTSPAN_") && !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

// badInvocation is one way a user can get pktspan's input wrong; want is part of the
// one line pktspan must answer with, naming the key or variable.
type badInvocation struct {
	args []string
	env  []string
	want string
}

func badInvocations(t *testing.T) []badInvocation {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yaml := func(body string) []string {
		return []string{"--config", file(t.Name()+body[:min(8, len(body))]+".yaml", body)}
	}
	otlp := []string{"--otlp-endpoint", "localhost:4317"}
	flag := func(name, value, want string) badInvocation {
		return badInvocation{args: []string{name, value}, want: want}
	}
	env := func(kv, want string) badInvocation { return badInvocation{env: []string{kv}, want: want} }
	otel := func(kv, want string) badInvocation { return badInvocation{args: otlp, env: []string{kv}, want: want} }
	return []badInvocation{
		// Sizes and counts beyond what the kernel or memory holds, or below one.
		flag("--otlp-queue-size", "9223372036854775807", "otlp.queue_size: 9223372036854775807 must be from 1 to"),
		flag("--otlp-queue-size", "1000000000000", "otlp.queue_size"),
		flag("--otlp-queue-size", "0", "otlp.queue_size"),
		flag("--otlp-queue-size", "-1", "otlp.queue_size"),
		flag("--otlp-queue-size", "99999999999999999999", "--otlp-queue-size"),
		flag("--otlp-batch-size", "0", "otlp.batch_size"),
		flag("--otlp-batch-size", "100000", "otlp.batch_size"),
		flag("--ring-size", "4294967296", "probes.ring_size"),
		flag("--ring-size", "2147483648", "probes.ring_size"),
		flag("--ring-size", "5000", "probes.ring_size"),
		flag("--ring-size", "0", "probes.ring_size"),
		flag("--track-size", "2000000000", "probes.track_size"),
		flag("--track-size", "0", "probes.track_size"),
		flag("--stack-size", "10000000", "probes.stack_size"),
		flag("--max-flows", "0", "limits.flows"),
		flag("--max-flows", "100000000", "limits.flows"),
		flag("--max-packets", "-1", "limits.packets"),
		flag("--max-stages", "100000", "limits.stages"),
		flag("--max-held-packets", "0", "limits.held_packets"),
		flag("--max-nat-aliases", "999999999", "limits.nat_aliases"),
		flag("--max-exchanges", "0", "limits.exchanges"),
		flag("--max-netns-names", "99999999", "limits.netns_names"),
		flag("--trace-max-packets", "0", "trace.max_packets"),
		flag("--export-drop-context", "0", "export.drop_context"),
		flag("--export-max-spans-per-second", "-5", "export.max_spans_per_second"),
		flag("--correlate-bytes", "10", "correlate.bytes"),
		flag("--correlate-max-packets", "0", "correlate.max_packets"),
		// Intervals that spin, flood the log or never end.
		flag("--stats-interval", "1ns", "stats_interval: 1ns must be from 1s to 24h"),
		flag("--stats-interval", "0s", "stats_interval"),
		flag("--stats-interval", "48h", "stats_interval"),
		flag("--otlp-batch-delay", "1ns", "otlp.batch_delay"),
		flag("--otlp-batch-delay", "2h", "otlp.batch_delay"),
		flag("--otlp-timeout", "1ns", "otlp.timeout"),
		flag("--otlp-timeout", "1h", "otlp.timeout"),
		flag("--trace-idle-timeout", "0s", "trace.idle_timeout"),
		flag("--trace-idle-timeout", "1000h", "trace.idle_timeout"),
		flag("--trace-max-duration", "1ns", "trace.max_duration"),
		flag("--trace-close-grace", "-1s", "trace.close_grace"),
		flag("--trace-packet-timeout", "100000h", "trace.packet_timeout"),
		flag("--correlate-linger", "0s", "correlate.linger"),
		flag("--netns-resync", "1ms", "netns.resync"),
		flag("--netns-grace", "-1s", "netns.grace"),
		flag("--trace-idle-timeout", "soon", "--trace-idle-timeout"),
		// Empty values and filters that can never match.
		flag("--filter-addr", "", `filter.addr: "" gives an empty filter value`),
		flag("--filter-port", "", "filter.port"),
		flag("--filter-port", "80,,443", "filter.port"),
		flag("--filter-proto", "", "filter.proto"),
		flag("--filter-iface", "", "filter.iface"),
		flag("--filter-netns", "", "filter.netns"),
		flag("--filter-container", "", "filter.container"),
		flag("--filter-mark", "", "filter.mark"),
		flag("--filter-vlan", "", "filter.vlan"),
		flag("--correlate-trust", "", "correlate.trust"),
		flag("--service-name", "", "service_name"),
		flag("--filter-netns", "/etc/passwd", `filter.netns: "/etc/passwd" is not a network namespace`),
		flag("--filter-netns", "/no/such/netns", "filter.netns"),
		flag("--filter-addr", "10.0.0.300", "filter.addr"),
		flag("--filter-port", "0", "filter.port"),
		flag("--filter-proto", "sctp", "filter.proto"),
		flag("--filter-iface", "sixteen-bytes-abc", "filter.iface"),
		flag("--filter-vlan", "5000", "filter.vlan"),
		flag("--filter-mark", "red", "filter.mark"),
		flag("--filter-container", "/web", "filter.container"),
		// Words that are not among the allowed ones.
		flag("--output", "xml", "output"),
		flag("--log-level", "verbose", "log_level"),
		flag("--log-format", "logfmt", "log_format"),
		flag("--backend", "uprobe", "probes.backend"),
		flag("--functions", "4tcp", "probes.functions"),
		flag("--normal-free-reasons", "lower", "probes.normal_free_reasons"),
		flag("--export-mode", "errors", "export.mode"),
		flag("--export-sample-ratio", "0", "export.sample_ratio"),
		flag("--export-sample-ratio", "2", "export.sample_ratio"),
		flag("--correlate", "grpc", "correlate.mode"),
		flag("--netns-docker-socket", "relative.sock", "netns.docker_socket"),
		// OTLP: the endpoint, gRPC's header rules, TLS files.
		flag("--otlp-endpoint", "http://localhost:4317", "otlp.endpoint"),
		flag("--otlp-endpoint", "localhost", "otlp.endpoint"),
		flag("--otlp-compression", "zip", "otlp.compression"),
		flag("--otlp-header", "grpc-timeout=1S", "otlp.headers.grpc-timeout"),
		flag("--otlp-header", "x a=b", "otlp.headers.x a"),
		flag("--otlp-header", "novalue", "--otlp-header"),
		flag("--otlp-ca-file", "/dev/zero", `otlp.ca_file: "/dev/zero" is not a regular file`),
		flag("--otlp-ca-file", "/etc/hostname", "otlp.ca_file"),
		flag("--otlp-client-cert", "/etc/hostname", "otlp.client_cert"),
		flag("--otlp-client-key", "/etc/hostname", "otlp.client_key"),
		// Files read at start: devices and missing files fail at once.
		flag("--btf", "/dev/zero", `btf: "/dev/zero" is not a regular file`),
		flag("--btf", "/no/such/vmlinux", "btf"),
		flag("--config", "/dev/zero", "/dev/zero: config file is not a regular file"),
		flag("--config", "/no/such/pktspan.yaml", "/no/such/pktspan.yaml"),
		flag("--config", dir, dir),
		flag("--ready-file", "/no/such/dir/ready", "ready_file"),
		// The command line itself.
		{args: []string{"--no-such-flag"}, want: "unknown flag: --no-such-flag"},
		// The positional arguments: a filter expression, refused by libpcap or too large.
		{args: []string{"eth0"}, want: `filter.expression: "eth0" is refused by libpcap: can't parse filter expression: syntax error`},
		{args: []string{"tcp", "port", "foo"}, want: `filter.expression: "tcp port foo" is refused by libpcap: unknown port 'foo'`},
		{args: []string{hugeExpression()}, want: "too large for the kernel's verifier"},
		{args: []string{"--output"}, want: "flag needs an argument: --output"},
		// YAML.
		{args: yaml("outptu: json\n"), want: "outptu: unknown key"},
		{args: yaml("otlp:\n  queue_size: 9223372036854775807\n"), want: "otlp.queue_size"},
		{args: yaml("filter:\n  addr: \"\"\n"), want: "filter.addr"},
		{args: yaml("filter: [\n"), want: "is not a valid YAML config"},
		{args: yaml("otlp: localhost:4317\n"), want: "is a section"},
		{args: yaml("stats_interval: 1ns\n"), want: "stats_interval"},
		{args: yaml("trace:\n  idle_timeout: 30\n"), want: "trace.idle_timeout"},
		// PKTSPAN_* variables.
		env("PKTSPAN_UNRELATED=1", "PKTSPAN_UNRELATED: is not a pktspan variable"),
		env("PKTSPAN_OTLP_ENDPOINT=localhost:4317", "did you mean PKTSPAN_OTLP__ENDPOINT?"),
		env("PKTSPAN_OTLP__ENDPIONT=localhost:4317", "PKTSPAN_OTLP__ENDPIONT"),
		env("PKTSPAN_OTLP__QUEUE_SIZE=9223372036854775807", "otlp.queue_size"),
		env("PKTSPAN_FILTER__ADDR=", "filter.addr"),
		env("PKTSPAN_STATS_INTERVAL=1ns", "stats_interval"),
		env("PKTSPAN_CONFIG=/dev/zero", "/dev/zero"),
		env("PKTSPAN_OTLP=localhost:4317", "names a section"),
		// Standard OTEL_* variables, checked by pktspan itself.
		env("OTEL_EXPORTER_OTLP_ENDPOINT=::::garbage", "OTEL_EXPORTER_OTLP_ENDPOINT"),
		env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=localhost:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
		otel("OTEL_EXPORTER_OTLP_TIMEOUT=abc", "OTEL_EXPORTER_OTLP_TIMEOUT"),
		otel("OTEL_EXPORTER_OTLP_TIMEOUT=1", "OTEL_EXPORTER_OTLP_TIMEOUT"),
		otel("OTEL_RESOURCE_ATTRIBUTES=garbage", "OTEL_RESOURCE_ATTRIBUTES"),
		otel("OTEL_EXPORTER_OTLP_HEADERS=novalue", "OTEL_EXPORTER_OTLP_HEADERS"),
		otel("OTEL_EXPORTER_OTLP_HEADERS=grpc-x=1", "OTEL_EXPORTER_OTLP_HEADERS"),
		otel("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL"),
		otel("OTEL_EXPORTER_OTLP_CERTIFICATE=/dev/zero", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
		otel("OTEL_EXPORTER_OTLP_CLIENT_KEY=/etc/hostname", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
		otel("OTEL_EXPORTER_OTLP_INSECURE=maybe", "OTEL_EXPORTER_OTLP_INSECURE"),
		otel("OTEL_EXPORTER_OTLP_COMPRESSION=zstd", "OTEL_EXPORTER_OTLP_COMPRESSION"),
		otel("OTEL_SERVICE_NAME=", "OTEL_SERVICE_NAME"),
	}
}

// Every bad input ends pktspan at validation, before anything is loaded: exit code 2,
// one line naming what is wrong, no stack trace, at once.
func TestBadInvocationsExitWithCodeTwoAndOneLineAtOnce(t *testing.T) {
	bin := buildPktspan(t, t.TempDir())
	cases := badInvocations(t)
	if len(cases) < 80 {
		t.Fatalf("%d bad invocations, the issue asks for at least 80", len(cases))
	}
	for _, tc := range cases {
		name := strings.Join(append(append([]string(nil), tc.env...), tc.args...), " ")
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(cleanEnviron(), tc.env...)
			start := time.Now()
			timer := time.AfterFunc(5*time.Second, func() { _ = cmd.Process.Kill() })
			out, err := cmd.CombinedOutput()
			timer.Stop()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s, want at most 2s", d)
			}
			if got := exitCode(t, err); got != exitConfig {
				t.Errorf("exit code %d, want %d", got, exitConfig)
			}
			text := strings.TrimSuffix(string(out), "\n")
			if strings.Contains(text, "\n") || text == "" {
				t.Errorf("want one line, got:\n%s", out)
			}
			if strings.Contains(text, "goroutine ") || strings.Contains(text, "panic") {
				t.Errorf("stack trace:\n%s", out)
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// hugeExpression is a valid filter expression whose program is too large to load, and
// that libpcap's optimizer is quick with (thousands of hosts take it minutes).
func hugeExpression() string {
	terms := make([]string, 3000)
	for i := range terms {
		terms[i] = fmt.Sprintf("ip[%d:2] = %d", i%200, i)
	}
	return strings.Join(terms, " or ")
}
