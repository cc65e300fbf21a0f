//go:build amd64

package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/bpf"
)

// kprobePMU exists when the kernel was built with kprobes (CONFIG_KPROBES).
const kprobePMU = "/sys/bus/event_source/devices/kprobe"

// cookieNFHook mirrors COOKIE_NF_HOOK of enum probe_cookie in bpf/headers/pktspan.h.
const cookieNFHook = 1 << 16

// function backends, in the order `auto` tries them.
var functionBackends = []string{"fentry", "kprobe"}

// target is one kernel function to attach: a configured function, or skb_clone.
type target struct {
	name  string
	probe uint16 // probe id of its events
	sig   signature
	clone bool // skb_clone's own programs
}

// nfHook tells nf_hook_slow, whose hook state pktspan reports.
func (t target) nfHook() bool { return t.name == "nf_hook_slow" }

// cookie is t's kprobe attach cookie (enum probe_cookie in bpf/headers/pktspan.h).
func (t target) cookie() uint64 {
	c := uint64(t.probe)
	if t.nfHook() {
		c |= cookieNFHook
	}
	return c
}

// programs returns the entry and exit programs of backend for t; skb_clone's fexit
// sees its argument, so it needs no entry program.
func (t target) programs(backend string) (enter, exit string) {
	switch {
	case t.clone && backend == "fentry":
		return "", bpf.FunctionsProgFexitSkbClone
	case t.clone:
		return bpf.FunctionsProgKprobeSkbClone, bpf.FunctionsProgKretprobeSkbClone
	case backend == "fentry":
		return fmt.Sprintf("fentry_skb_%d", t.sig.skbArg), fmt.Sprintf("fexit_skb_%d", t.sig.skbArg)
	}
	return fmt.Sprintf("kprobe_skb_%d", t.sig.skbArg), bpf.FunctionsProgKretprobeSkb
}

