package main

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

// floorHooks are the tracepoints pktspan attaches by default; the empty-program floor
// is measured at each of them.
var floorHooks = []string{
	"netif_receive_skb", "net_dev_queue", "net_dev_xmit", "kfree_skb", "consume_skb",
	"skb_copy_datagram_iovec", "tcp_retransmit_skb",
}

// enableBPFStats turns on the kernel's run-time statistics of every BPF program until
// the returned closer is closed (the kernel then restores the sysctl).
func enableBPFStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("enabling BPF run-time statistics: %w", err)
	}
	return c, nil
}

// callStats is what the kernel's statistics say of a hook's programs.
type callStats struct {
	runtime time.Duration
	calls   uint64
}

func (c callStats) nsPerCall() float64 {
	if c.calls == 0 {
		return 0
	}
	return float64(c.runtime.Nanoseconds()) / float64(c.calls)
}

// bpfWindow is the statistics of each hook over one workload window: after − before.
type bpfWindow map[string]callStats

// total is every hook together.
func (w bpfWindow) total() callStats {
	var t callStats
	for _, c := range w {
		t.runtime += c.runtime
		t.calls += c.calls
	}
	return t
}

// progSet is a set of programs, by the hook each is attached to, whose statistics are
// sampled; it holds a handle on each (and, for the floor, their links) until closed.
type progSet struct {
	hooks   map[string][]*ebpf.Program
	closers []io.Closer
}

func (s *progSet) add(hook string, p *ebpf.Program) {
	s.hooks[hook] = append(s.hooks[hook], p)
	s.closers = append(s.closers, p)
}

func (s *progSet) Close() error {
	var errs []error
	// Links before their programs: the reverse of the order they were made in.
	for _, c := range slices.Backward(s.closers) {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (s *progSet) sample() (bpfWindow, error) {
	w := bpfWindow{}
	for hook, progs := range s.hooks {
		var c callStats
		for _, p := range progs {
			st, err := p.Stats()
			if err != nil {
				return nil, fmt.Errorf("statistics of the program at %s: %w", hook, err)
			}
			c.runtime += st.Runtime
			c.calls += st.RunCount
		}
		w[hook] = c
	}
	return w, nil
}

// measureBPF runs fn between two samples of s: the kernel cost of fn's workload alone,
// without attach and warm-up.
func measureBPF(s *progSet, fn func() error) (bpfWindow, error) {
	before, err := s.sample()
	if err != nil {
		return nil, err
	}
	if err := fn(); err != nil {
		return nil, err
	}
	after, err := s.sample()
	if err != nil {
		return nil, err
	}
	w := bpfWindow{}
	for hook, a := range after {
		w[hook] = callStats{a.runtime - before[hook].runtime, a.calls - before[hook].calls}
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

// pktspanPrograms opens the programs the pktspan process pid has attached, labelled by
// tracepoint, or by program name for links without one.
func pktspanPrograms(pid int) (*progSet, error) {
	ids, err := linkedPrograms(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("pktspan (pid %d) holds no BPF links", pid)
	}
	s := &progSet{hooks: map[string][]*ebpf.Program{}}
	for id, hook := range ids {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("opening pktspan's program %d: %w", id, err)
		}
		if hook == "" {
			info, err := p.Info()
			if err != nil {
				_ = p.Close()
				_ = s.Close()
				return nil, fmt.Errorf("info of pktspan's program %d: %w", id, err)
			}
			hook = info.Name
		}
		s.add(hook, p)
	}
	return s, nil
}

// loadFloor loads an empty tp_btf program (r0 = 0; exit) at each hook and attaches it:
// what any program there costs, the kernel's dispatch and the statistics included.
func loadFloor(hooks []string) (*progSet, error) {
	s := &progSet{hooks: map[string][]*ebpf.Program{}}
	for _, hook := range hooks {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "bench_floor",
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceRawTp,
			AttachTo:     hook,
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
			License:      "GPL",
		})
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("loading the empty program for %s: %w", hook, err)
		}
		s.add(hook, p)
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("attaching the empty program to %s: %w", hook, err)
		}
		s.closers = append(s.closers, l)
	}
	return s, nil
}

// withFloor runs fn with the empty programs attached at hooks and returns their
// statistics over fn.
func withFloor(hooks []string, fn func() error) (bpfWindow, error) {
	s, err := loadFloor(hooks)
	if err != nil {
		return nil, err
	}
	w, err := measureBPF(s, fn)
	return w, errors.Join(err, s.Close())
}

// spread is the median, minimum and maximum of a figure over rounds.
type spread struct{ med, lo, hi float64 }

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{med, s[0], s[n-1]}
}

// format prints the median with verb, and the spread where rounds differ in print: "0.97 (0.95–0.99)".
func (s spread) format(verb string) string {
	m, lo, hi := fmt.Sprintf(verb, s.med), fmt.Sprintf(verb, s.lo), fmt.Sprintf(verb, s.hi)
	if lo == hi {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, lo, hi)
}
