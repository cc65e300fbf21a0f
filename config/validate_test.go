package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestValidateRejectsEachBadValueWithItsReason(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	tests := []struct {
		name string
		set  func(c *Config)
		want string
	}{
		{"output", func(c *Config) { c.Output = "xml" },
			`config: output: "xml" is not allowed (use console, json or none)`},
		{"service name", func(c *Config) { c.ServiceName = " " },
			`config: service_name: " " must not be empty`},
		{"btf missing", func(c *Config) { c.BTF = "/nonexistent/vmlinux" },
			`config: btf: "/nonexistent/vmlinux" cannot be read: no such file or directory`},
		{"btf directory", func(c *Config) { c.BTF = "testdata" },
			`config: btf: "testdata" is a directory, not a BTF file`},
		{"ready file dir missing", func(c *Config) { c.ReadyFile = "/nonexistent/ready" },
			`config: ready_file: "/nonexistent/ready" is not in an existing directory`},
		{"log level", func(c *Config) { c.LogLevel = "verbose" },
			`config: log_level: "verbose" is not allowed (use debug, info, warn or error)`},
		{"log format", func(c *Config) { c.LogFormat = "logfmt" },
			`config: log_format: "logfmt" is not allowed (use text or json)`},
		{"stats interval", func(c *Config) { c.Stats = 0 },
			`config: stats_interval: 0s must be from 1s to 24h`},
		{"endpoint scheme", func(c *Config) { c.OTLP.Endpoint = "http://localhost:4317" },
			`config: otlp.endpoint: "http://localhost:4317" is not HOST:PORT (e.g. localhost:4317, no scheme; use otlp.insecure for plain text)`},
		{"endpoint no port", func(c *Config) { c.OTLP.Endpoint = "localhost" },
			`config: otlp.endpoint: "localhost" is not HOST:PORT (e.g. localhost:4317, no scheme; use otlp.insecure for plain text)`},
		{"endpoint bad port", func(c *Config) { c.OTLP.Endpoint = "localhost:99999" },
			`config: otlp.endpoint: "localhost:99999" is not HOST:PORT (e.g. localhost:4317, no scheme; use otlp.insecure for plain text)`},
		{"endpoint no host", func(c *Config) { c.OTLP.Endpoint = ":4317" },
			`config: otlp.endpoint: ":4317" is not HOST:PORT (e.g. localhost:4317, no scheme; use otlp.insecure for plain text)`},
		{"header name", func(c *Config) { c.OTLP.Headers = map[string]string{"": "x"} },
			`config: otlp.headers.: "x" has an empty header name`},
		{"compression", func(c *Config) { c.OTLP.Compression = "zip" },
			`config: otlp.compression: "zip" is not allowed (use gzip, snappy or none)`},
		{"otlp timeout", func(c *Config) { c.OTLP.Timeout = -time.Second },
			`config: otlp.timeout: -1s must be from 100ms to 5m`},
		{"queue size", func(c *Config) { c.OTLP.QueueSize = 0 },
			`config: otlp.queue_size: 0 must be from 1 to 4194304`},
		{"batch size", func(c *Config) { c.OTLP.BatchSize = -1 },
			`config: otlp.batch_size: -1 must be from 1 to 16384`},
		{"batch over queue", func(c *Config) { c.OTLP.QueueSize, c.OTLP.BatchSize = 1024, 2000 },
			`config: otlp.batch_size: 2000 must not exceed otlp.queue_size (1024)`},
		{"batch delay", func(c *Config) { c.OTLP.BatchDelay = 0 },
			`config: otlp.batch_delay: 0s must be from 10ms to 1m`},
		{"backend", func(c *Config) { c.Probes.Backend = "uprobe" },
			`config: probes.backend: "uprobe" is not allowed (use auto, fentry, kprobe or tracepoint)`},
		{"function empty", func(c *Config) { c.Probes.Functions = []string{""} },
			`config: probes.functions: "" is not a kernel function name (letters, digits and _, not starting with a digit)`},
		{"function dash", func(c *Config) { c.Probes.Functions = []string{"ip-rcv"} },
			`config: probes.functions: "ip-rcv" is not a kernel function name (letters, digits and _, not starting with a digit)`},
		{"function digit", func(c *Config) { c.Probes.Functions = []string{"4tcp"} },
			`config: probes.functions: "4tcp" is not a kernel function name (letters, digits and _, not starting with a digit)`},
		{"function twice", func(c *Config) { c.Probes.Functions = []string{"ip_rcv", "ip_rcv"} },
			`config: probes.functions: "ip_rcv" is listed twice`},
		{"ring not power of two", func(c *Config) { c.Probes.RingSize = 5000 },
			`config: probes.ring_size: 5000 must be a power of two from 4096 to 1073741824`},
		{"ring too small", func(c *Config) { c.Probes.RingSize = 2048 },
			`config: probes.ring_size: 2048 must be a power of two from 4096 to 1073741824`},
		{"ring zero", func(c *Config) { c.Probes.RingSize = 0 },
			`config: probes.ring_size: 0 must be a power of two from 4096 to 1073741824`},
		{"track size", func(c *Config) { c.Probes.TrackSize = 0 },
			`config: probes.track_size: 0 must be from 1 to 4194304`},
		{"addr octet", func(c *Config) { c.Filter.Addr = []string{"10.0.0.300/8"} },
			`config: filter.addr: "10.0.0.300/8" is not an address or CIDR`},
		{"addr bits", func(c *Config) { c.Filter.Addr = []string{"10.0.0.0/33"} },
			`config: filter.addr: "10.0.0.0/33" is not an address or CIDR`},
		{"addr name", func(c *Config) { c.Filter.Addr = []string{"localhost"} },
			`config: filter.addr: "localhost" is not an address or CIDR`},
		{"addr zone", func(c *Config) { c.Filter.Addr = []string{"fe80::1%eth0"} },
			`config: filter.addr: "fe80::1%eth0" is not an address or CIDR`},
		{"too many addrs", func(c *Config) {
			c.Filter.Addr = many(MaxFilterAddrs+1, func(i int) string { return fmt.Sprintf("10.0.0.%d", i) })
		}, `config: filter.addr: 17 values are more than the kernel filter holds (at most 16)`},
		{"port zero", func(c *Config) { c.Filter.Port = []int{0} },
			`config: filter.port: 0 is not a port (use 1 to 65535)`},
		{"port high", func(c *Config) { c.Filter.Port = []int{65536} },
			`config: filter.port: 65536 is not a port (use 1 to 65535)`},
		{"too many ports", func(c *Config) {
			c.Filter.Port = make([]int, MaxFilterPorts+1)
			for i := range c.Filter.Port {
				c.Filter.Port[i] = i + 1
			}
		}, `config: filter.port: 17 values are more than the kernel filter holds (at most 16)`},
		{"proto", func(c *Config) { c.Filter.Proto = []string{"sctp"} },
			`config: filter.proto: "sctp" is not allowed (use tcp, udp or icmp)`},
		{"proto case", func(c *Config) { c.Filter.Proto = []string{"TCP"} },
			`config: filter.proto: "TCP" is not allowed (use tcp, udp or icmp)`},
		{"iface empty", func(c *Config) { c.Filter.Iface = []string{""} },
			`config: filter.iface: "" is not an interface name (1 to 15 bytes, no '/', ':' or spaces)`},
		{"iface long", func(c *Config) { c.Filter.Iface = []string{"sixteen-bytes-ab"} },
			`config: filter.iface: "sixteen-bytes-ab" is not an interface name (1 to 15 bytes, no '/', ':' or spaces)`},
		{"iface slash", func(c *Config) { c.Filter.Iface = []string{"eth0/1"} },
			`config: filter.iface: "eth0/1" is not an interface name (1 to 15 bytes, no '/', ':' or spaces)`},
		{"too many ifaces", func(c *Config) {
			c.Filter.Iface = many(MaxFilterIfaces+1, func(i int) string { return fmt.Sprintf("eth%d", i) })
		}, `config: filter.iface: 9 values are more than the kernel filter holds (at most 8)`},
		{"netns missing path", func(c *Config) { c.Filter.Netns = []string{"/run/netns/nonexistent"} },
			`config: filter.netns: "/run/netns/nonexistent" is neither an existing path nor an inode number`},
		{"netns zero inode", func(c *Config) { c.Filter.Netns = []string{"0"} },
			`config: filter.netns: "0" is neither an existing path nor an inode number`},
		{"netns inode too big", func(c *Config) { c.Filter.Netns = []string{"4294967296"} },
			`config: filter.netns: "4294967296" is neither an existing path nor an inode number`},
		{"too many netns", func(c *Config) {
			c.Filter.Netns = many(MaxFilterNetns+1, func(i int) string { return fmt.Sprint(4026531840 + i) })
		}, `config: filter.netns: 9 values are more than the kernel filter holds (at most 8)`},
		{"vlan too big", func(c *Config) { c.Filter.VLAN = []int{4096} },
			`config: filter.vlan: 4096 is not a VLAN ID (use 0 to 4095)`},
		{"too many vlans", func(c *Config) { c.Filter.VLAN = make([]int, MaxFilterVLANs+1) },
			`config: filter.vlan: 9 values are more than the kernel filter holds (at most 8)`},
		{"mark not a number", func(c *Config) { c.Filter.Mark = []string{"red"} },
			`config: filter.mark: "red" is not a mark (use VALUE or VALUE/MASK, decimal or 0x hex, 32 bits)`},
		{"mark over 32 bits", func(c *Config) { c.Filter.Mark = []string{"0x1/0x100000000"} },
			`config: filter.mark: "0x1/0x100000000" is not a mark (use VALUE or VALUE/MASK, decimal or 0x hex, 32 bits)`},
		{"too many marks", func(c *Config) { c.Filter.Mark = many(MaxFilterMarks+1, func(i int) string { return fmt.Sprint(i) }) },
			`config: filter.mark: 9 values are more than the kernel filter holds (at most 8)`},
		{"container empty", func(c *Config) { c.Filter.Container = []string{""} },
			`config: filter.container: "" is not a container name or ID, nor a pod as namespace/pod`},
		{"container leading slash", func(c *Config) { c.Filter.Container = []string{"/web"} },
			`config: filter.container: "/web" is not a container name or ID, nor a pod as namespace/pod`},
		{"container space", func(c *Config) { c.Filter.Container = []string{"my web"} },
			`config: filter.container: "my web" is not a container name or ID, nor a pod as namespace/pod`},
		{"pod without name", func(c *Config) { c.Filter.Container = []string{"default/"} },
			`config: filter.container: "default/" is not a container name or ID, nor a pod as namespace/pod`},
		{"too many containers", func(c *Config) {
			c.Filter.Container = many(MaxFilterContainers+1, func(i int) string { return fmt.Sprint("c", i) })
		}, `config: filter.container: 65 values are more than the kernel filter holds (at most 64)`},
		{"stack size", func(c *Config) { c.Probes.StackSize = 0 },
			`config: probes.stack_size: 0 must be from 1 to 65536`},
		{"normal free reason in lower case", func(c *Config) { c.Probes.NormalFreeReasons = []string{"not_specified"} },
			`config: probes.normal_free_reasons: "not_specified" is not a drop reason name (upper case, digits and _, as NOT_SPECIFIED)`},
		{"too many normal free reasons", func(c *Config) {
			c.Probes.NormalFreeReasons = many(MaxNormalFreeReasons+1, func(i int) string { return fmt.Sprint("R", i) })
		}, `config: probes.normal_free_reasons: 15 values are more than the kernel filter holds (at most 14)`},
		{"export mode", func(c *Config) { c.Export.Mode = "errors" },
			`config: export.mode: "errors" is not allowed (use all or drops)`},
		{"drop context", func(c *Config) { c.Export.DropContext = 0 },
			`config: export.drop_context: 0 must be from 1 to 65536`},
		{"sample ratio zero", func(c *Config) { c.Export.SampleRatio = 0 },
			`config: export.sample_ratio: 0 must be greater than 0 and at most 1`},
		{"sample ratio over one", func(c *Config) { c.Export.SampleRatio = 1.5 },
			`config: export.sample_ratio: 1.5 must be greater than 0 and at most 1`},
		{"negative span cap", func(c *Config) { c.Export.MaxSpansPerSecond = -1 },
			`config: export.max_spans_per_second: -1 must be from 0 (no cap) to 1073741824`},
		{"held packets", func(c *Config) { c.Limits.Held = 0 },
			`config: limits.held_packets: 0 must be from 1 to 4194304`},
		{"nat aliases", func(c *Config) { c.Limits.Aliases = 0 },
			`config: limits.nat_aliases: 0 must be from 1 to 4194304`},
		{"exchanges", func(c *Config) { c.Limits.Exchanges = 0 },
			`config: limits.exchanges: 0 must be from 1 to 1048576`},
		{"correlate mode", func(c *Config) { c.Correlate.Mode = "grpc" },
			`config: correlate.mode: "grpc" is not allowed (use none or http)`},
		{"correlate bytes too few", func(c *Config) { c.Correlate.Bytes = 63 },
			`config: correlate.bytes: 63 must be from 64 to 4096`},
		{"correlate bytes too many", func(c *Config) { c.Correlate.Bytes = 4097 },
			`config: correlate.bytes: 4097 must be from 64 to 4096`},
		{"correlate trust empty", func(c *Config) { c.Correlate.Trust = nil },
			`config: correlate.trust: "" must not be empty (use egress, all, or CIDRs)`},
		{"correlate trust word", func(c *Config) { c.Correlate.Trust = []string{"ingress"} },
			`config: correlate.trust: "ingress" is not egress, all, an address or a CIDR`},
		{"correlate trust all and more", func(c *Config) { c.Correlate.Trust = []string{"all", "10.0.0.0/8"} },
			`config: correlate.trust: "all,10.0.0.0/8" all stands alone: it already believes every sender`},
		{"correlate max packets", func(c *Config) { c.Correlate.MaxPackets = 0 },
			`config: correlate.max_packets: 0 must be from 1 to 65536`},
		{"correlate linger", func(c *Config) { c.Correlate.Linger = 0 },
			`config: correlate.linger: 0s must be from 1ms to 1h`},
		{"idle timeout", func(c *Config) { c.Trace.IdleTimeout = 0 },
			`config: trace.idle_timeout: 0s must be from 1ms to 24h`},
		{"max duration", func(c *Config) { c.Trace.MaxDuration = -time.Minute },
			`config: trace.max_duration: -1m must be from 1ms to 24h`},
		{"max packets", func(c *Config) { c.Trace.MaxPackets = 0 },
			`config: trace.max_packets: 0 must be from 1 to 16777216`},
		{"close grace", func(c *Config) { c.Trace.CloseGrace = 0 },
			`config: trace.close_grace: 0s must be from 1ms to 24h`},
		{"packet timeout", func(c *Config) { c.Trace.PacketTimeout = 0 },
			`config: trace.packet_timeout: 0s must be from 1ms to 24h`},
		{"netns names", func(c *Config) { c.Limits.NetnsNames = 0 },
			`config: limits.netns_names: 0 must be from 1 to 1048576`},
		{"docker socket relative", func(c *Config) { c.Netns.DockerSocket = "docker.sock" },
			`config: netns.docker_socket: "docker.sock" is not an absolute path to a unix socket ("" turns Docker naming off)`},
		{"docker socket url", func(c *Config) { c.Netns.DockerSocket = "unix:///var/run/docker.sock" },
			`config: netns.docker_socket: "unix:///var/run/docker.sock" is not an absolute path to a unix socket ("" turns Docker naming off)`},
		{"cri socket relative", func(c *Config) { c.Netns.CRISocket = "run/containerd/containerd.sock" },
			`config: netns.cri_socket: "run/containerd/containerd.sock" is not an absolute path to a unix socket ("" looks for containerd's and CRI-O's default sockets)`},
		{"netns resync", func(c *Config) { c.Netns.Resync = 0 },
			`config: netns.resync: 0s must be from 1s to 24h`},
		{"netns grace", func(c *Config) { c.Netns.Grace = -time.Second },
			`config: netns.grace: -1s must be from 0 (forget a destroyed owner at once) to 24h`},
		{"flows", func(c *Config) { c.Limits.Flows = 0 },
			`config: limits.flows: 0 must be from 1 to 4194304`},
		{"packets", func(c *Config) { c.Limits.Packets = -5 },
			`config: limits.packets: -5 must be from 1 to 4194304`},
		{"queue beyond memory", func(c *Config) { c.OTLP.QueueSize = 9223372036854775807 },
			`config: otlp.queue_size: 9223372036854775807 must be from 1 to 4194304`},
		{"ring beyond the bound", func(c *Config) { c.Probes.RingSize = 2147483648 },
			`config: probes.ring_size: 2147483648 must be a power of two from 4096 to 1073741824`},
		{"track beyond the bound", func(c *Config) { c.Probes.TrackSize = 2000000000 },
			`config: probes.track_size: 2000000000 must be from 1 to 4194304`},
		{"stats interval that floods the log", func(c *Config) { c.Stats = time.Nanosecond },
			`config: stats_interval: 1ns must be from 1s to 24h`},
		{"batch delay that spins", func(c *Config) { c.OTLP.BatchDelay = time.Nanosecond },
			`config: otlp.batch_delay: 1ns must be from 10ms to 1m`},
		{"header reserved by gRPC", func(c *Config) { c.OTLP.Headers = map[string]string{"grpc-timeout": "1S"} },
			`config: otlp.headers.grpc-timeout: "1S" is under a header name gRPC reserves for itself (grpc-…)`},
		{"header name with a space", func(c *Config) { c.OTLP.Headers = map[string]string{"x tenant": "a"} },
			`config: otlp.headers.x tenant: "a" is under a header name gRPC refuses (use letters, digits, '-', '_' and '.')`},
		{"header value with a line break", func(c *Config) { c.OTLP.Headers = map[string]string{"x-tenant": "a\nb"} },
			`config: otlp.headers.x-tenant: "a\nb" is not a header value gRPC sends (printable ASCII only, or a name ending in -bin)`},
		{"netns path that is no namespace", func(c *Config) { c.Filter.Netns = []string{"/etc/passwd"} },
			`config: filter.netns: "/etc/passwd" is not a network namespace (use /run/netns/NAME, /proc/PID/ns/net or an inode number)`},
		{"btf device", func(c *Config) { c.BTF = "/dev/zero" },
			`config: btf: "/dev/zero" is not a regular file (give a BTF file such as /sys/kernel/btf/vmlinux)`},
		{"ca file not PEM", func(c *Config) { c.OTLP.CAFile = "testdata/empty.yaml" },
			`config: otlp.ca_file: "testdata/empty.yaml" holds no PEM certificate`},
		{"ca file device", func(c *Config) { c.OTLP.CAFile = "/dev/zero" },
			`config: otlp.ca_file: "/dev/zero" is not a regular file`},
		{"client cert without key", func(c *Config) { c.OTLP.ClientCert = "testdata/empty.yaml" },
			`config: otlp.client_cert: "testdata/empty.yaml" needs its key in otlp.client_key`},
		{"stages", func(c *Config) { c.Limits.Stages = 0 },
			`config: limits.stages: 0 must be from 1 to 4096`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.set(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate() =\n%s\nwant\n%s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("Validate() error %T is not a *config.Error", err)
			}
		})
	}
}

