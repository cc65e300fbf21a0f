package collector

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pktspan/pktspan/bpf"
)

// The Go side asks the generated objects for programs, maps and variables by name, and
// for one entry program per skb argument position; a renamed or missing one would
// otherwise fail only at load time, on a kernel.
func TestProbeTableNamesProgramsTheGeneratedObjectsHave(t *testing.T) {
	tps, err := bpf.LoadTracepoints()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := bpf.LoadFunctions()
	if err != nil {
		t.Fatal(err)
	}
	wantProgram := func(spec *ebpf.CollectionSpec, name string, typ ebpf.ProgramType, attach ebpf.AttachType, target string) {
		t.Helper()
		p := spec.Programs[name]
		if p == nil {
			t.Errorf("program %s is not in the generated objects", name)
			return
		}
		if p.Type != typ || p.AttachType != attach {
			t.Errorf("program %s is %v/%v, want %v/%v", name, p.Type, p.AttachType, typ, attach)
		}
		if target != "" && p.AttachTo != target {
			t.Errorf("program %s attaches to %q, the probe table says %q", name, p.AttachTo, target)
		}
	}

	ids := map[uint16]string{}
	for _, p := range fixedProbes {
		if other, dup := ids[p.id]; dup {
			t.Errorf("probes %s and %s share id %d", other, p.name(), p.id)
		}
		ids[p.id] = p.name()
		if p.id >= probeFuncBase {
			t.Errorf("fixed probe %s has id %d, in the functions' range from %d", p.name(), p.id, probeFuncBase)
		}
		switch p.family {
		case familyTracepoint:
			wantProgram(tps, p.tpBTF, ebpf.Tracing, ebpf.AttachTraceRawTp, p.target)
			wantProgram(tps, p.rawTP, ebpf.RawTracepoint, ebpf.AttachNone, p.target)
		case familyFunction:
			wantProgram(fns, p.fentry.exit, ebpf.Tracing, ebpf.AttachTraceFExit, "")
			wantProgram(fns, p.kprobe.enter, ebpf.Kprobe, ebpf.AttachNone, "")
			wantProgram(fns, p.kprobe.exit, ebpf.Kprobe, ebpf.AttachNone, "")
		}
	}

	for arg := 0; arg <= maxSkbArg; arg++ {
		p := functionProbe(0, "ip_rcv_core", arg, RetPointer)
		wantProgram(fns, p.fentry.enter, ebpf.Tracing, ebpf.AttachTraceFEntry, "")
		wantProgram(fns, p.fentry.exit, ebpf.Tracing, ebpf.AttachTraceFExit, "")
		wantProgram(fns, p.kprobe.enter, ebpf.Kprobe, ebpf.AttachNone, "")
		wantProgram(fns, p.kprobe.exit, ebpf.Kprobe, ebpf.AttachNone, "")
	}
	// No program reads an argument position the Go side never asks for.
	if p := fmt.Sprintf("fentry_skb_%d", maxSkbArg+1); fns.Programs[p] != nil {
		t.Errorf("%s exists but maxSkbArg is %d", p, maxSkbArg)
	}

	for _, name := range sharedMapNames {
		if tps.Maps[name] == nil || fns.Maps[name] == nil {
			t.Errorf("shared map %s is missing from a family", name)
		}
	}
	for _, spec := range []*ebpf.CollectionSpec{tps, fns} {
		for _, v := range []string{bpf.TracepointsVarFilter, bpf.TracepointsVarKcfg} {
			if spec.Variables[v] == nil {
				t.Errorf("variable %s is missing", v)
			}
		}
	}
	for _, v := range []string{bpf.FunctionsVarProbeId, bpf.FunctionsVarIsNfHook} {
		if fns.Variables[v] == nil {
			t.Errorf("function variable %s is missing", v)
		}
	}
}

func TestFunctionProbesTakeIdsAfterTheFixedOnesAndNfHookSlowIsMarked(t *testing.T) {
	probes := resolveFunctionsByName([]string{"ip_rcv_core", nfHookFunction})
	for i, p := range probes {
		if p.id != probeFuncBase+uint16(i) {
			t.Errorf("function %d has id %d, want %d", i, p.id, probeFuncBase+uint16(i))
		}
	}
	if probes[0].stage.NFHook || probes[0].decode != nil {
		t.Error("ip_rcv_core is marked as nf_hook_slow")
	}
	nf := probes[1]
	if !nf.stage.NFHook || nf.decode == nil {
		t.Fatal("nf_hook_slow is not marked: its verdict would not be decoded")
	}
	if got, want := nf.cookie(), uint64(nf.id)|uint64(bpf.TracepointsProbeCookieCOOKIE_NF_HOOK); got != want {
		t.Errorf("nf_hook_slow's cookie is %#x, want %#x", got, want)
	}
	if got := probes[0].cookie(); got != uint64(probes[0].id) {
		t.Errorf("ip_rcv_core's cookie is %#x, want its id %#x", got, probes[0].id)
	}
}

func resolveFunctionsByName(names []string) []probe {
	out := make([]probe, len(names))
	for i, n := range names {
		out[i] = functionProbe(i, n, 0, RetInt32)
	}
	return out
}

func TestBackendsParseFromTheirConfigNames(t *testing.T) {
	for _, name := range []string{"auto", "fentry", "kprobe", "tracepoint"} {
		b, err := ParseBackend(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b.String() != name {
			t.Errorf("ParseBackend(%q).String() = %q", name, b.String())
		}
	}
	if _, err := ParseBackend("uprobe"); err == nil {
		t.Error("uprobe parsed as a backend")
	}
	for b, want := range map[Backend]int{BackendAuto: 2, BackendFentry: 1, BackendKprobe: 1, BackendTracepoint: 0} {
		if got := len(b.tries()); got != want {
			t.Errorf("%s tries %d function backends, want %d", b, got, want)
		}
	}
}
