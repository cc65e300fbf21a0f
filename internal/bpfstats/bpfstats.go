// Package bpfstats reads the kernel's run-time statistics of BPF programs (run time and
// run count, kernel.bpf_stats_enabled): those a process has attached, found by program
// id through its links' fdinfo, and an empty program's at the same tracepoints, the
// floor any program there costs. The bench and the VM tier measure pktspan's probes
// per call with it.
package bpfstats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

//go:generate bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../bpf/headers" -target bpfel -no-global-types reference reference.c

// TracepointHooks are the tracepoints pktspan attaches by default; the empty-program floor
// is measured at each of them.
var TracepointHooks = []string{
	"netif_receive_skb", "net_dev_queue", "net_dev_xmit", "kfree_skb", "consume_skb",
	"skb_copy_datagram_iovec", "tcp_retransmit_skb",
}

// Enable turns on the kernel's run-time statistics of every BPF program until
// the returned closer is closed (the kernel then restores the sysctl).
func Enable() (io.Closer, error) {
	c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics: %w", err)
	}
	return c, nil
}

// During runs fn with the statistics on (Enable), and restores them after. Only what
// runs within fn is counted: outside it, no program's calls are.
func During(fn func() error) error {
	c, err := Enable()
	if err != nil {
		return err
	}
	return errors.Join(fn(), c.Close())
}

// Calls is what the kernel's statistics say of a hook's programs.
type Calls struct {
	Runtime time.Duration
	Count   uint64
}

// NsPerCall is the mean run time of one call; 0 for a hook never called.
func (c Calls) NsPerCall() float64 {
	if c.Count == 0 {
		return 0
	}
	return float64(c.Runtime.Nanoseconds()) / float64(c.Count)
}

// Window is the statistics of each hook over one workload window: after − before.
type Window map[string]Calls

// Total is every hook together.
func (w Window) Total() Calls {
	var t Calls
	for _, c := range w {
		t.Runtime += c.Runtime
		t.Count += c.Count
	}
	return t
}

// Set is a set of programs, by the hook each is attached to, whose statistics are
// sampled; it holds a handle on each (and, for the floor, their links) until closed.
type Set struct {
	hooks   map[string][]*ebpf.Program
	closers []io.Closer
}

func (s *Set) add(hook string, p *ebpf.Program) {
	s.hooks[hook] = append(s.hooks[hook], p)
	s.closers = append(s.closers, p)
}

// Close releases the programs and, for the floor, detaches them.
func (s *Set) Close() error {
	var errs []error
	// Links before their programs: the reverse of the order they were made in.
	for _, c := range slices.Backward(s.closers) {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Sample reads each hook's programs' statistics now, summed over the programs.
func (s *Set) Sample() (Window, error) {
	w := Window{}
	for hook, progs := range s.hooks {
		var c Calls
		for _, p := range progs {
			st, err := p.Stats()
			if err != nil {
				return nil, fmt.Errorf("statistics of the program at %s: %w", hook, err)
			}
			c.Runtime += st.Runtime
			c.Count += st.RunCount
		}
		w[hook] = c
	}
	return w, nil
}

// Measure runs fn between two samples of s: the kernel cost of fn's workload alone,
// without attach and warm-up.
func Measure(s *Set, fn func() error) (Window, error) {
	before, err := s.Sample()
	if err != nil {
		return nil, err
	}
	if err := fn(); err != nil {
		return nil, err
	}
	after, err := s.Sample()
	if err != nil {
		return nil, err
	}
	w := Window{}
	for hook, a := range after {
		w[hook] = Calls{a.Runtime - before[hook].Runtime, a.Count - before[hook].Count}
	}
	return w, nil
}

// fdLink is what a bpf_link's fdinfo says: its program and, for a tracepoint, the
// tracepoint.
type fdLink struct {
	progID ebpf.ProgramID
	tpName string
}

// parseFdinfo reads one /proc/PID/fdinfo file; ok is false unless it is a link's.
func parseFdinfo(b []byte) (l fdLink, ok bool, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	isLink := false
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "link_id":
			isLink = true
		case "prog_id":
			id, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return l, false, fmt.Errorf("prog_id %q: %w", val, err)
			}
			l.progID = ebpf.ProgramID(id)
		case "tp_name":
			l.tpName = val
		}
	}
	return l, isLink && l.progID != 0, sc.Err()
}

