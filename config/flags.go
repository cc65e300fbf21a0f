package config

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// flagDef ties a flag to its koanf key. The usage text holds the argument's placeholder in
// backquotes, which pflag shows after the flag name in --help.
type flagDef struct {
	name, key, usage string
}

type flagGroup struct {
	title string
	flags []flagDef
}

// configFlag names the config file; it has no key because it chooses a layer rather than
// setting a value.
const configFlag = "config"

// flagGroups lists every flag in --help order. A test checks that every key of Config has
// exactly one flag here.
var flagGroups = []flagGroup{
	{"General", []flagDef{
		{configFlag, "", "read settings from the YAML `FILE` (or PKTSPAN_CONFIG)"},
		{"output", "output", "local output `MODE`: console (one line per stage), json (JSON lines) or none"},
		{"service-name", "service_name", "OpenTelemetry service.name `NAME` of the spans' resource"},
		{"log-level", "log_level", "`LEVEL` of pktspan's own log: debug, info, warn or error"},
		{"log-format", "log_format", "`FORMAT` of pktspan's own log: text (the start-up summary as a block of lines) or json (one object per record)"},
		{"stats-interval", "stats_interval", "report loss and queue counters every `DURATION`"},
		{"ready-file", "ready_file", "write `PATH` once every probe is attached (for scripts and tests)"},
		{"btf", "btf", "kernel BTF `FILE` to use when /sys/kernel/btf/vmlinux is missing"},
	}},
	{"OTLP export (off unless an endpoint is set here or in OTEL_EXPORTER_OTLP_ENDPOINT)", []flagDef{
		{"otlp-endpoint", "otlp.endpoint", "send spans over OTLP/gRPC to `HOST:PORT`"},
		{"otlp-insecure", "otlp.insecure", "use plain text instead of TLS"},
		{"otlp-header", "otlp.headers", "add the gRPC header `KEY=VALUE` to every export; repeatable"},
		{"otlp-compression", "otlp.compression", "compress exports with `ALGO`: gzip, snappy (less CPU, larger requests) or none"},
		{"otlp-timeout", "otlp.timeout", "give up on one export request after `DURATION`"},
		{"otlp-queue-size", "otlp.queue_size", "keep at most `N` spans waiting to be sent; more are dropped and counted"},
		{"otlp-batch-size", "otlp.batch_size", "send at most `N` spans per export request"},
		{"otlp-batch-delay", "otlp.batch_delay", "send a partial batch after waiting `DURATION`"},
		{"otlp-ca-file", "otlp.ca_file", "check the collector's certificate against the CAs in the PEM `FILE` instead of the system's"},
		{"otlp-client-cert", "otlp.client_cert", "present the PEM client certificate `FILE` to the collector (mutual TLS; with --otlp-client-key)"},
		{"otlp-client-key", "otlp.client_key", "the PEM private key `FILE` of --otlp-client-cert"},
	}},
	{"Probes", []flagDef{
		{"backend", "probes.backend", "probe family `KIND`: auto, fentry, kprobe or tracepoint"},
		{"functions", "probes.functions", "kernel functions `a,b,c` to trace, replacing the default set"},
		{"ring-size", "probes.ring_size", "ring buffer `BYTES`: a power of two, at least 4096"},
		{"track-size", "probes.track_size", "remember up to `N` skbs in the kernel as matching the filters"},
		{"normal-free-reasons", "probes.normal_free_reasons", "treat the kfree_skb drop reasons `A,B` as normal ends anywhere, not drops (e.g. NO_SOCKET)"},
		{"stack", "probes.stack", "put the kernel stack of each drop on its drop event and under its console line"},
		{"stack-size", "probes.stack_size", "with --stack, keep up to `N` drop stacks in the kernel until read"},
	}},
	{"Filters (repeat a flag or give a comma list to OR values; different filters are AND-ed)", []flagDef{
		{"filter-addr", "filter.addr", "source or destination address or `CIDR`, IPv4 or IPv6"},
		{"filter-port", "filter.port", "source or destination `PORT`"},
		{"filter-proto", "filter.proto", "transport `PROTO`: tcp, udp or icmp (icmp includes ICMPv6)"},
		{"filter-iface", "filter.iface", "interface `NAME`"},
		{"filter-netns", "filter.netns", "network namespace `PATH|INODE`, e.g. /run/netns/x, /proc/PID/ns/net or 4026531840"},
		{"filter-vlan", "filter.vlan", "802.1Q VLAN `ID`, 0 to 4095"},
		{"filter-mark", "filter.mark", "skb mark `VALUE[/MASK]`, decimal or 0x hex"},
		{"filter-container", "filter.container", "the network namespace of the container `NAME` (or ID, or a pod as namespace/pod), followed across restarts"},
		{"drops-only", "filter.drops_only", "send only packets the kernel drops; the kernel discards the others' events"},
	}},
	{"Traces (one trace per flow window)", []flagDef{
		{"trace-idle-timeout", "trace.idle_timeout", "close a flow that has no packet for `DURATION`"},
		{"trace-max-duration", "trace.max_duration", "start a new trace after `DURATION`"},
		{"trace-max-packets", "trace.max_packets", "start a new trace after `N` packets"},
		{"trace-close-grace", "trace.close_grace", "keep a flow open for `DURATION` after FIN or RST"},
		{"trace-packet-timeout", "trace.packet_timeout", "end a packet span whose skb is not freed within `DURATION`"},
	}},
	{"Export (which traces leave pktspan; what is left out is counted)", []flagDef{
		{"export-mode", "export.mode", "`MODE` all, or drops: only flow windows holding a dropped packet"},
		{"export-drop-context", "export.drop_context", "in drops mode, also export up to `N` packets from before the drop"},
		{"export-sample-ratio", "export.sample_ratio", "export this `RATIO` of flows (0 < r ≤ 1), chosen by flow hash alike on every host"},
		{"export-max-spans-per-second", "export.max_spans_per_second", "export at most `N` spans per second (0: no cap)"},
		{"export-skb-address", "export.skb_address", "export each skb's kernel address (pktspan.skb.address) instead of an opaque per-run ID; the console always shows it"},
	}},
	{"Limits (memory bounds; beyond them spans are dropped and counted)", []flagDef{
		{"max-flows", "limits.flows", "keep at most `N` flow windows open"},
		{"max-packets", "limits.packets", "keep at most `N` packet spans open"},
		{"max-stages", "limits.stages", "keep at most `N` stage spans in one packet span"},
		{"max-held-packets", "limits.held_packets", "in drops mode, hold at most `N` ended packets waiting for a drop"},
		{"max-nat-aliases", "limits.nat_aliases", "remember at most `N` translated (NAT) tuples of flows"},
		{"max-exchanges", "limits.exchanges", "with --correlate http, keep at most `N` request exchanges open"},
		{"max-netns-names", "limits.netns_names", "name at most `N` network namespaces, destroyed ones in their grace included"},
	}},
	{"Network namespace names (the host, ip netns, Docker containers, CRI pods)", []flagDef{
		{"netns-docker-socket", "netns.docker_socket", "name containers through the Docker Engine API on the unix socket `PATH` (\"\": off)"},
		{"netns-cri-socket", "netns.cri_socket", "name pods through the CRI runtime on the unix socket `PATH` (\"\": containerd's or CRI-O's default, if there)"},
		{"netns-resync", "netns.resync", "list the namespaces' owners again every `DURATION`, beside the runtime's events"},
		{"netns-grace", "netns.grace", "keep naming a destroyed owner's namespace for `DURATION`, for its packets exported later"},
	}},
	{"App-trace correlation (packets of HTTP/1.x requests inside the application's own traces)", []flagDef{
		{"correlate", "correlate.mode", "`MODE` none, or http: read each HTTP/1.x request's traceparent and put its packets under the app's client span"},
		{"correlate-bytes", "correlate.bytes", "read up to `N` bytes of a request to find its traceparent (64 to 4096)"},
		{"correlate-trust", "correlate.trust", "believe traceparent headers from `WHOM`: egress (sent by this host), all, or CIDRs of senders believed too"},
		{"correlate-max-packets", "correlate.max_packets", "put at most `N` packet spans under one exchange (first, last, drops, retransmits, RSTs always go)"},
		{"correlate-linger", "correlate.linger", "export an exchange `DURATION` after its last packet, once its data is acknowledged"},
	}},
}

