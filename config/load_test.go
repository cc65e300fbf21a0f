package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// load runs Load with a fresh flag set whose help output is discarded.
func load(t *testing.T, args, environ []string) (Config, error) {
	t.Helper()
	fs := NewFlagSet()
	fs.SetOutput(&bytes.Buffer{})
	return Load(fs, args, environ)
}

// loadCase is one successful Load: want edits Default() into the expected Config.
type loadCase struct {
	name string
	args []string
	env  []string
	want func(c *Config)
}

func checkLoads(t *testing.T, tests []loadCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(t, tt.args, tt.env)
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadLaterLayersOverrideEarlierOnesKeyByKey(t *testing.T) {
	const file = "testdata/layers.yaml"
	fromFile := func(c *Config) {
		c.Output = "json"
		c.ServiceName = "from-file"
		c.OTLP.Endpoint = "file:4317"
		c.OTLP.Headers = map[string]string{"x-file": "1", "x-both": "file"}
		c.Filter.Port = []int{1}
		c.Filter.Proto = []string{"tcp"}
		c.Trace.MaxPackets = 10
	}
	env := []string{
		"PATH=/usr/bin",
		"PKTSPAN_OTLP__ENDPOINT=env:4317",
		"PKTSPAN_SERVICE_NAME=from-env",
		"PKTSPAN_FILTER__PORT=80,443",
		"PKTSPAN_OTLP__HEADERS__X-BOTH=env",
		"PKTSPAN_TRACE__IDLE_TIMEOUT=45s",
	}
	fromEnv := func(c *Config) {
		fromFile(c)
		c.OTLP.Endpoint = "env:4317"
		c.ServiceName = "from-env"
		c.Filter.Port = []int{80, 443}
		c.OTLP.Headers["x-both"] = "env"
		c.Trace.IdleTimeout = 45e9
	}
	tests := []loadCase{
		{"defaults", nil, nil, func(*Config) {}},
		{"defaults ignore other programs' variables", nil, []string{"HOME=/root", "PKTSPANX=1", "OTEL_EXPORTER_OTLP_HEADERS=garbage"}, func(*Config) {}},
		{"empty file", []string{"--config", "testdata/empty.yaml"}, nil, func(*Config) {}},
		{"empty sections keep their defaults", []string{"--config", "testdata/emptysections.yaml"}, nil, func(*Config) {}},
		{"file over defaults", []string{"--config", file}, nil, fromFile},
		{"file from PKTSPAN_CONFIG", nil, []string{"PKTSPAN_CONFIG=" + file}, fromFile},
		{"--config over PKTSPAN_CONFIG", []string{"--config", file}, []string{"PKTSPAN_CONFIG=testdata/missing.yaml"}, fromFile},
		{"env over file", []string{"--config", file}, env, fromEnv},
		{"flags over env", []string{
			"--config", file, "--otlp-endpoint", "flag:4317", "--filter-port", "8080",
			"--otlp-header", "x-flag=2", "--trace-max-packets", "5", "--otlp-insecure",
		}, env, func(c *Config) {
			fromEnv(c)
			c.OTLP.Endpoint = "flag:4317"
			c.Filter.Port = []int{8080}
			c.OTLP.Headers["x-flag"] = "2"
			c.Trace.MaxPackets = 5
			c.OTLP.Insecure = true
		}},
		{"unset flags keep file and env", []string{"--config", file, "--log-level", "debug"}, env, func(c *Config) {
			fromEnv(c)
			c.LogLevel = "debug"
		}},
		{"flag over default only", []string{"--max-flows", "10", "--backend", "tracepoint"}, nil, func(c *Config) {
			c.Limits.Flows = 10
			c.Probes.Backend = "tracepoint"
		}},
		{"flag set to its default still wins", []string{"--config", file, "--output", "console"}, nil, func(c *Config) {
			fromFile(c)
			c.Output = "console"
		}},
		{"last environment entry wins", nil, []string{"PKTSPAN_OUTPUT=json", "PKTSPAN_OUTPUT=none"}, func(c *Config) {
			c.Output = "none"
		}},
	}
	checkLoads(t, tests)
}

func TestLoadReadsListsHeadersAndScalarsInEveryForm(t *testing.T) {
	tests := []loadCase{
		{"repeated and comma flags", []string{
			"--filter-port", "80", "--filter-port", "443,8080",
			"--filter-addr", "10.0.0.0/8,::1", "--filter-addr", "192.0.2.1",
			"--filter-proto", "tcp,udp", "--filter-iface", "eth0", "--filter-iface", "lo",
			"--filter-netns", "4026531840,4026532000",
		}, nil, func(c *Config) {
			c.Filter = Filter{
				Addr:  []string{"10.0.0.0/8", "::1", "192.0.2.1"},
				Port:  []int{80, 443, 8080},
				Proto: []string{"tcp", "udp"},
				Iface: []string{"eth0", "lo"},
				Netns: []string{"4026531840", "4026532000"},
			}
		}},
		{"positional arguments are one expression", []string{"tcp", "port", "443", "--filter-addr", "198.18.0.1", "and not host 198.18.0.9"}, nil, func(c *Config) {
			c.Filter.Expression = "tcp port 443 and not host 198.18.0.9"
			c.Filter.Addr = []string{"198.18.0.1"}
		}},
		{"an expression's commas are its own", nil, []string{"PKTSPAN_FILTER__EXPRESSION=tcp[13] & 2 != 0, x"}, func(c *Config) {
			c.Filter.Expression = "tcp[13] & 2 != 0, x"
		}},
		{"arguments override the environment's expression", []string{"udp"}, []string{"PKTSPAN_FILTER__EXPRESSION=tcp"}, func(c *Config) {
			c.Filter.Expression = "udp"
		}},
		{"functions replace the default set", []string{"--functions", "ip_rcv_core,tcp_v4_rcv", "--functions", "udp_rcv"}, nil, func(c *Config) {
			c.Probes.Functions = []string{"ip_rcv_core", "tcp_v4_rcv", "udp_rcv"}
		}},
		{"empty functions flag", []string{"--functions", ""}, nil, func(c *Config) {
			c.Probes.Functions = nil
		}},
		{"normal free reasons", []string{"--normal-free-reasons", "NOT_SPECIFIED,NO_SOCKET"}, nil, func(c *Config) {
			c.Probes.NormalFreeReasons = []string{"NOT_SPECIFIED", "NO_SOCKET"}
		}},
		{"env lists", nil, []string{
			"PKTSPAN_FILTER__PROTO=tcp, udp", "PKTSPAN_FILTER__PORT=53", "PKTSPAN_PROBES__FUNCTIONS=",
		}, func(c *Config) {
			c.Filter.Proto = []string{"tcp", "udp"}
			c.Filter.Port = []int{53}
			c.Probes.Functions = nil
		}},
		{"yaml list forms", []string{"--config", "testdata/lists.yaml"}, nil, func(c *Config) {
			c.Filter.Addr = []string{"10.0.0.0/8", "fd00::/64"}
			c.Filter.Port = []int{80, 443}
			c.Filter.Proto = []string{"tcp", "icmp"}
			c.Filter.Netns = []string{"4026531840"}
			c.Probes.Functions = nil
		}},
		{"yaml scalar forms", []string{"--config", "testdata/scalarforms.yaml"}, nil, func(c *Config) {
			c.ServiceName = "123"
			c.OTLP.Insecure = true
			c.OTLP.Headers = map[string]string{"x-num": "7"}
			c.Trace.MaxPackets = 7
			c.Filter.Port = []int{80}
			c.Filter.Netns = []string{"4026531840"}
		}},
		{"headers from flags", []string{"--otlp-header", "a=1", "--otlp-header", "b=2,c=3"}, nil, func(c *Config) {
			c.OTLP.Headers = map[string]string{"a": "1", "b": "2", "c": "3"}
		}},
		{"headers from one variable", nil, []string{"PKTSPAN_OTLP__HEADERS=a=1, b=2"}, func(c *Config) {
			c.OTLP.Headers = map[string]string{"a": "1", "b": "2"}
		}},
		{"vlan, mark and drops-only flags", []string{"--filter-vlan", "100,200", "--filter-mark", "0x10/0xf0", "--drops-only"}, nil, func(c *Config) {
			c.Filter.VLAN = []int{100, 200}
			c.Filter.Mark = []string{"0x10/0xf0"}
			c.Filter.DropsOnly = true
		}},
		{"sample ratio from a flag", []string{"--export-sample-ratio", "0.25", "--export-mode", "drops"}, nil, func(c *Config) {
			c.Export.SampleRatio = 0.25
			c.Export.Mode = "drops"
		}},
		{"containers and runtime sockets from flags", []string{
			"--filter-container", "web", "--filter-container", "db,kube-system/coredns",
			"--netns-docker-socket", "", "--netns-cri-socket", "/run/k3s/containerd/containerd.sock",
			"--netns-grace", "0s", "--netns-resync", "5s", "--max-netns-names", "64",
		}, nil, func(c *Config) {
			c.Filter.Container = []string{"web", "db", "kube-system/coredns"}
			c.Netns = Netns{CRISocket: "/run/k3s/containerd/containerd.sock", Resync: 5e9}
			c.Limits.NetnsNames = 64
		}},
		{"Docker naming off from the environment", nil, []string{"PKTSPAN_NETNS__DOCKER_SOCKET=", "PKTSPAN_FILTER__CONTAINER=web"}, func(c *Config) {
			c.Netns.DockerSocket = ""
			c.Filter.Container = []string{"web"}
		}},
		{"sample ratio from the environment", nil, []string{"PKTSPAN_EXPORT__SAMPLE_RATIO= 0.5", "PKTSPAN_FILTER__DROPS_ONLY=true"}, func(c *Config) {
			c.Export.SampleRatio = 0.5
			c.Filter.DropsOnly = true
		}},
	}
	checkLoads(t, tests)
}

func TestLoadReportsBadInputWithItsKeyValueAndReason(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown yaml keys", []string{"--config", "testdata/unknown.yaml"}, nil,
			"config: otlp.endpiont: unknown key in testdata/unknown.yaml (did you mean otlp.endpoint?)\n" +
				"config: outptu: unknown key in testdata/unknown.yaml (did you mean output?)"},
		{"section given a value", []string{"--config", "testdata/section.yaml"}, nil,
			`config: otlp: "localhost:4317" in testdata/section.yaml is a section and needs keys below it`},
		{"section given a value, though the environment sets its keys", []string{"--config", "testdata/section.yaml"},
			[]string{"PKTSPAN_OTLP__ENDPOINT=localhost:4317"},
			`config: otlp: "localhost:4317" in testdata/section.yaml is a section and needs keys below it`},
		{"keys are case-sensitive and values have no keys", []string{"--config", "testdata/keycase.yaml"}, nil,
			"config: Output: unknown key in testdata/keycase.yaml (did you mean output?)\n" +
				"config: log_level.debug: unknown key in testdata/keycase.yaml"},
		{"missing file", []string{"--config", "testdata/missing.yaml"}, nil,
			"config: testdata/missing.yaml: config file cannot be read: no such file or directory"},
		{"missing file from env", nil, []string{"PKTSPAN_CONFIG=testdata/missing.yaml"},
			"config: testdata/missing.yaml: config file cannot be read: no such file or directory"},
		{"not yaml", []string{"--config", "testdata/notyaml.yaml"}, nil,
			"config: testdata/notyaml.yaml: is not a valid YAML config: yaml: line 1: did not find expected ',' or ']'"},
		{"wrong types in yaml", []string{"--config", "testdata/badtypes.yaml"}, nil, strings.Join([]string{
			`config: otlp.insecure: "maybe" is not true or false`,
			`config: otlp.headers: [a b] is not a mapping of header names to values`,
			`config: filter.port: map[x:1] is not an integer`,
			`config: trace.idle_timeout: 30 is not a duration (give a unit, e.g. 10s)`,
			`config: trace.max_packets: "many" is not an integer`,
		}, "\n")},
		{"yaml values of no accepted type", []string{"--config", "testdata/badforms.yaml"}, nil, strings.Join([]string{
			`config: service_name: [a] is not a string`,
			`config: otlp.headers.a: [1] is not a string`,
			`config: filter.proto: true is not a list`,
			`config: filter.vlan: is not an integer`,
			`config: export.sample_ratio: true is not a number`,
		}, "\n")},
		{"env bad values", nil, []string{
			"PKTSPAN_TRACE__MAX_PACKETS=abc", "PKTSPAN_OTLP__INSECURE=yes", "PKTSPAN_STATS_INTERVAL=10",
			"PKTSPAN_FILTER__PORT=80,http", "PKTSPAN_EXPORT__SAMPLE_RATIO=half",
		}, strings.Join([]string{
			`config: stats_interval: "10" is not a duration (e.g. 500ms, 10s, 1m30s)`,
			`config: otlp.insecure: "yes" is not true or false`,
			`config: filter.port: "http" is not an integer`,
			`config: trace.max_packets: "abc" is not an integer`,
			`config: export.sample_ratio: "half" is not a number`,
		}, "\n")},
		{"env single underscore", nil, []string{"PKTSPAN_OTLP_ENDPOINT=localhost:4317"},
			"config: PKTSPAN_OTLP_ENDPOINT: is not a pktspan variable (did you mean PKTSPAN_OTLP__ENDPOINT?)"},
		{"env unknown variable", nil, []string{"PKTSPAN_UNRELATED=1"},
			"config: PKTSPAN_UNRELATED: is not a pktspan variable (each key's variable is in --help, e.g. PKTSPAN_OTLP__ENDPOINT)"},
		{"env misspelt variable", nil, []string{"PKTSPAN_OTLP__ENDPIONT=localhost:4317"},
			"config: PKTSPAN_OTLP__ENDPIONT: is not a pktspan variable (did you mean PKTSPAN_OTLP__ENDPOINT?)"},
		{"empty filter flag", []string{"--filter-addr", ""}, nil,
			`config: filter.addr: "" gives an empty filter value, which would match every packet (leave the filter out for that)`},
		{"blank filter item in a flag", []string{"--filter-port", "80,,443"}, nil,
			`config: filter.port: "80,,443" gives an empty filter value, which would match every packet (leave the filter out for that)`},
		{"empty filter variable", nil, []string{"PKTSPAN_FILTER__PROTO= "},
			`config: filter.proto: " " gives an empty filter value, which would match every packet (leave the filter out for that)`},
		{"garbage OTLP endpoint variable", nil, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=::::garbage"},
			`config: OTEL_EXPORTER_OTLP_ENDPOINT: "::::garbage" is not an endpoint URL (e.g. http://localhost:4317 for plain text, https://collector:4317)`},
		{"OTLP timeout variable", []string{"--otlp-endpoint", "localhost:4317"}, []string{"OTEL_EXPORTER_OTLP_TIMEOUT=10s"},
			`config: OTEL_EXPORTER_OTLP_TIMEOUT: "10s" must be milliseconds from 100 to 300000`},
		{"resource attributes variable", []string{"--otlp-endpoint", "localhost:4317"}, []string{"OTEL_RESOURCE_ATTRIBUTES=a=1,garbage"},
			`config: OTEL_RESOURCE_ATTRIBUTES: "garbage" is not KEY=VALUE (resource attributes are a comma list of key=value)`},
		{"header variable gRPC refuses", []string{"--otlp-endpoint", "localhost:4317"}, []string{"OTEL_EXPORTER_OTLP_HEADERS=x-a=caf%C3%A9"},
			`config: OTEL_EXPORTER_OTLP_HEADERS: "x-a=caf%C3%A9" is not a header value gRPC sends (printable ASCII only, or a name ending in -bin)`},
		{"env section", nil, []string{"PKTSPAN_OTLP=localhost:4317"},
			`config: PKTSPAN_OTLP: "localhost:4317" names a section; set its keys, e.g. PKTSPAN_OTLP__ENDPOINT`},
		{"env header string", nil, []string{"PKTSPAN_OTLP__HEADERS=novalue"},
			`config: otlp.headers: "novalue" is not KEY=VALUE`},
		{"unknown flag", []string{"--nope"}, nil,
			"config: unknown flag: --nope (see --help)"},
		{"flag without value", []string{"--output"}, nil,
			"config: flag needs an argument: --output (see --help)"},
		{"bad duration flag", []string{"--trace-idle-timeout", "soon"}, nil,
			`config: invalid argument "soon" for "--trace-idle-timeout" flag: time: invalid duration "soon" (see --help)`},
		{"bad port flag", []string{"--filter-port", "http"}, nil,
			`config: filter.port: "http" is not an integer`},
		{"bad header flag", []string{"--otlp-header", "novalue"}, nil,
			`config: invalid argument "novalue" for "--otlp-header" flag: novalue must be formatted as key=value (see --help)`},
		{"blank expression", []string{"--output", "json", " "}, nil,
			`config: filter.expression: " " gives an empty filter value, which would match every packet (leave the filter out for that)`},
		{"validated after layering", []string{"--filter-port", "0", "--otlp-compression", "zip"}, nil,
			"config: otlp.compression: \"zip\" is not allowed (use gzip, snappy or none)\n" +
				"config: filter.port: 0 is not a port (use 1 to 65535)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.args, tt.env)
			if err == nil {
				t.Fatalf("Load() = nil error, want\n%s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Load() error =\n%s\nwant\n%s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("Load() error %T is not a *config.Error", err)
			}
		})
	}
}

