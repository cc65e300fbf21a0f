//go:build amd64

package collector

import (
	"context"
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

// functionsResult is what attachFunctions made and found; the caller owns (and on
// failure releases) the links and closers even when err is set.
type functionsResult struct {
	links     []link.Link
	closers   []func() error
	attached  []Attached
	skipped   []Skipped
	noBackend []Unavailable // when no backend runs here: each one, and why
	functions int           // configured functions attached (skb_clone, nft_do_chain not counted)
	err       error
}

// attachFunctions attaches every configured function and skb_clone with the first
// backend that works, sharing the tracepoint family's filter and maps: fentry loads
// its programs once per function (a trampoline program is bound to its function), the
// kprobe programs are loaded once and attached to every function with a cookie naming
// it. Every function that cannot be attached is skipped with one reason; none is
// fatal. It runs beside attachTracepoints, so it leaves the Collector alone.
func (c *Collector) attachFunctions(ctx context.Context, cache *btf.Cache, tpMaps map[string]*ebpf.Map, kb kernelBTF, functions []probe, consts probeConsts) (r functionsResult) {
	backends := c.backend.tries()
	if len(backends) == 0 {
		return r
	}
	spec, err := bpf.LoadFunctions()
	if err != nil {
		r.err = fmt.Errorf("loading embedded function probes: %w", err)
		return r
	}
	calls, err := ebpf.NewMap(spec.Maps[bpf.FunctionsMapCalls])
	if err != nil {
		r.err = fmt.Errorf("creating the function call map: %w", err)
		return r
	}
	r.closers = append(r.closers, calls.Close)
	// The two families name the maps they share alike (skb.h declares them).
	shared := maps.Clone(tpMaps)
	shared[bpf.FunctionsMapCalls] = calls
	// A replacement must match its spec, sizes included: ring, track and pending
	// sizes come from the configuration.
	for name, m := range shared {
		spec.Maps[name].MaxEntries = m.MaxEntries()
	}
	targets := append(slices.Clone(functions), cloneProbe(kb.types), nftProbe(c.nftUnusable))
	// Every fentry load copies the spec: it keeps only what some target may load.
	var used []string
	for _, t := range targets {
		if t.unusable != nil {
			continue
		}
		for _, b := range backends {
			p := t.programsFor(b)
			used = append(used, p.enter, p.exit)
		}
	}
	a := &functionAttacher{log: c.log, spec: keepPrograms(spec, used...), opts: kb.collectionOptions(cache, shared),
		consts: consts, backends: backends, targets: targets, unavailable: map[Backend]string{}, tracefs: c.summary.Tracefs}
	// A backend the kernel lacks fails for every function alike: say it once.
	if _, err := os.Stat(kprobePMU); err != nil {
		a.unavailable[BackendKprobe] = "kernel has no kprobes (CONFIG_KPROBES)"
	}
	results := a.attachAll(ctx)
	if a.kprobes != nil {
		r.closers = append(r.closers, func() error { a.kprobes.Close(); return nil })
	}

	var notTraced []string // functions skipped only because no backend exists here
	for i, res := range results {
		t := &targets[i]
		switch {
		case res.backend != nil:
			r.links = append(r.links, res.links...)
			if res.close != nil {
				r.closers = append(r.closers, res.close)
			}
			r.attached = append(r.attached, Attached{t.name(), viaOf(*res.backend, t.fentry.enter == "")})
			if t.id >= probeFuncBase {
				r.functions++
			}
		case res.noBackend:
			notTraced = append(notTraced, t.name())
		default:
			r.skipped = append(r.skipped, Skipped{t.name(), res.reason})
			c.log.Warn("function not traced", "function", t.name(), "reason", res.reason)
		}
	}
	if len(notTraced) > 0 {
		// Said once, in the start-up summary, rather than once per function.
		for _, b := range backends {
			r.noBackend = append(r.noBackend, Unavailable{b.String(), a.unavailable[b]})
		}
		for _, name := range notTraced {
			r.skipped = append(r.skipped, Skipped{name, "no function backend on this kernel"})
		}
	}
	if err := ctx.Err(); err != nil {
		r.err = fmt.Errorf("attaching functions: %w", err)
	}
	return r
}

// attachAll attaches every target. Each fentry function is its own load (CO-RE
// relocation and verification of its programs), so functions are attached in
// parallel; the first alone, so a backend the kernel lacks is found once rather than
// by every worker. Once ctx ends, the targets not yet begun are left unattached.
func (a *functionAttacher) attachAll(ctx context.Context) []functionResult {
	results := make([]functionResult, len(a.targets))
	first := slices.IndexFunc(a.targets, func(t probe) bool { return t.unusable == nil })
	if first >= 0 {
		results[first] = a.attach(a.targets[first])
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for j := range a.targets {
		if j == first {
			continue
		}
		if ctx.Err() != nil {
			results[j] = functionResult{reason: "not attached: pktspan was stopping"}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[j] = a.attach(a.targets[j])
		}()
	}
	wg.Wait()
	return results
}

// functionAttacher attaches functions, from several goroutines at once.
type functionAttacher struct {
	log      *slog.Logger
	spec     *ebpf.CollectionSpec
	opts     ebpf.CollectionOptions
	consts   probeConsts
	backends []Backend
	targets  []probe

	kprobeOnce sync.Once
	kprobes    *ebpf.Collection // the kprobe programs, loaded by the first function needing them
	kprobeErr  error

	mu          sync.Mutex
	unavailable map[Backend]string // why the kernel cannot run a backend

	tracefs string // where tracefs is mounted, to look further into a refusal; "" if not
}

// functionResult is what became of one function: attached with backend, or why not.
type functionResult struct {
	backend   *Backend // nil: not attached
	links     []link.Link
	close     func() error // frees the function's own programs, if it has any
	noBackend bool         // every backend is one the kernel lacks
	reason    string
}

func (a *functionAttacher) attach(t probe) functionResult {
	if t.unusable != nil {
		return functionResult{reason: t.unusable.Error()}
	}
	var reasons []string
	for _, backend := range a.backends {
		a.mu.Lock()
		why, lacks := a.unavailable[backend]
		a.mu.Unlock()
		if lacks {
			reasons = append(reasons, backend.String()+": "+why)
			continue
		}
		start := time.Now()
		var links []link.Link
		var closer func() error
		var err error
		if backend == BackendFentry {
			links, closer, err = attachFentry(a.spec, a.opts, a.consts, t)
		} else {
			links, err = a.attachKprobe(t)
		}
		a.log.Debug("attaching a function", "function", t.name(), "backend", backend, "took", time.Since(start), "error", err)
		if err == nil {
			return functionResult{backend: &backend, links: links, close: closer}
		}
		if kernelLacks(err) || errors.Is(err, errKprobeLoad) {
			why := whyUnavailable(backend, err, a.tracefs)
			a.mu.Lock()
			a.unavailable[backend] = why
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

func allUnavailable(backends []Backend, unavailable map[Backend]string) bool {
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

// whyUnavailable says why the kernel cannot run backend, from the error of its first
// load or attach. EPERM gets words of its own: cilium/ebpf's hint at the locked-memory
// limit would mislead, as pktspan lifted that limit, holds the privileges tracing needs
// (checked at start) and loaded its tracepoint programs (or it would not be running).
func whyUnavailable(backend Backend, err error, tracefs string) string {
	if errors.Is(err, unix.EPERM) {
		why := fmt.Sprintf("the kernel refuses %s programs: it answers EPERM although the tracepoint programs load with the same privileges and memory limit, so a policy of this kernel forbids them", backend)
		return why + ftraceRefusal(tracefs)
	}
	// The kernel's error, without the step that met it.
	cause := errors.Unwrap(err)
	if cause == nil {
		cause = err
	}
	return fmt.Sprintf("this kernel cannot attach %s programs (%v)", backend, cause)
}

// ftraceRefusal adds what tracefs shows of ftrace's function hooks, which fentry
// trampolines attach through: when the kernel refuses to list them as well, it forbids
// hooking its functions at run time altogether.
func ftraceRefusal(tracefs string) string {
	if tracefs == "" {
		return ""
	}
	f, err := os.Open(tracefs + "/available_filter_functions")
	if err == nil {
		f.Close()
		return ""
	}
	if errors.Is(err, os.ErrPermission) {
		return "; it refuses its ftrace function hooks too (" + err.Error() + "): hooking kernel functions at run time is disabled"
	}
	return ""
}

// viaOf names how a function is traced, for the summary; exitOnly: with no fentry
// program (skb_clone, nft_do_chain: their fexit sees the arguments).
func viaOf(backend Backend, exitOnly bool) string {
	switch {
	case backend == BackendFentry && exitOnly:
		return "fexit"
	case backend == BackendFentry:
		return "fentry/fexit"
	}
	return "kprobe/kretprobe"
}

// attachFentry loads the fentry/fexit programs for one target and attaches them, or
// leaves nothing behind.
func attachFentry(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, consts probeConsts, t probe) ([]link.Link, func() error, error) {
	enter, exit := t.fentry.enter, t.fentry.exit
	cs := keepPrograms(spec, enter, exit)
	for _, p := range cs.Programs {
		p.AttachTo = t.target
	}
	if err := setConsts(cs, consts, map[string]any{
		bpf.FunctionsVarProbeId:  t.id,
		bpf.FunctionsVarIsNfHook: boolByte(t.stage.NFHook),
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
			return nil, nil, fmt.Errorf("attaching %s %s: %w", p, t.target, err)
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
func (a *functionAttacher) attachKprobe(t probe) ([]link.Link, error) {
	a.kprobeOnce.Do(a.loadKprobes)
	if a.kprobeErr != nil {
		return nil, a.kprobeErr
	}
	enter, exit := t.kprobe.enter, t.kprobe.exit
	opts := &link.KprobeOptions{Cookie: t.cookie()}
	l, err := link.Kprobe(t.target, a.kprobes.Programs[enter], opts)
	if err != nil {
		return nil, fmt.Errorf("attaching %s %s: %w", enter, t.target, err)
	}
	r, err := link.Kretprobe(t.target, a.kprobes.Programs[exit], opts)
	if err != nil {
		closeLinks([]link.Link{l})
		return nil, fmt.Errorf("attaching %s %s: %w", exit, t.target, err)
	}
	return []link.Link{l, r}, nil
}

// loadKprobes loads the kprobe programs the targets need: one entry program per skb
// argument position in use, the return program, and skb_clone's pair.
func (a *functionAttacher) loadKprobes() {
	var keep []string
	for _, t := range a.targets {
		if t.unusable == nil {
			keep = append(keep, t.kprobe.enter, t.kprobe.exit)
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
