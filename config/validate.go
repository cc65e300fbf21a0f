package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Sizes of the kernel's filter tables; longer filter lists cannot be loaded.
const (
	MaxFilterAddrs  = 16
	MaxFilterPorts  = 16
	MaxFilterIfaces = 8
	MaxFilterNetns  = 8
	MaxFilterVLANs  = 8
	MaxFilterMarks  = 8
	// MaxFilterContainers is the size of the kernel's set of followed container
	// namespaces: one namespace per name.
	MaxFilterContainers = 64
	// MaxNormalFreeReasons leaves room in the kernel's table of normal frees (32) for
	// the consumed reasons and pktspan's own kinds (collector/frees.go).
	MaxNormalFreeReasons = 14
)

// minRingSize is the smallest ring buffer the kernel takes: one page. Powers of two from
// here are multiples of 4 KiB pages; larger pages are the collector's to round up to.
const minRingSize = 4096

// maxIfaceName is IFNAMSIZ less the terminating NUL.
const maxIfaceName = 15

// Validate checks every field and returns all problems found, each an *Error, joined
// with errors.Join; nil means the Config is usable.
func (c Config) Validate() error {
	var v validator
	v.oneOf("output", c.Output, "console", "json", "none")
	v.nonEmpty("service_name", c.ServiceName)
	if c.BTF != "" {
		if st, err := os.Stat(c.BTF); err != nil {
			v.add("btf", c.BTF, "cannot be read: "+pathErr(err))
		} else if st.IsDir() {
			v.add("btf", c.BTF, "is a directory, not a BTF file")
		} else if !st.Mode().IsRegular() {
			v.add("btf", c.BTF, "is not a regular file (give a BTF file such as /sys/kernel/btf/vmlinux)")
		} else if st.Size() > MaxBTFBytes {
			v.add("btf", c.BTF, fmt.Sprintf("is %d bytes, more than a BTF file holds (at most %d)", st.Size(), MaxBTFBytes))
		}
	}
	if c.ReadyFile != "" {
		if st, err := os.Stat(filepath.Dir(c.ReadyFile)); err != nil || !st.IsDir() {
			v.add("ready_file", c.ReadyFile, "is not in an existing directory")
		}
	}
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("log_format", c.LogFormat, "text", "json")
	v.durationIn("stats_interval", c.Stats, MinStatsInterval, MaxStatsInterval)

	o := c.OTLP
	if o.Endpoint != "" && !isHostPort(o.Endpoint) {
		v.add("otlp.endpoint", o.Endpoint, "is not HOST:PORT (e.g. localhost:4317, no scheme; use otlp.insecure for plain text)")
	}
	for _, k := range slices.Sorted(maps.Keys(o.Headers)) {
		if reason := headerProblem(k, o.Headers[k]); reason != "" {
			v.add(headersKey+"."+k, o.Headers[k], reason)
		}
	}
	v.oneOf("otlp.compression", o.Compression, "gzip", "snappy", "none")
	v.durationIn("otlp.timeout", o.Timeout, MinOTLPTimeout, MaxOTLPTimeout)
	v.intIn("otlp.queue_size", o.QueueSize, 1, MaxQueueSpans)
	v.intIn("otlp.batch_size", o.BatchSize, 1, MaxBatchSpans)
	if o.QueueSize > 0 && o.BatchSize <= MaxBatchSpans && o.BatchSize > o.QueueSize {
		v.add("otlp.batch_size", o.BatchSize, fmt.Sprintf("must not exceed otlp.queue_size (%d)", o.QueueSize))
	}
	v.durationIn("otlp.batch_delay", o.BatchDelay, MinBatchDelay, MaxBatchDelay)
	v.tls(o)

	p := c.Probes
	v.oneOf("probes.backend", p.Backend, "auto", "fentry", "kprobe", "tracepoint")
	seen := make(map[string]bool)
	for _, fn := range p.Functions {
		switch {
		case !isIdent(fn):
			v.add("probes.functions", fn, "is not a kernel function name (letters, digits and _, not starting with a digit)")
		case seen[fn]:
			v.add("probes.functions", fn, "is listed twice")
		}
		seen[fn] = true
	}
	if p.RingSize < minRingSize || p.RingSize > MaxRingSize || p.RingSize&(p.RingSize-1) != 0 {
		v.add("probes.ring_size", p.RingSize, fmt.Sprintf("must be a power of two from %d to %d", minRingSize, MaxRingSize))
	}
	v.intIn("probes.track_size", p.TrackSize, 1, MaxTrackSize)
	v.intIn("probes.stack_size", p.StackSize, 1, MaxStackSize)
	v.maxLen("probes.normal_free_reasons", len(p.NormalFreeReasons), MaxNormalFreeReasons)
	for _, r := range p.NormalFreeReasons {
		if !isReasonName(r) {
			v.add("probes.normal_free_reasons", r, "is not a drop reason name (upper case, digits and _, as NOT_SPECIFIED)")
		}
	}

	f := c.Filter
	v.maxLen("filter.addr", len(f.Addr), MaxFilterAddrs)
	for _, a := range f.Addr {
		if _, err := parsePrefix(a); err != nil {
			v.add("filter.addr", a, "is not an address or CIDR")
		}
	}
	v.maxLen("filter.port", len(f.Port), MaxFilterPorts)
	for _, port := range f.Port {
		if port < 1 || port > 65535 {
			v.add("filter.port", port, "is not a port (use 1 to 65535)")
		}
	}
	for _, proto := range f.Proto {
		if _, ok := protoNumbers[proto]; !ok {
			v.add("filter.proto", proto, "is not allowed (use tcp, udp or icmp)")
		}
	}
	v.maxLen("filter.iface", len(f.Iface), MaxFilterIfaces)
	for _, name := range f.Iface {
		if !isIfaceName(name) {
			v.add("filter.iface", name, "is not an interface name (1 to 15 bytes, no '/', ':' or spaces)")
		}
	}
	v.maxLen("filter.netns", len(f.Netns), MaxFilterNetns)
	for _, ns := range f.Netns {
		if isInode(ns) {
			continue
		}
		if _, err := os.Stat(ns); err != nil {
			v.add("filter.netns", ns, "is neither an existing path nor an inode number")
		} else if reason := netnsProblem(ns); reason != "" {
			v.add("filter.netns", ns, reason)
		}
	}

	v.maxLen("filter.vlan", len(f.VLAN), MaxFilterVLANs)
	for _, id := range f.VLAN {
		if id < 0 || id > 4095 {
			v.add("filter.vlan", id, "is not a VLAN ID (use 0 to 4095)")
		}
	}
	v.maxLen("filter.mark", len(f.Mark), MaxFilterMarks)
	for _, m := range f.Mark {
		if _, err := ParseMark(m); err != nil {
			v.add("filter.mark", m, "is not a mark (use VALUE or VALUE/MASK, decimal or 0x hex, 32 bits)")
		}
	}
	v.maxLen("filter.container", len(f.Container), MaxFilterContainers)
	for _, name := range f.Container {
		if !isContainerName(name) {
			v.add("filter.container", name, "is not a container name or ID, nor a pod as namespace/pod")
		}
	}

	e := c.Export
	v.oneOf("export.mode", e.Mode, "all", "drops")
	v.intIn("export.drop_context", e.DropContext, 1, MaxDropContext)
	if !(e.SampleRatio > 0 && e.SampleRatio <= 1) {
		v.add("export.sample_ratio", e.SampleRatio, "must be greater than 0 and at most 1")
	}
	if e.MaxSpansPerSecond < 0 || e.MaxSpansPerSecond > MaxSpansPerSecond {
		v.add("export.max_spans_per_second", e.MaxSpansPerSecond, fmt.Sprintf("must be from 0 (no cap) to %d", MaxSpansPerSecond))
	}

	t := c.Trace
	v.durationIn("trace.idle_timeout", t.IdleTimeout, MinTraceTimer, MaxTraceTimer)
	v.durationIn("trace.max_duration", t.MaxDuration, MinTraceTimer, MaxTraceTimer)
	v.intIn("trace.max_packets", t.MaxPackets, 1, MaxWindowPackets)
	v.durationIn("trace.close_grace", t.CloseGrace, MinTraceTimer, MaxTraceTimer)
	v.durationIn("trace.packet_timeout", t.PacketTimeout, MinTraceTimer, MaxTraceTimer)

	l := c.Limits
	v.intIn("limits.flows", l.Flows, 1, MaxFlows)
	v.intIn("limits.packets", l.Packets, 1, MaxOpenPackets)
	v.intIn("limits.stages", l.Stages, 1, MaxStages)
	v.intIn("limits.held_packets", l.Held, 1, MaxHeldPackets)
	v.intIn("limits.nat_aliases", l.Aliases, 1, MaxNATAliases)
	v.intIn("limits.exchanges", l.Exchanges, 1, MaxExchanges)
	v.intIn("limits.netns_names", l.NetnsNames, 1, MaxNetnsNames)

	n := c.Netns
	v.socketPath("netns.docker_socket", n.DockerSocket, "turns Docker naming off")
	v.socketPath("netns.cri_socket", n.CRISocket, "looks for containerd's and CRI-O's default sockets")
	v.durationIn("netns.resync", n.Resync, MinNetnsResync, MaxNetnsTimer)
	if n.Grace < 0 || n.Grace > MaxNetnsTimer {
		v.add("netns.grace", n.Grace, "must be from 0 (forget a destroyed owner at once) to "+fmtDuration(MaxNetnsTimer))
	}

	cr := c.Correlate
	v.oneOf("correlate.mode", cr.Mode, "none", "http")
	if cr.Bytes < MinCorrelateBytes || cr.Bytes > MaxCorrelateBytes {
		v.add("correlate.bytes", cr.Bytes, fmt.Sprintf("must be from %d to %d", MinCorrelateBytes, MaxCorrelateBytes))
	}
	if _, err := cr.ParseTrust(); err != nil {
		v.errs = append(v.errs, err)
	}
	v.intIn("correlate.max_packets", cr.MaxPackets, 1, MaxCorrelatePkts)
	v.durationIn("correlate.linger", cr.Linger, MinLinger, MaxLinger)

	return errors.Join(v.errs...)
}

