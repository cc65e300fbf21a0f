// Package config holds pktspan's one Config, its defaults, its loading from the layers
// defaults < YAML file < PKTSPAN_* environment < flags, and its validation.
package config

import "time"

// Config is everything pktspan can be told. Every field has a koanf key (the `koanf`
// tag, dotted by nesting) and, for the user-facing ones, a flag.
type Config struct {
	// Output is the local output: console, json or none.
	Output      string `koanf:"output"`
	ServiceName string `koanf:"service_name"`
	// BTF is a kernel BTF file to use when /sys/kernel/btf/vmlinux is missing.
	BTF       string `koanf:"btf"`
	ReadyFile string `koanf:"ready_file"`
	LogLevel  string `koanf:"log_level"` // debug, info, warn, error
	// LogFormat is text (the start-up summary as a block of lines, key=value records)
	// or json (one JSON object per record, the summary as one structured record).
	LogFormat string        `koanf:"log_format"`
	Stats     time.Duration `koanf:"stats_interval"`

	OTLP   OTLP   `koanf:"otlp"`
	Probes Probes `koanf:"probes"`
	Filter Filter `koanf:"filter"`
	Trace  Trace  `koanf:"trace"`
	Export Export `koanf:"export"`
	Limits Limits `koanf:"limits"`
	Netns  Netns  `koanf:"netns"`

	Correlate Correlate `koanf:"correlate"`
}

// OTLP configures the OTLP/gRPC export. An empty Endpoint with none of the standard
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables set means no export.
type OTLP struct {
	Endpoint    string            `koanf:"endpoint"` // host:port
	Insecure    bool              `koanf:"insecure"`
	Headers     map[string]string `koanf:"headers"`
	Compression string            `koanf:"compression"` // gzip, snappy or none
	Timeout     time.Duration     `koanf:"timeout"`     // per export request
	QueueSize   int               `koanf:"queue_size"`  // spans waiting to be sent
	BatchSize   int               `koanf:"batch_size"`  // spans per request
	BatchDelay  time.Duration     `koanf:"batch_delay"` // longest wait before a partial batch goes
	// CAFile is a PEM bundle of the CAs the collector's certificate is checked against,
	// instead of the system's.
	CAFile string `koanf:"ca_file"`
	// ClientCert and ClientKey are the PEM certificate and key pktspan presents to a
	// collector that asks for one (mutual TLS); both or neither.
	ClientCert string `koanf:"client_cert"`
	ClientKey  string `koanf:"client_key"`
}

// Probes chooses what is attached in the kernel.
type Probes struct {
	Backend   string   `koanf:"backend"` // auto, fentry, kprobe or tracepoint
	Functions []string `koanf:"functions"`
	// RingSize is the ring buffer size in bytes: a power of two, multiple of the page size.
	RingSize int `koanf:"ring_size"`
	// TrackSize is the number of skbs the kernel remembers as matching the filters.
	TrackSize int `koanf:"track_size"`
	// NormalFreeReasons are kfree_skb drop reasons treated as normal ends wherever they
	// happen, on top of pktspan's own rule (collector/frees.go).
	NormalFreeReasons []string `koanf:"normal_free_reasons"`
	// Stack puts the kernel stack of each drop on its drop event.
	Stack bool `koanf:"stack"`
	// StackSize is the number of drop stacks the kernel keeps until user space reads
	// them; a drop finding the table full is counted and has no stack.
	StackSize int `koanf:"stack_size"`
}

// Filter selects packets in the kernel at an skb's first sighting. Values of one field
// are OR-ed; different fields are AND-ed; an empty field matches everything.
type Filter struct {
	Addr  []string `koanf:"addr"`  // CIDR or plain address, IPv4 or IPv6
	Port  []int    `koanf:"port"`  // source or destination port
	Proto []string `koanf:"proto"` // tcp, udp, icmp (icmp covers ICMPv6)
	Iface []string `koanf:"iface"` // interface name
	Netns []string `koanf:"netns"` // path such as /run/netns/x or /proc/PID/ns/net, or an inode number
	VLAN  []int    `koanf:"vlan"`  // 802.1Q VLAN ID, 0 to 4095
	Mark  []string `koanf:"mark"`  // skb mark VALUE or VALUE/MASK, decimal or 0x hex
	// Expression is a pcap-filter expression, as tcpdump takes it (pktspan's positional
	// arguments), evaluated in the kernel on an skb's first bytes at its first sighting.
	Expression string `koanf:"expression"`
	// Container names containers (or pods, as namespace/pod) whose network namespace is
	// followed, across restarts: the netns namer keeps the kernel's set current.
	Container []string `koanf:"container"`
	// DropsOnly sends to user space only the skbs that end in a drop; the kernel holds
	// every skb's events until its free and discards those freed normally.
	DropsOnly bool `koanf:"drops_only"`
}

// Trace sets the boundaries of a flow's trace window.
type Trace struct {
	IdleTimeout   time.Duration `koanf:"idle_timeout"`   // a flow with no packet for this long closes
	MaxDuration   time.Duration `koanf:"max_duration"`   // a window never lasts longer
	MaxPackets    int           `koanf:"max_packets"`    // packets in one window
	CloseGrace    time.Duration `koanf:"close_grace"`    // kept open after FIN/RST for the last packets
	PacketTimeout time.Duration `koanf:"packet_timeout"` // an skb never freed ends after this long
}