// attachFunctions attaches every configured function and skb_clone with the first
// backend that works, sharing the tracepoint family's filter and maps: fentry loads
// its programs once per function (a trampoline program is bound to its function), the
// kprobe programs are loaded once and attached to every function with a cookie naming
// it. Every function that cannot be attached is skipped with one reason; none is
// fatal. It returns how many of the configured functions are attached.
func (c *Collector) attachFunctions(cache *btf.Cache, tpMaps map[string]*ebpf.Map, types *btf.Spec, inKernel bool, sigs []signature, consts probeConsts) (int, error) {
	if c.backend == "tracepoint" {
		return 0, nil
	}
	spec, err := bpf.LoadFunctions()
	if err != nil {
		return 0, fmt.Errorf("loading embedded function probes: %w", err)
	}
	calls, err := ebpf.NewMap(spec.Maps[bpf.FunctionsMapCalls])
	if err != nil {
		return 0, fmt.Errorf("creating the function call map: %w", err)
	}
	c.closers = append(c.closers, calls.Close)
	// The two families name the maps they share alike (skb.h declares them).
	shared := maps.Clone(tpMaps)
	shared[bpf.FunctionsMapCalls] = calls
	// A replacement must match its spec, sizes included: ring, track and pending
	// sizes come from the configuration.
	for name, m := range shared {
		spec.Maps[name].MaxEntries = m.MaxEntries()
	}
	opts := ebpf.CollectionOptions{MapReplacements: shared, Cache: cache}
	if !inKernel {
		opts.Programs.KernelTypes = types
	}
	backends := functionBackends
	if c.backend != "auto" {
		backends = []string{c.backend}
	}
	targets := make([]target, 0, len(c.functions)+1)
	for i, name := range c.functions {
		targets = append(targets, target{name: name, probe: uint16(probeFuncBase + i), sig: sigs[i]})
	}
	targets = append(targets, target{name: cloneFunction, probe: probeSKBClone, sig: cloneSignature(types), clone: true})
	// Every fentry load copies the spec: it keeps only what some target may load.
	var used []string
	for _, t := range targets {
		if t.sig.err != nil {
			continue
		}
		for _, b := range backends {
			enter, exit := t.programs(b)
			used = append(used, enter, exit)
		}
	}
	spec = keepPrograms(spec, used...)
	a := &functionAttacher{log: c.log, spec: spec, opts: opts, consts: consts, backends: backends,
		targets: targets, unavailable: map[string]string{}}
	// A backend the kernel lacks fails for every function alike: say it once.
	if _, err := os.Stat(kprobePMU); err != nil {
		a.unavailable["kprobe"] = "kernel has no kprobes (CONFIG_KPROBES)"
	}
	// Each fentry function is its own load (CO-RE relocation and verification of its
	// programs), so functions are attached in parallel; the first alone, so a backend
	// the kernel lacks is found once rather than by every worker.
	results := make([]functionResult, len(targets))
	first := slices.IndexFunc(targets, func(t target) bool { return t.sig.err == nil })
	if first >= 0 {
		results[first] = a.attach(targets[first])
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for j := range targets {
		if j == first {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[j] = a.attach(targets[j])
		}()
	}
	wg.Wait()
	if a.kprobes != nil {
		c.closers = append(c.closers, func() error { a.kprobes.Close(); return nil })
	}

	attached := 0
	var notTraced []string // functions skipped only because no backend exists here
	for i, r := range results {
		name := targets[i].name
		switch {
		case r.backend != "":
			c.links = append(c.links, r.links...)
			if r.close != nil {
				c.closers = append(c.closers, r.close)
			}
			c.summary.Attached = append(c.summary.Attached, Attached{name, viaOf(r.backend, targets[i].clone)})
			if !targets[i].clone {
				attached++
			}
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
	return attached, nil
}

// cloneSignature checks that skb_clone can be traced: it takes the skb first and
// returns the clone.
func cloneSignature(types *btf.Spec) signature {
	sig := resolveSignature(types, cloneFunction)
	if sig.err == nil && (sig.skbArg != 0 || sig.ret != RetPointer) {
		sig.err = errors.New("its prototype is not struct sk_buff *skb_clone(struct sk_buff *, ...)")
	}
	return sig
}

// functionAttacher attaches functions, from several goroutines at once.
type functionAttacher struct {
	log      *slog.Logger
	spec     *ebpf.CollectionSpec
	opts     ebpf.CollectionOptions
	consts   probeConsts
	backends []string
	targets  []target

	kprobeOnce sync.Once
	kprobes    *ebpf.Collection // the kprobe programs, loaded by the first function needing them
	kprobeErr  error

	mu          sync.Mutex
	unavailable map[string]string // backend → why the kernel cannot run it
}

// functionResult is what became of one function: attached with backend, or why not.
type functionResult struct {
	backend   string
	links     []link.Link
	close     func() error // frees the function's own programs, if it has any
	noBackend bool         // every backend is one the kernel lacks
	reason    string
}

func (a *functionAttacher) attach(t target) functionResult {
	if t.sig.err != nil {
		return functionResult{reason: t.sig.err.Error()}
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
		start := time.Now()
		var links []link.Link
		var closer func() error
		var err error
		if backend == "fentry" {
			links, closer, err = attachFentry(a.spec, a.opts, a.consts, t)
		} else {
			links, err = a.attachKprobe(t)
		}
		a.log.Debug("attaching a function", "function", t.name, "backend", backend, "took", time.Since(start), "error", err)
		if err == nil {
			return functionResult{backend: backend, links: links, close: closer}
		}
		if kernelLacks(err) || errors.Is(err, errKprobeLoad) {
			// Say the kernel's error, without the step that met it.
			why := errors.Unwrap(err)
			if why == nil {
				why = err
			}
			a.mu.Lock()
			a.unavailable[backend] = fmt.Sprintf("this kernel cannot attach %s programs (%v)", backend, why)
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

// viaOf names how a function is traced, for the summary.
func viaOf(backend string, clone bool) string {
	switch {
	case backend == "fentry" && clone:
		return "fexit"
	case backend == "fentry":
		return "fentry/fexit"
	}
	return "kprobe/kretprobe"
}

func (c *Collector) skip(name, reason string) {
	c.summary.Skipped = append(c.summary.Skipped, Skipped{name, reason})
	c.log.Warn("function not traced", "function", name, "reason", reason)
}

// attachFentry loads the fentry/fexit programs for one target and attaches them, or
// leaves nothing behind.
func attachFentry(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, consts probeConsts, t target) ([]link.Link, func() error, error) {
	enter, exit := t.programs("fentry")
	cs := keepPrograms(spec, enter, exit)
	for _, p := range cs.Programs {
		p.AttachTo = t.name
	}
	if err := setConsts(cs, consts, map[string]any{
		bpf.FunctionsVarProbeId:  t.probe,
		bpf.FunctionsVarIsNfHook: boolByte(t.nfHook()),
	}); err != nil {
		return nil, nil, err
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("loading: %w", err)
	}
	var links []link.Link
	for _, p := range []string{enter, exit} {
		if p == "" {
			continue
		}
		attachType := ebpf.AttachTraceFEntry
		if p == exit {
			attachType = ebpf.AttachTraceFExit
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[p], AttachType: attachType})
		if err != nil {
			closeLinks(links)
			coll.Close()
			return nil, nil, fmt.Errorf("attaching %s %s: %w", p, t.name, err)
		}
		links = append(links, l)
	}
	return links, func() error { coll.Close(); return nil }, nil
}

// errKprobeLoad marks a failure to load the shared kprobe programs: every function
// would fail alike.
var errKprobeLoad = errors.New("loading the kprobe programs")

// attachKprobe attaches the shared kprobe programs to one target, loading them first
// if no function has yet, or leaves nothing behind.
func (a *functionAttacher) attachKprobe(t target) ([]link.Link, error) {
	a.kprobeOnce.Do(a.loadKprobes)
	if a.kprobeErr != nil {
		return nil, a.kprobeErr
	}
	enter, exit := t.programs("kprobe")
	opts := &link.KprobeOptions{Cookie: t.cookie()}
	l, err := link.Kprobe(t.name, a.kprobes.Programs[enter], opts)
	if err != nil {
		return nil, fmt.Errorf("attaching %s %s: %w", enter, t.name, err)
	}
	r, err := link.Kretprobe(t.name, a.kprobes.Programs[exit], opts)
	if err != nil {
		closeLinks([]link.Link{l})
		return nil, fmt.Errorf("attaching %s %s: %w", exit, t.name, err)
	}
	return []link.Link{l, r}, nil
}

// loadKprobes loads the kprobe programs the targets need: one entry program per skb
// argument position in use, the return program, and skb_clone's pair.
func (a *functionAttacher) loadKprobes() {
	var keep []string
	for _, t := range a.targets {
		if t.sig.err == nil {
			enter, exit := t.programs("kprobe")
			keep = append(keep, enter, exit)
		}
	}
	cs := keepPrograms(a.spec, keep...)
	if err := setConsts(cs, a.consts, nil); err != nil {
		a.kprobeErr = fmt.Errorf("%w: %w", errKprobeLoad, err)
		return
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, a.opts)
	if err != nil {
		a.kprobeErr = fmt.Errorf("%w: %w", errKprobeLoad, err)
		return
	}
	a.kprobes = coll
}

// keepPrograms copies spec with only the named programs.
func keepPrograms(spec *ebpf.CollectionSpec, names ...string) *ebpf.CollectionSpec {
	cs := spec.Copy()
	for p := range cs.Programs {
		if !slices.Contains(names, p) {
			delete(cs.Programs, p)
		}
	}
	return cs
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