func TestLoadPrintsHelpAndReturnsErrHelp(t *testing.T) {
	fs := NewFlagSet()
	var out bytes.Buffer
	fs.SetOutput(&out)
	_, err := Load(fs, []string{"--help"}, nil)
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("Load(--help) error = %v, want pflag.ErrHelp", err)
	}
	if !strings.HasPrefix(out.String(), "pktspan follows each packet") {
		t.Errorf("help does not start with the description:\n%s", out.String())
	}
}

func TestLoadIgnoresCallerFlags(t *testing.T) {
	fs := NewFlagSet()
	version := fs.Bool("version", false, "print the version and exit")
	got, err := Load(fs, []string{"--version", "--output", "none"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !*version || got.Output != "none" {
		t.Errorf("version = %v, output = %q", *version, got.Output)
	}
}

func TestOTLPEnabledByEndpointOrOTELEndpointVariable(t *testing.T) {
	tests := []struct {
		endpoint string
		env      []string
		want     bool
	}{
		{"", nil, false},
		{"", []string{"OTEL_EXPORTER_OTLP_ENDPOINT="}, false},
		{"localhost:4317", nil, true},
		{"", []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"}, true},
		{"", []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4317"}, true},
		{"", []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://collector:4317"}, false},
	}
	for _, tt := range tests {
		c := Default()
		c.OTLP.Endpoint = tt.endpoint
		if got := c.OTLPEnabled(tt.env); got != tt.want {
			t.Errorf("OTLPEnabled(endpoint %q, env %q) = %v, want %v", tt.endpoint, tt.env, got, tt.want)
		}
	}
}

func TestExampleConfigShowsEveryKeyAtItsDefault(t *testing.T) {
	const path = "../examples/pktspan.yaml"
	got, err := load(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("Load(%s) error = %v", path, err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs from Default():\n%+v\nwant\n%+v", path, got, want)
	}

	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		if !k.Exists(l.key) {
			t.Errorf("%s does not show key %s", path, l.key)
		}
	}
}

func TestJaegerExampleLoadsItsExportAndFilters(t *testing.T) {
	got, err := load(t, []string{"--config", "../examples/jaeger.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Output = "none"
	want.OTLP.Endpoint = "localhost:4317"
	want.OTLP.Insecure = true
	want.Filter.Proto = []string{"tcp"}
	want.Filter.Port = []int{80, 443}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jaeger.yaml =\n%+v\nwant\n%+v", got, want)
	}
}

func TestEnvNameSeparatesSectionAndKeyWithDoubleUnderscore(t *testing.T) {
	for key, want := range map[string]string{
		"otlp.endpoint":    "PKTSPAN_OTLP__ENDPOINT",
		"service_name":     "PKTSPAN_SERVICE_NAME",
		"probes.ring_size": "PKTSPAN_PROBES__RING_SIZE",
	} {
		if got := EnvName(key); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", key, got, want)
		}
	}
}