// Bounds of correlate.bytes: a request line and a traceparent need about 80 bytes; the
// kernel reads at most 4096 (REQUEST_BYTES_MAX in bpf/headers/pktspan.h).
const (
	MinCorrelateBytes = 64
	MaxCorrelateBytes = 4096
)

// Trust is correlate.trust parsed: a header sent by this host's sockets is always
// believed; one arriving from the network only when All is set or its sender is in
// Senders.
type Trust struct {
	All     bool
	Senders []netip.Prefix
}

// Ingress reports whether any header arriving from the network can be believed, that
// is whether received requests need reading at all.
func (t Trust) Ingress() bool { return t.All || len(t.Senders) > 0 }

// ParseTrust reads correlate.trust: egress, all, or CIDRs (egress may be listed beside
// CIDRs; all stands alone).
func (c Correlate) ParseTrust() (Trust, error) {
	var t Trust
	bad := func(value any, reason string) error {
		return &Error{Key: "correlate.trust", Value: value, Reason: reason}
	}
	if len(c.Trust) == 0 {
		return t, bad("", "must not be empty (use egress, all, or CIDRs)")
	}
	for _, w := range c.Trust {
		switch w = strings.TrimSpace(w); w {
		case "egress":
		case "all":
			if len(c.Trust) > 1 {
				return Trust{}, bad(strings.Join(c.Trust, ","), "all stands alone: it already believes every sender")
			}
			t.All = true
		default:
			p, err := parsePrefix(w)
			if err != nil {
				return Trust{}, bad(w, "is not egress, all, an address or a CIDR")
			}
			t.Senders = append(t.Senders, p)
		}
	}
	return t, nil
}

