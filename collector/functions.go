//go:build amd64

package collector

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/bpf"
)

// kprobePMU exists when the kernel was built with kprobes (CONFIG_KPROBES).
const kprobePMU = "/sys/bus/event_source/devices/kprobe"

// function backends, in the order `auto` tries them.
var functionBackends = []string{"fentry", "kprobe"}

// attachFunctions loads one copy of the function probes per configured function, each
// with its own constants, the tracepoint family's filter and maps, and attaches it with the
// first backend that works. Every function that cannot be attached is skipped with one
// reason; none is fatal.
func (c *Collector) attachFunctions(types *btf.Spec, inKernel bool, sigs []signature, fcfg filterCfg) error {
	if c.backend == "tracepoint" || len(c.functions) == 0 {
		return nil
	}
	spec, err := bpf.LoadFunctions()
	if err != nil {
		return fmt.Errorf("loading embedded function probes: %w", err)
	}
	calls, err := ebpf.NewMap(spec.Maps[bpf.FunctionsMapCalls])
	if err != nil {
		return fmt.Errorf("creating the function call map: %w", err)
	}
	c.closers = append(c.closers, calls.Close)
	shared := map[string]*ebpf.Map{
		bpf.FunctionsMapEvents:   c.coll.Maps[bpf.TracepointsMapEvents],
		bpf.FunctionsMapTracked:  c.coll.Maps[bpf.TracepointsMapTracked],
		bpf.FunctionsMapCounters: c.coll.Maps[bpf.TracepointsMapCounters],
		bpf.FunctionsMapCalls:    calls,
	}
	opts := ebpf.CollectionOptions{MapReplacements: shared}
	if !inKernel {
		opts.Programs.KernelTypes = types
	}
	backends := functionBackends
	if c.backend != "auto" {
		backends = []string{c.backend}
	}
	a := &functionAttacher{spec: spec, opts: opts, fcfg: fcfg, backends: backends, unavailable: map[string]string{}}
	// A backend the kernel lacks fails for every function alike: say it once.
	if _, err := os.Stat(kprobePMU); err != nil {
		a.unavailable["kprobe"] = "kernel has no kprobes (CONFIG_KPROBES)"
	}
	// Each function is its own load (CO-RE relocation and verification of two
	// programs), so they are loaded in parallel; the first alone, so a backend the
	// kernel lacks is found once rather than by every worker.
	results := make([]functionResult, len(c.functions))
	for i := range c.functions {
		if i == 1 {
			var wg sync.WaitGroup
			sem := make(chan struct{}, runtime.NumCPU())
			for j := 1; j < len(c.functions); j++ {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					results[j] = a.attach(c.functions[j], uint16(probeFuncBase+j), sigs[j])
				}()
			}
			wg.Wait()
			break
		}
		results[i] = a.attach(c.functions[i], uint16(probeFuncBase+i), sigs[i])
	}

	var notTraced []string // functions skipped only because no backend exists here
	for i, r := range results {
		name := c.functions[i]
		switch {
		case r.backend != "":
			c.links = append(c.links, r.links...)
			c.closers = append(c.closers, r.close)
			c.summary.Attached = append(c.summary.Attached, Attached{name, r.backend + "/" + exitOf(r.backend)})
		case r.noBackend:
			notTraced = append(notTraced, name)
		default:
			c.skip(name, r.reason)
		}
	}
	if len(notTraced) > 0 {
		var why []string
		for _, b := range backends {
			why = append(why, b+": "+a.unavailable[b])
		}
		reason := strings.Join(why, "; ")
		for _, name := range notTraced {
			c.summary.Skipped = append(c.summary.Skipped, Skipped{name, "no function backend on this kernel"})
		}
		c.log.Warn("function probes unavailable, tracing with tracepoints only", "functions", len(notTraced), "reason", reason)
	}
	return nil
}

// functionAttacher attaches functions, from several goroutines at once.
type functionAttacher struct {
	spec     *ebpf.CollectionSpec
	opts     ebpf.CollectionOptions
	fcfg     filterCfg
	backends []string

	mu          sync.Mutex
	unavailable map[string]string // backend → why the kernel cannot run it
}

