//go:build e2e

package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pktspan/pktspan/bpf"
)

// kernelObjects are the BPF programs, links and maps in the kernel that are pktspan's,
// by id, as the kernel lists them.
type kernelObjects struct {
	programs, links, maps []string // "id name"
}

// ourNames are the object names pktspan's probes use, whole (cilium/ebpf reads a
// program's from its BTF) and as the kernel keeps them (BPF_OBJ_NAME_LEN: 15 characters).
func ourNames(t *testing.T) (programs, maps map[string]bool) {
	t.Helper()
	programs, maps = map[string]bool{}, map[string]bool{}
	trunc := func(s string) string { return s[:min(len(s), 15)] }
	for _, load := range []func() (*ebpf.CollectionSpec, error){bpf.LoadTracepoints, bpf.LoadFunctions} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for name := range spec.Programs {
			programs[name], programs[trunc(name)] = true, true
		}
		for name := range spec.Maps {
			if !strings.HasPrefix(name, ".") {
				maps[name], maps[trunc(name)] = true, true
			}
		}
	}
	return programs, maps
}

// eachID calls f with every id the kernel lists through next, from the first.
func eachID[ID ~uint32](t *testing.T, next func(ID) (ID, error), f func(ID)) {
	t.Helper()
	for id := ID(0); ; {
		n, err := next(id)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		id = n
		f(id)
	}
}

func listOurs(t *testing.T) kernelObjects {
	t.Helper()
	progNames, mapNames := ourNames(t)
	var objs kernelObjects
	ours := map[ebpf.ProgramID]bool{}
	eachID(t, ebpf.ProgramGetNextID, func(id ebpf.ProgramID) {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			return // gone meanwhile
		}
		defer p.Close()
		if info, err := p.Info(); err == nil && progNames[info.Name] {
			ours[id] = true
			objs.programs = append(objs.programs, info.Name)
		}
	})
	eachID(t, ebpf.MapGetNextID, func(id ebpf.MapID) {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return
		}
		defer m.Close()
		if info, err := m.Info(); err == nil && mapNames[info.Name] {
			objs.maps = append(objs.maps, info.Name)
		}
	})
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && ours[info.Program] {
			objs.links = append(objs.links, fmt.Sprint(info.ID))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return objs
}

func (o kernelObjects) empty() bool { return len(o.programs)+len(o.links)+len(o.maps) == 0 }

// eventuallyNone waits for pktspan's objects to leave the kernel: it frees a closed
// program or map after an RCU grace period (tracing programs after an RCU tasks
// trace one, which can take a while), not at close. Objects still held by an open
// file descriptor never leave.
func eventuallyNone(t *testing.T) kernelObjects {
	t.Helper()
	deadline := time.Now().Add(releaseGrace)
	for {
		objs := listOurs(t)
		if objs.empty() || time.Now().After(deadline) {
			return objs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const releaseGrace = 10 * time.Second

func quietCollector(opts ...Option) *Collector {
	return New(append(opts, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))...)
}

// A Start that fails after probes were attached takes them all out of the kernel
// again: no program, link or map of pktspan's is left, as the kernel lists them. The
// tracepoints attach; no configured function can (the only one does not exist), which
// --backend kprobe makes fatal.
func TestStartThatFailsAfterAttachingLeavesNothingInTheKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs: run it as root (make e2e)")
	}
	if before := eventuallyNone(t); !before.empty() {
		t.Fatalf("pktspan's objects are in the kernel before the test (another pktspan running?): %+v", before)
	}

	// The listing sees pktspan's objects while they are there.
	ok := quietCollector(WithBackend(BackendTracepoint))
	if err := ok.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	during := listOurs(t)
	if err := ok.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(during.programs) == 0 || len(during.links) < len(tracepointProbes()) || len(during.maps) == 0 {
		t.Fatalf("a started collector shows %+v in the kernel: the listing does not see its objects", during)
	}
	if after := eventuallyNone(t); !after.empty() {
		t.Fatalf("Shutdown left %+v in the kernel after %v", after, releaseGrace)
	}

	failing := quietCollector(WithBackend(BackendKprobe), WithFunctions([]string{"pktspan_no_such_function"}))
	err := failing.Start(context.Background())
	if err == nil {
		_ = failing.Shutdown(context.Background())
		t.Fatal("Start succeeded without any of its functions attached under --backend kprobe")
	}
	if got := failing.Summary().Attached; len(got) == 0 {
		t.Fatalf("Start failed before attaching anything (%v): the test must fail it after", err)
	}
	if after := eventuallyNone(t); !after.empty() {
		t.Errorf("Start failed (%v) after attaching %d probes and left %+v in the kernel",
			err, len(failing.Summary().Attached), after)
	}
}

// A Start whose context has ended returns its error and leaves nothing behind.
func TestStartWithAnEndedContextFailsAndLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads eBPF programs: run it as root (make e2e)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := quietCollector(WithBackend(BackendTracepoint))
	if err := c.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with an ended context returned %v, want context.Canceled", err)
	}
	if after := eventuallyNone(t); !after.empty() {
		t.Errorf("left %+v in the kernel", after)
	}
	if !slices.Equal(c.Summary().Attached, nil) {
		t.Errorf("attached %v after the context ended", c.Summary().Attached)
	}
}