const usageHead = `pktspan follows each packet through the Linux kernel with eBPF and exports its path as
OpenTelemetry spans: one trace per flow, one span per packet, one child span per kernel
function or tracepoint it passed, and a drop as an error carrying the kernel's drop reason.
Spans go to the console, as JSON lines, or over OTLP/gRPC to Jaeger, Tempo or any
OpenTelemetry Collector. It needs root privileges.

Usage:
  pktspan [flags] [expression]

The expression is a pcap-filter expression, as tcpdump takes it (filter.expression),
AND-ed with the --filter-* flags; the kernel evaluates it on an skb's first bytes.

Examples:
  # Show TCP packets to or from port 443 on the console
  sudo pktspan --filter-proto tcp --filter-port 443

  # The same as tcpdump says it, without one host
  sudo pktspan 'tcp port 443 and not host 198.18.0.9'

  # Send every packet of one namespace to a local Jaeger, nothing on the console
  sudo pktspan --filter-netns /run/netns/blue --output none \
      --otlp-endpoint localhost:4317 --otlp-insecure

Settings are layered, later wins: defaults < config file < environment < flags.
Every flag has a config file key and an environment variable, e.g. --otlp-endpoint,
otlp.endpoint and PKTSPAN_OTLP__ENDPOINT; lists in the environment are comma-separated.
See examples/pktspan.yaml for every key.
`