func TestValidateAcceptsGoodValuesUpToTheirLimits(t *testing.T) {
	dir := t.TempDir()
	btf := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(btf, []byte("BTF"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		set  func(c *Config)
	}{
		{"endpoint ipv6", func(c *Config) { c.OTLP.Endpoint = "[::1]:4317" }},
		{"endpoint name", func(c *Config) { c.OTLP.Endpoint = "otel-collector.monitoring:4317" }},
		{"headers", func(c *Config) { c.OTLP.Headers = map[string]string{"authorization": "Bearer x"} }},
		{"batch equals queue", func(c *Config) { c.OTLP.QueueSize, c.OTLP.BatchSize = 512, 512 }},
		{"smallest ring", func(c *Config) { c.Probes.RingSize = 4096 }},
		{"no functions", func(c *Config) { c.Probes.Functions = nil }},
		{"addrs", func(c *Config) { c.Filter.Addr = []string{"10.0.0.0/8", "10.1.2.3/8", "192.0.2.1", "::1", "fd00::/64"} }},
		{"ports", func(c *Config) { c.Filter.Port = []int{1, 65535} }},
		{"all addrs allowed", func(c *Config) {
			c.Filter.Addr = make([]string, MaxFilterAddrs)
			for i := range c.Filter.Addr {
				c.Filter.Addr[i] = fmt.Sprintf("10.0.0.%d", i)
			}
		}},
		{"protos", func(c *Config) { c.Filter.Proto = []string{"tcp", "udp", "icmp"} }},
		{"ifaces", func(c *Config) { c.Filter.Iface = []string{"eth0", "veth-blue.100", "fifteen-bytes-a"} }},
		{"netns", func(c *Config) { c.Filter.Netns = []string{"/proc/self/ns/net", "4026531840"} }},
		{"btf and ready file", func(c *Config) { c.BTF = btf; c.ReadyFile = filepath.Join(dir, "ready") }},
		{"containers, IDs and pods", func(c *Config) {
			c.Filter.Container = []string{"web", "web_1.blue-2", "3f4e5d6c7b8a", "kube-system/coredns-5d78c9869d-8xk2p"}
		}},
		{"all containers allowed", func(c *Config) {
			c.Filter.Container = make([]string, MaxFilterContainers)
			for i := range c.Filter.Container {
				c.Filter.Container[i] = fmt.Sprint("c", i)
			}
		}},
		{"no runtime sockets, no grace", func(c *Config) { c.Netns.DockerSocket, c.Netns.CRISocket, c.Netns.Grace = "", "", 0 }},
		{"runtime sockets elsewhere", func(c *Config) {
			c.Netns.DockerSocket, c.Netns.CRISocket = "/host/run/docker.sock", "/host/run/containerd/containerd.sock"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.set(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblemInFieldOrder(t *testing.T) {
	c := Default()
	c.Output = "xml"
	c.Filter.Port = []int{0, 80, 70000}
	c.Limits.Stages = 0
	err := c.Validate()
	want := strings.Join([]string{
		`config: output: "xml" is not allowed (use console, json or none)`,
		`config: filter.port: 0 is not a port (use 1 to 65535)`,
		`config: filter.port: 70000 is not a port (use 1 to 65535)`,
		`config: limits.stages: 0 must be from 1 to 4096`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() =\n%v\nwant\n%s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "output" || ce.Value != "xml" {
		t.Errorf("errors.As found %+v, want the output error first", ce)
	}
}

func TestPrefixesMaskWidenPlainAddressesAndUnmapIPv4(t *testing.T) {
	f := Filter{Addr: []string{"10.1.2.3/8", "192.0.2.7", "2001:db8::1/32", "::1", "::ffff:192.0.2.0/120"}}
	got, err := f.Prefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("192.0.2.0/24"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Prefixes() = %v, want %v", got, want)
	}

	_, err = Filter{Addr: []string{"10.0.0.1", "nope"}}.Prefixes()
	if err == nil || err.Error() != `config: filter.addr: "nope" is not an address or CIDR` {
		t.Errorf("Prefixes() error = %v", err)
	}
}

func TestParseMarkReadsDecimalOrHexValueAndMask(t *testing.T) {
	tests := []struct {
		in   string
		want Mark
	}{
		{"7", Mark{7, 0xffffffff}},
		{"0x10/0xf0", Mark{0x10, 0xf0}},
		{"0x1ff/0xff", Mark{0xff, 0xff}},
		{" 256/255 ", Mark{0, 0xff}},
	}
	for _, tt := range tests {
		if got, err := ParseMark(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseMark(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "x", "1/", "-1", "4294967296"} {
		if _, err := ParseMark(bad); err == nil {
			t.Errorf("ParseMark(%q) succeeded", bad)
		}
	}
}

func TestProtoNumbersMapNamesInOrderWithoutDuplicates(t *testing.T) {
	tests := []struct {
		proto []string
		want  []uint8
	}{
		{nil, nil},
		{[]string{"tcp"}, []uint8{6}},
		{[]string{"udp", "tcp"}, []uint8{17, 6}},
		{[]string{"icmp"}, []uint8{1, 58}},
		{[]string{"tcp", "icmp", "tcp"}, []uint8{6, 1, 58}},
	}
	for _, tt := range tests {
		if got := (Filter{Proto: tt.proto}).ProtoNumbers(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ProtoNumbers(%v) = %v, want %v", tt.proto, got, tt.want)
		}
	}
}

func TestParseTrustBelievesEgressAlwaysAndSendersItNames(t *testing.T) {
	tests := []struct {
		in   []string
		want Trust
	}{
		{[]string{"egress"}, Trust{}},
		{[]string{"all"}, Trust{All: true}},
		{[]string{"egress", "198.18.0.0/15", "fd00::1"}, Trust{Senders: []netip.Prefix{
			netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00::1/128")}}},
	}
	for _, tc := range tests {
		got, err := Correlate{Trust: tc.in}.ParseTrust()
		if err != nil {
			t.Fatalf("%v: %v", tc.in, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: %+v, want %+v", tc.in, got, tc.want)
		}
		if got.Ingress() != (tc.want.All || len(tc.want.Senders) > 0) {
			t.Errorf("%v: Ingress() = %v", tc.in, got.Ingress())
		}
	}
}