// functionResult is what became of one function: attached with backend, or why not.
type functionResult struct {
	backend   string
	links     []link.Link
	close     func() error
	noBackend bool // every backend is one the kernel lacks
	reason    string
}

func (a *functionAttacher) attach(name string, probe uint16, sig signature) functionResult {
	if sig.err != nil {
		return functionResult{reason: sig.err.Error()}
	}
	var reasons []string
	for _, backend := range a.backends {
		a.mu.Lock()
		why, lacks := a.unavailable[backend]
		a.mu.Unlock()
		if lacks {
			reasons = append(reasons, backend+": "+why)
			continue
		}
		links, closer, err := attachFunction(a.spec, a.opts, a.fcfg, backend, name, probe, sig.skbArg)
		if err == nil {
			return functionResult{backend: backend, links: links, close: closer}
		}
		if kernelLacks(err) {
			a.mu.Lock()
			a.unavailable[backend] = fmt.Sprintf("this kernel cannot attach %s programs (%v)", backend, errors.Unwrap(err))
			a.mu.Unlock()
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", backend, err))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if allUnavailable(a.backends, a.unavailable) {
		return functionResult{noBackend: true}
	}
	return functionResult{reason: strings.Join(reasons, "; ")}
}

func allUnavailable(backends []string, unavailable map[string]string) bool {
	for _, b := range backends {
		if _, ok := unavailable[b]; !ok {
			return false
		}
	}
	return true
}

// kernelLacks tells a backend the kernel does not offer (every function would fail
// alike) from a problem with one function (notrace, inlined, verifier).
func kernelLacks(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, syscall.Errno(524)) // the kernel's internal ENOTSUPP
}

func exitOf(backend string) string {
	if backend == "fentry" {
		return "fexit"
	}
	return "kretprobe"
}

func (c *Collector) skip(name, reason string) {
	c.summary.Skipped = append(c.summary.Skipped, Skipped{name, reason})
	c.log.Warn("function not traced", "function", name, "reason", reason)
}

// attachFunction loads the entry and exit programs of backend for one function and
// attaches both, or leaves nothing behind.
func attachFunction(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, fcfg filterCfg,
	backend, name string, probe uint16, pos int) ([]link.Link, func() error, error) {
	enter, exit := fmt.Sprintf("fentry_skb_%d", pos), fmt.Sprintf("fexit_skb_%d", pos)
	if backend == "kprobe" {
		enter, exit = fmt.Sprintf("kprobe_skb_%d", pos), bpf.FunctionsProgKretprobeSkb
	}
	cs := spec.Copy()
	for p := range cs.Programs {
		if p != enter && p != exit {
			delete(cs.Programs, p)
		}
	}
	if backend == "fentry" {
		cs.Programs[enter].AttachTo = name
		cs.Programs[exit].AttachTo = name
	}
	isNF := name == "nf_hook_slow"
	for v, val := range map[string]any{
		bpf.FunctionsVarFilter:   fcfg,
		bpf.FunctionsVarProbeId:  probe,
		bpf.FunctionsVarIsNfHook: boolByte(isNF),
	} {
		if err := cs.Variables[v].Set(val); err != nil {
			return nil, nil, fmt.Errorf("setting %s: %w", v, err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("loading: %w", err)
	}
	var links []link.Link
	fail := func(err error) error {
		for _, l := range links {
			_ = l.Close()
		}
		coll.Close()
		return err
	}
	for _, p := range []string{enter, exit} {
		var l link.Link
		var err error
		switch {
		case backend == "fentry" && p == enter:
			l, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[p], AttachType: ebpf.AttachTraceFEntry})
		case backend == "fentry":
			l, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[p], AttachType: ebpf.AttachTraceFExit})
		case p == enter:
			l, err = link.Kprobe(name, coll.Programs[p], nil)
		default:
			l, err = link.Kretprobe(name, coll.Programs[p], nil)
		}
		if err != nil {
			return nil, nil, fail(fmt.Errorf("attaching %s %s: %w", p, name, err))
		}
		links = append(links, l)
	}
	return links, func() error { coll.Close(); return nil }, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
