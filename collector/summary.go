package collector

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pktspan/pktspan/config"
)

// Summary says what Start found and attached. Its JSON names are the fields of the
// start-up record under --log-format json.
type Summary struct {
	Kernel      string   `json:"kernel"`
	BTF         string   `json:"btf"`          // where kernel types came from
	Tracefs     string   `json:"tracefs"`      // mount point, or "" when not mounted
	DropReasons int      `json:"drop_reasons"` // values of enum skb_drop_reason known
	NormalFrees []string `json:"normal_frees"` // reasons configured as normal frees, not drops
	// Conntrack says whether events carry their conntrack entry's original tuple, and
	// where struct nf_conn's layout came from, or why not.
	Conntrack string `json:"conntrack"`
	// Netfilter says whether a netfilter drop names the nft table and chain that
	// decided it, or why not.
	Netfilter string `json:"netfilter"`
	// Headers says how the probes read packet headers.
	Headers string `json:"headers,omitempty"`
	// NoBackend lists, when no function backend could run on this kernel, each one
	// tried and why the kernel cannot run it.
	NoBackend  []Unavailable `json:"no_function_backend,omitempty"`
	Attached   []Attached    `json:"attached"`
	Skipped    []Skipped     `json:"skipped"`
	AttachTime time.Duration `json:"attach_time_ns"`
	Filter     string        `json:"filter"`
}

// Attached is one probe in place.
type Attached struct {
	Name string `json:"name"`
	Via  string `json:"via"`
}

// Skipped is one probe that could not be attached, and why.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Unavailable is a function backend this kernel cannot run, and why.
type Unavailable struct {
	Backend string `json:"backend"`
	Reason  string `json:"reason"`
}

// String renders the summary as the block of lines pktspan prints at start.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s, BTF from %s, %d drop reasons", s.Kernel, s.BTF, s.DropReasons)
	if len(s.NormalFrees) > 0 {
		fmt.Fprintf(&b, " (normal frees, not drops: %s)", strings.Join(s.NormalFrees, ","))
	}
	if s.Tracefs == "" {
		b.WriteString(", tracefs not mounted (not needed: tracepoints attach through BTF)")
	}
	fmt.Fprintf(&b, "\nconntrack: %s", s.Conntrack)
	if s.Netfilter != "" {
		fmt.Fprintf(&b, "\nnetfilter: %s", s.Netfilter)
	}
	if s.Headers != "" {
		fmt.Fprintf(&b, "\npacket headers: %s", s.Headers)
	}
	if len(s.NoBackend) > 0 {
		b.WriteString("\nfunction probes: none on this kernel, tracepoints only:")
		for _, u := range s.NoBackend {
			fmt.Fprintf(&b, "\n  %-6s %s", u.Backend, u.Reason)
		}
	}
	fmt.Fprintf(&b, "\nattached %d probes in %s:", len(s.Attached), s.AttachTime.Round(100*time.Microsecond))
	for _, a := range s.Attached {
		fmt.Fprintf(&b, "\n  %-30s %s", a.Name, a.Via)
	}
	for _, k := range s.Skipped {
		fmt.Fprintf(&b, "\n  %-30s skipped: %s", k.Name, k.Reason)
	}
	fmt.Fprintf(&b, "\nfilter: %s", s.Filter)
	return b.String()
}

// Summary returns what Start attached.
func (c *Collector) Summary() Summary { return c.summary }

// describeFilter is the summary's filter line.
func describeFilter(f config.Filter, expression bool) string {
	var parts []string
	add := func(key string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, key+"="+strings.Join(vals, ","))
		}
	}
	itoa := func(ns []int) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = strconv.Itoa(n)
		}
		return out
	}
	add("addr", f.Addr)
	add("port", itoa(f.Port))
	add("proto", f.Proto)
	add("iface", f.Iface)
	add("netns", f.Netns)
	add("container", f.Container)
	add("vlan", itoa(f.VLAN))
	add("mark", f.Mark)
	if expression {
		parts = append(parts, "expression="+strconv.Quote(f.Expression))
	}
	desc := strings.Join(parts, " ")
	if len(parts) == 0 {
		desc = "none (every IP packet)"
	}
	if f.DropsOnly {
		desc += fmt.Sprintf("; drops only: a drop takes its skb's earlier events from its CPU's last %d", TrailSlots)
	}
	return desc
}