// NewFlagSet returns pktspan's flags with Default() as their defaults, for Load to parse.
// Its Usage prints the full help to the set's output; -h and --help make Parse (and so
// Load) return pflag.ErrHelp after printing it.
func NewFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("pktspan", pflag.ContinueOnError)
	fs.SortFlags = false
	def := defaultValues()
	for _, g := range flagGroups {
		for _, f := range g.flags {
			if f.key == "" {
				fs.String(f.name, "", f.usage)
				continue
			}
			switch v := def[f.key].(type) {
			case string:
				fs.String(f.name, v, f.usage)
			case bool:
				fs.Bool(f.name, v, f.usage)
			case int:
				fs.Int(f.name, v, f.usage)
			case float64:
				fs.Float64(f.name, v, f.usage)
			case time.Duration:
				fs.Duration(f.name, v, f.usage)
			case []string:
				fs.StringSlice(f.name, v, f.usage)
			case []int:
				// Kept as strings so a bad port gets the same message from every layer.
				s := make([]string, len(v))
				for i, n := range v {
					s[i] = strconv.Itoa(n)
				}
				fs.StringSlice(f.name, s, f.usage)
			case map[string]string:
				fs.StringToString(f.name, v, f.usage)
				if len(v) == 0 {
					// pflag would print "(default [])" for an empty map.
					fs.Lookup(f.name).DefValue = ""
				}
			default:
				panic(fmt.Sprintf("config: no flag type for key %s (%T)", f.key, v))
			}
		}
	}
	fs.Usage = func() { writeUsage(fs.Output(), fs) }
	return fs
}

// writeUsage prints the help with flags grouped as in flagGroups. Flags added to fs by
// the caller (such as --version) are listed at the end.
func writeUsage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprint(w, usageHead)
	listed := make(map[string]bool)
	for _, g := range flagGroups {
		group := pflag.NewFlagSet(g.title, pflag.ContinueOnError)
		group.SortFlags = false
		for _, f := range g.flags {
			if fl := fs.Lookup(f.name); fl != nil {
				group.AddFlag(fl)
				listed[f.name] = true
			}
		}
		fmt.Fprintf(w, "\n%s:\n%s", g.title, group.FlagUsages())
	}
	other := pflag.NewFlagSet("other", pflag.ContinueOnError)
	other.SortFlags = false
	fs.VisitAll(func(fl *pflag.Flag) {
		if !listed[fl.Name] {
			other.AddFlag(fl)
		}
	})
	if other.HasFlags() {
		fmt.Fprintf(w, "\nOther:\n%s", other.FlagUsages())
	}
}

// flagKeys maps a flag name to its koanf key.
var flagKeys = func() map[string]string {
	m := make(map[string]string)
	for _, g := range flagGroups {
		for _, f := range g.flags {
			m[f.name] = f.key
		}
	}
	return m
}()
