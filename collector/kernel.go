package collector

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// DropReasons names the values of the running kernel's enum skb_drop_reason.
type DropReasons struct {
	names  []string // by value; "" where the enum has no such value
	normal []bool   // by value: frees on the normal path, not drops
	// unknown caches names made up for values the enum lacks (other subsystems' reasons).
	unknown map[uint32]string
}

const maxUnknownReasons = 256

// NewDropReasons builds the table from enum skb_drop_reason in spec (the kernel's BTF).
func NewDropReasons(spec *btf.Spec) (*DropReasons, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("finding enum skb_drop_reason in kernel BTF: %w", err)
	}
	values := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		values[uint32(v.Value)] = v.Name
	}
	return dropReasonsFrom(values), nil
}

// dropReasonsFrom takes the enum's values as BTF names them (SKB_DROP_REASON_NO_SOCKET,
// SKB_CONSUMED, SKB_NOT_DROPPED_YET) and keeps the names users know (NO_SOCKET).
func dropReasonsFrom(values map[uint32]string) *DropReasons {
	var max uint32
	for v := range values {
		if v < 1<<16 && v > max {
			max = v
		}
	}
	r := &DropReasons{names: make([]string, max+1), normal: make([]bool, max+1), unknown: make(map[uint32]string)}
	for v, name := range values {
		if v <= max {
			name = strings.TrimPrefix(name, "SKB_DROP_REASON_")
			r.names[v] = strings.TrimPrefix(name, "SKB_")
			r.normal[v] = r.names[v] == "NOT_DROPPED_YET" || r.names[v] == "CONSUMED"
		}
	}
	return r
}

// TreatAsNormal makes the named reasons normal frees, not drops: some kernels free
// packets on their normal path with a reason (6.18 frees the handshake's last ACK as
// NOT_SPECIFIED). Every name must be one of this kernel's.
func (r *DropReasons) TreatAsNormal(names []string) error {
	for _, name := range names {
		v := slices.Index(r.names, name)
		if v < 0 || name == "" {
			return fmt.Errorf("probes.normal_free_reasons: %q is not a drop reason of this kernel (enum skb_drop_reason without its SKB_DROP_REASON_ prefix, such as NOT_SPECIFIED)", name)
		}
		r.normal[v] = true
	}
	return nil
}

// Name returns the reason's name and whether it is a drop at all: NOT_DROPPED_YET,
// CONSUMED and the reasons given to TreatAsNormal are frees on the normal path.
func (r *DropReasons) Name(v uint32) (string, bool) {
	name := ""
	if int(v) < len(r.names) {
		name = r.names[v]
	}
	if name != "" {
		return name, !r.normal[v]
	}
	if name == "" {
		var ok bool
		if name, ok = r.unknown[v]; !ok {
			if len(r.unknown) >= maxUnknownReasons {
				clear(r.unknown)
			}
			name = "REASON_" + strconv.FormatUint(uint64(v), 10)
			r.unknown[v] = name
		}
	}
	return name, true
}

// NotDrops returns the values whose names are normal frees, for the probes to tell a
// drop from a free as Name does.
func (r *DropReasons) NotDrops() []uint32 {
	var out []uint32
	for v, normal := range r.normal {
		if normal {
			out = append(out, uint32(v))
		}
	}
	return out
}

// Kallsyms symbolizes kernel addresses from /proc/kallsyms. Modules loaded after start
// (nf_tables when the first nft rule arrives) are picked up: when /proc/modules changes,
// the table is read again, at most once per refreshEvery.
type Kallsyms struct {
	path, modulesPath string
	syms              []ksym
	cache             map[uint64]string
	modules           []byte
	checked           time.Time
}

type ksym struct {
	addr uint64
	name string
}

const (
	maxSymbolCache = 8192
	refreshEvery   = 2 * time.Second
)

// NewKallsyms reads the symbol table at path (normally /proc/kallsyms).
func NewKallsyms(path, modulesPath string) (*Kallsyms, error) {
	k := &Kallsyms{path: path, modulesPath: modulesPath, cache: make(map[uint64]string)}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kallsyms) load() error {
	f, err := os.Open(k.path)
	if err != nil {
		return fmt.Errorf("reading kernel symbols: %w", err)
	}
	defer f.Close()
	syms, err := parseKallsyms(f)
	if err != nil {
		return fmt.Errorf("reading kernel symbols from %s: %w", k.path, err)
	}
	if len(syms) == 0 {
		return fmt.Errorf("reading kernel symbols from %s: no text symbols with addresses (run as root)", k.path)
	}
	k.syms = syms
	clear(k.cache)
	k.modules, _ = os.ReadFile(k.modulesPath)
	k.checked = time.Now()
	return nil
}

func parseKallsyms(r io.Reader) ([]ksym, error) {
	var syms []ksym
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// "ffffffff81000000 T _text" or "ffffffffc0a01000 t nft_do_chain\t[nf_tables]"
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		syms = append(syms, ksym{addr: addr, name: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(syms, func(a, b ksym) int { return cmp.Compare(a.addr, b.addr) })
	return syms, nil
}

// Symbolize returns `symbol+0xoff`, or the hex address when no symbol covers it.
func (k *Kallsyms) Symbolize(addr uint64) string {
	if s, ok := k.cache[addr]; ok {
		return s
	}
	if time.Since(k.checked) > refreshEvery {
		k.checked = time.Now()
		if mods, err := os.ReadFile(k.modulesPath); err == nil && !bytes.Equal(mods, k.modules) {
			_ = k.load() // on failure the old table stays; names are best effort
		}
	}
	s := k.lookup(addr)
	if len(k.cache) >= maxSymbolCache {
		clear(k.cache)
	}
	k.cache[addr] = s
	return s
}

func (k *Kallsyms) lookup(addr uint64) string {
	i, found := slices.BinarySearchFunc(k.syms, addr, func(s ksym, a uint64) int { return cmp.Compare(s.addr, a) })
	if !found {
		i--
	}
	if i < 0 {
		return "0x" + strconv.FormatUint(addr, 16)
	}
	return k.syms[i].name + "+0x" + strconv.FormatUint(addr-k.syms[i].addr, 16)
}

// MonoClock converts CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to wall time with
// an offset re-measured by Refresh, so NTP steps and drift do not accumulate.
type MonoClock struct {
	offset atomic.Int64
}

// NewMonoClock measures the offset once.
func NewMonoClock() (*MonoClock, error) {
	c := &MonoClock{}
	if err := c.Refresh(); err != nil {
		return nil, err
	}
	return c, nil
}

// Refresh re-measures wall − monotonic, taking the tightest of a few samples.
func (c *MonoClock) Refresh() error {
	best := int64(-1)
	var offset int64
	for range 3 {
		var a, b unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &a); err != nil {
			return fmt.Errorf("reading the monotonic clock: %w", err)
		}
		wall := time.Now().UnixNano()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &b); err != nil {
			return fmt.Errorf("reading the monotonic clock: %w", err)
		}
		width := b.Nano() - a.Nano()
		if best < 0 || width < best {
			best = width
			offset = wall - (a.Nano()+b.Nano())/2
		}
	}
	c.offset.Store(offset)
	return nil
}

// WallNano implements Clock.
func (c *MonoClock) WallNano(mono uint64) int64 { return int64(mono) + c.offset.Load() }

var errNoBTF = errors.New("no kernel BTF")