// Prefixes returns the address filters as masked prefixes; a plain address becomes a /32
// or /128, and an IPv4-mapped IPv6 address its IPv4 form, as the kernel sees IPv4 packets.
func (f Filter) Prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(f.Addr))
	for _, a := range f.Addr {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, &Error{Key: "filter.addr", Value: a, Reason: "is not an address or CIDR"}
		}
		out = append(out, p)
	}
	return out, nil
}

// Mark is one mark filter: an skb matches when its mark & Mask == Value.
type Mark struct{ Value, Mask uint32 }

// ParseMark reads VALUE or VALUE/MASK, each decimal or 0x hex; a plain VALUE has an
// all-ones mask. The value is masked, so 0x1ff/0xff matches as 0xff/0xff.
func ParseMark(s string) (Mark, error) {
	val, mask, hasMask := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseUint(val, 0, 32)
	if err != nil {
		return Mark{}, fmt.Errorf("mark %q: %w", s, err)
	}
	m := uint64(0xffffffff)
	if hasMask {
		if m, err = strconv.ParseUint(mask, 0, 32); err != nil {
			return Mark{}, fmt.Errorf("mark %q mask: %w", s, err)
		}
	}
	return Mark{Value: uint32(v & m), Mask: uint32(m)}, nil
}

// protoNumbers maps filter.proto values to IP protocol numbers; icmp covers ICMPv6.
var protoNumbers = map[string][]uint8{
	"tcp":  {6},
	"udp":  {17},
	"icmp": {1, 58},
}