// Export chooses which flow windows leave pktspan.
type Export struct {
	// Mode is all (every window) or drops: a window is exported only once it holds a
	// dropped packet, with up to DropContext packets from before the drop.
	Mode        string  `koanf:"mode"`
	DropContext int     `koanf:"drop_context"`
	SampleRatio float64 `koanf:"sample_ratio"` // share of flows exported, by flow hash: 0 < r ≤ 1
	// MaxSpansPerSecond caps the spans exported per second; 0 means no cap.
	MaxSpansPerSecond int `koanf:"max_spans_per_second"`
	// SKBAddress exports each skb's kernel address as it is; otherwise spans carry an
	// opaque per-run ID in its place, so no kernel heap address leaves the host.
	SKBAddress bool `koanf:"skb_address"`
}

// Correlate puts the packets of HTTP/1.x requests into the application's own traces:
// each request's traceparent header names the client span its exchange span goes under.
type Correlate struct {
	Mode  string `koanf:"mode"`  // none or http
	Bytes int    `koanf:"bytes"` // bytes of a request read to find its traceparent
	// Trust says whose headers are believed: egress (sent by this host's sockets), all,
	// or CIDRs whose senders are believed on top of egress.
	Trust []string `koanf:"trust"`
	// MaxPackets caps the packet spans put under one exchange; the first and last, and
	// every drop, retransmission, RST and zero window, always go.
	MaxPackets int `koanf:"max_packets"`
	// Linger is how long after its last packet an exchange is exported, once the data
	// it carried is acknowledged both ways.
	Linger time.Duration `koanf:"linger"`
}

// Limits bound user-space memory.
type Limits struct {
	Flows   int `koanf:"flows"`   // open flow windows
	Packets int `koanf:"packets"` // open packet spans
	Stages  int `koanf:"stages"`  // stage spans kept in one packet span
	// Held is the number of ended packets export.mode=drops holds, over all flows,
	// while their window has no drop yet.
	Held int `koanf:"held_packets"`
	// Aliases is the number of translated tuples (NAT) remembered as another name of a flow.
	Aliases int `koanf:"nat_aliases"`
	// Exchanges is the number of open exchanges of correlate.mode http (one per request);
	// connections remembered with their recent requests are as many.
	Exchanges int `koanf:"exchanges"`
	// NetnsNames is the number of network namespace owners the netns namer keeps, the
	// destroyed ones kept for netns.grace included.
	NetnsNames int `koanf:"netns_names"`
}

// Netns configures how network namespaces are named after their owners (the host,
// /run/netns files, Docker containers, CRI pods).
type Netns struct {
	// DockerSocket is the Docker Engine's unix socket; empty turns Docker naming off.
	DockerSocket string `koanf:"docker_socket"`
	// CRISocket is a CRI runtime's unix socket; empty looks for containerd's and
	// CRI-O's default sockets.
	CRISocket string `koanf:"cri_socket"`
	// Resync is how often the owners are listed again, beside the runtime's events.
	Resync time.Duration `koanf:"resync"`
	// Grace is how long a destroyed owner keeps naming its namespace: its packets are
	// exported after it is gone.
	Grace time.Duration `koanf:"grace"`
}

// DefaultFunctions is the kernel function set traced when none is configured.
var DefaultFunctions = []string{
	"ip_rcv_core", "ip_local_deliver", "ip_forward", "nf_hook_slow", "tcp_v4_rcv", "udp_rcv",
	"ip_output", "ip_finish_output2", "__dev_queue_xmit",
	"ip6_rcv_core", "ip6_input", "ip6_forward", "tcp_v6_rcv", "udpv6_rcv", "ip6_output", "ip6_finish_output2",
}

// Default returns the configuration used when nothing else is said.
func Default() Config {
	return Config{
		Output:      "console",
		ServiceName: "pktspan",
		LogLevel:    "info",
		LogFormat:   "text",
		Stats:       10 * time.Second,
		OTLP: OTLP{
			Compression: "gzip",
			Timeout:     10 * time.Second,
			QueueSize:   65536,
			BatchSize:   4096,
			BatchDelay:  time.Second,
		},
		Probes: Probes{
			Backend:   "auto",
			Functions: append([]string(nil), DefaultFunctions...),
			RingSize:  8 << 20,
			TrackSize: 65536,
			StackSize: 1024,
		},
		Trace: Trace{
			IdleTimeout:   30 * time.Second,
			MaxDuration:   60 * time.Second,
			MaxPackets:    200,
			CloseGrace:    2 * time.Second,
			PacketTimeout: 5 * time.Second,
		},
		Export: Export{
			Mode:        "all",
			DropContext: 32,
			SampleRatio: 1,
		},
		Limits: Limits{
			Flows:      16384,
			Packets:    65536,
			Stages:     64,
			Held:       16384,
			Aliases:    16384,
			Exchanges:  4096,
			NetnsNames: 4096,
		},
		Netns: Netns{
			DockerSocket: "/var/run/docker.sock",
			Resync:       30 * time.Second,
			Grace:        60 * time.Second,
		},
		Correlate: Correlate{
			Mode:       "none",
			Bytes:      1024,
			Trust:      []string{"egress"},
			MaxPackets: 64,
			Linger:     time.Second,
		},
	}
}