// linkedPrograms reads a process's fdinfo directory and returns the programs its links
// attach, each with its tracepoint ("" for other links): the process's own programs,
// found by id whatever other tools have loaded.
func linkedPrograms(fdinfoDir string) (map[ebpf.ProgramID]string, error) {
	ents, err := os.ReadDir(fdinfoDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", fdinfoDir, err)
	}
	progs := map[ebpf.ProgramID]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(fdinfoDir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // closed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("reading fdinfo: %w", err)
		}
		l, ok, err := parseFdinfo(b)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", fdinfoDir, e.Name(), err)
		}
		if ok {
			progs[l.progID] = l.tpName
		}
	}
	return progs, nil
}

// OfProcess opens the programs the pktspan process pid has attached, labelled by
// tracepoint, or by program name for links without one.
func OfProcess(pid int) (*Set, error) {
	ids, err := linkedPrograms(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("process %d holds no BPF links", pid)
	}
	s := &Set{hooks: map[string][]*ebpf.Program{}}
	for id, hook := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("opening program %d of process %d: %w", id, pid, err)
		}
		if hook == "" {
			info, err := p.Info()
			if err != nil {
				_ = p.Close()
				_ = s.Close()
				return nil, fmt.Errorf("info of program %d of process %d: %w", id, pid, err)
			}
			hook = info.Name
		}
		s.add(hook, p)
	}
	return s, nil
}

// LoadFloor loads an empty tp_btf program (r0 = 0; exit) at each hook and attaches it:
// what any program there costs, the kernel's dispatch and the statistics included.
func LoadFloor(hooks []string) (*Set, error) {
	return attachEach("the empty program", hooks, emptySpec)
}

// ReadingHooks are the hooks where pktspan's probes read every skb's headers, whether the
// filters take it or not: LoadReading's program there reads them too.
var ReadingHooks = []string{"netif_receive_skb", "net_dev_queue", "kfree_skb"}

// LoadReading attaches, at each of ReadingHooks, a program that reads the first eight
// bytes of the IP header with one plain load and does nothing else, and the empty program
// at the other hooks, so that the programs keep the floor's company: the least any
// tracer that looks at the packet pays there. It needs a kernel that lets
// bpf_rdonly_cast make an untyped pointer (6.18 does; Debian's 6.1 and 6.12 do not).
func LoadReading(hooks []string) (*Set, error) {
	spec, err := loadReference()
	if err != nil {
		return nil, fmt.Errorf("reading the reference programs: %w", err)
	}
	return attachEach("the reading program", hooks, func(hook string) *ebpf.ProgramSpec {
		if slices.Contains(ReadingHooks, hook) {
			return spec.Programs["read_"+hook] // made for its hook: tp_btf/<hook>
		}
		return emptySpec(hook)
	})
}

// LoadClock attaches at each hook a program that reads the clock once
// (bpf_ktime_get_ns, as each of pktspan's events does) and does nothing else.
func LoadClock(hooks []string) (*Set, error) {
	return attachEach("the clock program", hooks, func(hook string) *ebpf.ProgramSpec {
		spec := emptySpec(hook)
		spec.Instructions = append(asm.Instructions{asm.FnKtimeGetNs.Call()}, spec.Instructions...)
		return spec
	})
}

// emptySpec is r0 = 0; exit as tp_btf at hook.
func emptySpec(hook string) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name:         "floor",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     hook,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	}
}

// attachEach loads the tp_btf program spec gives for each hook and attaches it there.
func attachEach(what string, hooks []string, spec func(hook string) *ebpf.ProgramSpec) (*Set, error) {
	s := &Set{hooks: map[string][]*ebpf.Program{}}
	for _, hook := range hooks {
		p, err := ebpf.NewProgram(spec(hook))
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("loading %s for %s: %w", what, hook, err)
		}
		s.add(hook, p)
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("attaching %s to %s: %w", what, hook, err)
		}
		s.closers = append(s.closers, l)
	}
	return s, nil
}

// WithFloor runs fn with the empty programs attached at hooks and returns their
// statistics over fn.
func WithFloor(hooks []string, fn func() error) (Window, error) {
	return With(LoadFloor, hooks, fn)
}

// With runs fn with the programs load attaches at hooks and returns their statistics
// over fn.
func With(load func(hooks []string) (*Set, error), hooks []string, fn func() error) (Window, error) {
	s, err := load(hooks)
	if err != nil {
		return nil, err
	}
	w, err := Measure(s, fn)
	return w, errors.Join(err, s.Close())
}