// ProtoNumbers returns the IP protocol numbers of the proto filter, without duplicates,
// in the order given. Unknown names are skipped; Validate reports them.
func (f Filter) ProtoNumbers() []uint8 {
	var out []uint8
	for _, p := range f.Proto {
		for _, n := range protoNumbers[p] {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.Contains(host, "/") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// isReasonName tells an enum skb_drop_reason name without its prefix: NOT_SPECIFIED.
func isReasonName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func isIdent(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// isIfaceName follows the kernel's dev_valid_name.
func isIfaceName(s string) bool {
	if s == "" || len(s) > maxIfaceName || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n\r\v\f")
}

// isContainerName accepts what Docker allows in a container name (also an ID's form),
// or a pod as namespace/pod.
func isContainerName(s string) bool {
	ns, name, isPod := strings.Cut(s, "/")
	if !isPod {
		return isDockerName(s)
	}
	return isDockerName(ns) && isDockerName(name)
}

// isDockerName follows the Engine's rule: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
func isDockerName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return true
}

// isInode accepts a decimal namespace inode number (the kernel's ns.inum is 32 bits).
func isInode(s string) bool {
	n, err := strconv.ParseUint(s, 10, 32)
	return err == nil && n > 0
}

// pathErr drops the path from an os error, since the message already shows it.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

type validator struct{ errs []error }

func (v *validator) add(key string, value any, reason string) {
	v.errs = append(v.errs, &Error{Key: key, Value: value, Reason: reason})
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if slices.Contains(allowed, value) {
		return
	}
	list := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	v.add(key, value, "is not allowed (use "+list+")")
}

func (v *validator) nonEmpty(key, value string) {
	if strings.TrimSpace(value) == "" {
		v.add(key, value, "must not be empty")
	}
}

// intIn checks lo ≤ n ≤ hi.
func (v *validator) intIn(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(key, n, fmt.Sprintf("must be from %d to %d", lo, hi))
	}
}

// durationIn checks lo ≤ d ≤ hi.
func (v *validator) durationIn(key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.add(key, durationValue(d), "must be from "+fmtDuration(lo)+" to "+fmtDuration(hi))
	}
}

// durationValue shows a duration as fmtDuration does in an *Error.
type durationValue time.Duration

func (d durationValue) String() string { return fmtDuration(time.Duration(d)) }

// fmtDuration writes d as a user would: 24h, 1m, 10ms rather than 24h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// socketPath accepts "" (meaning what empty says) or an absolute path.
func (v *validator) socketPath(key, path, empty string) {
	if path != "" && !filepath.IsAbs(path) {
		v.add(key, path, "is not an absolute path to a unix socket (\"\" "+empty+")")
	}
}

func (v *validator) maxLen(key string, n, limit int) {
	if n > limit {
		v.add(key, n, fmt.Sprintf("values are more than the kernel filter holds (at most %d)", limit))
	}
}

// headerProblem checks an OTLP header as gRPC's metadata rules have it, or returns "":
// a name of [0-9a-zA-Z-_.] (gRPC lower-cases it), not reserved by gRPC (grpc-) nor a
// pseudo-header; a value of printable ASCII unless the name ends in -bin (binary).
func headerProblem(name, value string) string {
	if name == "" {
		return "has an empty header name"
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return "is under a header name gRPC refuses (use letters, digits, '-', '_' and '.')"
		}
	}
	if strings.HasPrefix(strings.ToLower(name), "grpc-") {
		return "is under a header name gRPC reserves for itself (grpc-…)"
	}
	if strings.HasSuffix(strings.ToLower(name), "-bin") {
		return ""
	}
	for i := range len(value) {
		if value[i] < 0x20 || value[i] > 0x7e {
			return "is not a header value gRPC sends (printable ASCII only, or a name ending in -bin)"
		}
	}
	return ""
}

// netnsProblem says why an existing path is not a network namespace, or returns "".
// The namespace file (/run/netns/x, /proc/PID/ns/net) answers NS_GET_NSTYPE.
func netnsProblem(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return "cannot be opened: " + err.Error()
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		return "is not a network namespace (use /run/netns/NAME, /proc/PID/ns/net or an inode number)"
	}
	return ""
}

// readCapped reads a file given by the user, refusing anything but a regular file of
// at most limit bytes, so a device or a huge file cannot fill memory.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.New("cannot be read: " + pathErr(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, errors.New("cannot be read: " + pathErr(err))
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("is not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, errors.New("cannot be read: " + pathErr(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("is larger than %d bytes", limit)
	}
	return b, nil
}

// Warnings returns what is allowed but likely wrong, each an *Error the caller logs:
// an interface filter naming no interface of pktspan's network namespace matches only
// where such an interface exists or appears later (another namespace, a veth to come).
func (c Config) Warnings() []*Error {
	var out []*Error
	for _, name := range c.Filter.Iface {
		if _, err := net.InterfaceByName(name); err != nil {
			out = append(out, &Error{Key: "filter.iface", Value: name,
				Reason: "names no interface of this network namespace: only packets on an interface of that name elsewhere, or made later, will match"})
		}
	}
	return out
}
