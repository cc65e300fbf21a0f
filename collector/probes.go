package collector

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/spanner"
)

// Probe ids of the probes with fixed ids, from enum probe_id in bpf/headers/pktspan.h;
// the function probes take probeFuncBase + their index in the configured functions.
const (
	probeNetifReceiveSKB      = uint16(bpf.TracepointsProbeIdPROBE_NETIF_RECEIVE_SKB)
	probeNetDevQueue          = uint16(bpf.TracepointsProbeIdPROBE_NET_DEV_QUEUE)
	probeNetDevXmit           = uint16(bpf.TracepointsProbeIdPROBE_NET_DEV_XMIT)
	probeKfreeSKB             = uint16(bpf.TracepointsProbeIdPROBE_KFREE_SKB)
	probeConsumeSKB           = uint16(bpf.TracepointsProbeIdPROBE_CONSUME_SKB)
	probeSKBCopyDatagramIovec = uint16(bpf.TracepointsProbeIdPROBE_SKB_COPY_DATAGRAM_IOVEC)
	probeTCPRetransmitSKB     = uint16(bpf.TracepointsProbeIdPROBE_TCP_RETRANSMIT_SKB)
	probeSKBClone             = uint16(bpf.TracepointsProbeIdPROBE_SKB_CLONE)
	probeNftDoChain           = uint16(bpf.TracepointsProbeIdPROBE_NFT_DO_CHAIN)
	probeHTTPEgress           = uint16(bpf.TracepointsProbeIdPROBE_HTTP_EGRESS)
	probeHTTPIngress          = uint16(bpf.TracepointsProbeIdPROBE_HTTP_INGRESS)
	probeFuncBase             = uint16(bpf.TracepointsProbeIdPROBE_FUNC_BASE)
)

// family is how a probe reaches the kernel.
type family uint8

const (
	// familyTracepoint: a tp_btf program, or its raw_tp twin where the kernel's BTF
	// cannot be attached to (--btf FILE). Always available; instants only.
	familyTracepoint family = iota
	// familyFunction: entry and exit programs on a kernel function, through the
	// function backend (fentry/fexit or kprobe/kretprobe).
	familyFunction
	// familyCgroup: a cgroup-skb program on the cgroup v2 root, attached under
	// --correlate http only.
	familyCgroup
)

// programs are a function probe's entry and exit programs under one backend; "" where
// it needs none (skb_clone's fexit sees its argument, so it has no entry program).
type programs struct{ enter, exit string }

// probe is one hook pktspan traces. The table below, with the function probes built
// from the configuration, drives attaching (family, target, programs), decoding (id,
// decode) and naming (stage): adding a tracepoint means a program in
// bpf/tracepoints.c, its id in enum probe_id, and a row here.
type probe struct {
	id     uint16
	family family
	// target is what the kernel attaches to: the tracepoint's event or the function.
	target string
	// Tracepoint programs, in bpf.Tracepoints.
	tpBTF, rawTP string
	// Function programs by backend, in bpf.Functions.
	fentry, kprobe programs
	// The cgroup-skb program, in bpf.Correlate, and where it attaches.
	cgroupProg   string
	cgroupAttach ebpf.AttachType
	// stage names the probe in spans and on the console, and says what it means for
	// an skb's life (a free, a delivery, a clone).
	stage spanner.Stage
	// ret is how a function's exit reports its return value.
	ret RetKind
	// decode reads what this probe's records carry beyond the fields every record has.
	decode func(d *Decoder, raw []byte, ev *spanner.Event)
	// needed: without it packet spans can only end by timeout.
	needed bool
	// unusable says why a function cannot be traced on this kernel (from its BTF).
	unusable error
}

// name is how users know the probe: the tracepoint as subsystem:event, the function.
func (p *probe) name() string { return p.stage.Name }

// fixedProbes are the probes whose ids enum probe_id fixes: the tracepoints, attached
// with every backend, and skb_clone, attached whenever a function backend runs so
// that the clone of a followed skb (a packet tap's copy, a bridge's flood) is followed.
var fixedProbes = []probe{
	tracepointProbe(probeNetifReceiveSKB, "net", "netif_receive_skb",
		bpf.TracepointsProgTpBtfNetifReceiveSkb, bpf.TracepointsProgRawTpNetifReceiveSkb, spanner.Stage{Pass: spanner.PassReceive}),
	tracepointProbe(probeNetDevQueue, "net", "net_dev_queue",
		bpf.TracepointsProgTpBtfNetDevQueue, bpf.TracepointsProgRawTpNetDevQueue, spanner.Stage{Pass: spanner.PassQueue}),
	tracepointProbe(probeNetDevXmit, "net", "net_dev_xmit",
		bpf.TracepointsProgTpBtfNetDevXmit, bpf.TracepointsProgRawTpNetDevXmit, spanner.Stage{}),
	withDecode(tracepointProbe(probeKfreeSKB, "skb", "kfree_skb",
		bpf.TracepointsProgTpBtfKfreeSkb, bpf.TracepointsProgRawTpKfreeSkb, spanner.Stage{Free: true}), (*Decoder).decodeFree),
	tracepointProbe(probeConsumeSKB, "skb", "consume_skb",
		bpf.TracepointsProgTpBtfConsumeSkb, bpf.TracepointsProgRawTpConsumeSkb, spanner.Stage{Free: true}),
	tracepointProbe(probeSKBCopyDatagramIovec, "skb", "skb_copy_datagram_iovec",
		bpf.TracepointsProgTpBtfSkbCopyDatagramIovec, bpf.TracepointsProgRawTpSkbCopyDatagramIovec, spanner.Stage{Deliver: true}),
	// Its event names a segment sent again, not an skb to follow: the spanner puts it on
	// the packet span of the copy that went out.
	tracepointProbe(probeTCPRetransmitSKB, "tcp", "tcp_retransmit_skb",
		bpf.TracepointsProgTpBtfTcpRetransmitSkb, bpf.TracepointsProgRawTpTcpRetransmitSkb, spanner.Stage{Retransmit: true}),
	{
		id: probeSKBClone, family: familyFunction, target: cloneFunction,
		fentry: programs{exit: bpf.FunctionsProgFexitSkbClone},
		kprobe: programs{bpf.FunctionsProgKprobeSkbClone, bpf.FunctionsProgKretprobeSkbClone},
		stage:  spanner.Stage{Name: cloneFunction, Clone: true},
		ret:    RetPointer,
	},
	// nft_do_chain sends no event: it leaves the table and chain of an skb it drops in
	// nft_drops, for the decoder to add to the skb's free.
	{
		id: probeNftDoChain, family: familyFunction, target: nftDoChain,
		fentry: programs{bpf.FunctionsProgFentryNftDoChain, bpf.FunctionsProgFexitNftDoChain},
		kprobe: programs{bpf.FunctionsProgKprobeNftDoChain, bpf.FunctionsProgKretprobeNftDoChain},
		stage:  spanner.Stage{Name: nftDoChain},
	},
	// --correlate http: segments that start an HTTP/1.x request, as a socket sends them
	// and as one receives them. Their events carry the requests' traceparents, not skbs.
	{
		id: probeHTTPEgress, family: familyCgroup, target: "egress",
		cgroupProg: bpf.CorrelateProgRequestEgress, cgroupAttach: ebpf.AttachCGroupInetEgress,
		stage: spanner.Stage{Name: "cgroup:http_egress", Request: true}, decode: (*Decoder).decodeRequest,
	},
	{
		id: probeHTTPIngress, family: familyCgroup, target: "ingress",
		cgroupProg: bpf.CorrelateProgRequestIngress, cgroupAttach: ebpf.AttachCGroupInetIngress,
		stage: spanner.Stage{Name: "cgroup:http_ingress", Request: true, Received: true}, decode: (*Decoder).decodeRequest,
	},
}

// cloneFunction is the kernel function whose return is a clone's first sighting.
const cloneFunction = "skb_clone"

// nfHookFunction is the function whose hook state and verdict pktspan reports.
const nfHookFunction = "nf_hook_slow"

func tracepointProbe(id uint16, subsystem, event, tpBTF, rawTP string, stage spanner.Stage) probe {
	stage.Name = subsystem + ":" + event
	return probe{id: id, family: familyTracepoint, target: event, tpBTF: tpBTF, rawTP: rawTP, stage: stage,
		needed: stage.Free}
}

func withDecode(p probe, decode func(d *Decoder, raw []byte, ev *spanner.Event)) probe {
	p.decode = decode
	return p
}

// nftProbe is nft_do_chain's row; unusable says why it cannot be traced, if so.
func nftProbe(unusable error) probe {
	p := fixedProbes[slices.IndexFunc(fixedProbes, func(p probe) bool { return p.id == probeNftDoChain })]
	p.unusable = unusable
	return p
}

// tracepointProbes returns the rows of the tracepoint family.
func tracepointProbes() []probe {
	var out []probe
	for _, p := range fixedProbes {
		if p.family == familyTracepoint {
			out = append(out, p)
		}
	}
	return out
}

// functionProbe is the probe of the configured function at index i, whose skb is
// argument skbArg (0-based) and whose return value is of kind ret. The programs
// for that argument position serve it; the kprobe exit program serves every function.
func functionProbe(i int, name string, skbArg int, ret RetKind) probe {
	p := probe{
		id: probeFuncBase + uint16(i), family: familyFunction, target: name,
		fentry: programs{fmt.Sprintf("fentry_skb_%d", skbArg), fmt.Sprintf("fexit_skb_%d", skbArg)},
		kprobe: programs{fmt.Sprintf("kprobe_skb_%d", skbArg), bpf.FunctionsProgKretprobeSkb},
		stage:  spanner.Stage{Name: name, Void: ret == RetVoid, Pointer: ret == RetPointer, NFHook: name == nfHookFunction},
		ret:    ret,
	}
	if p.stage.NFHook {
		p.decode = (*Decoder).decodeVerdict
	}
	return p
}

// programs returns p's programs under a function backend.
func (p *probe) programsFor(b Backend) programs {
	if b == BackendFentry {
		return p.fentry
	}
	return p.kprobe
}

// cookie is p's kprobe attach cookie (enum probe_cookie): the probe id, and whether
// the programs must read nf_hook_slow's hook state.
func (p *probe) cookie() uint64 {
	c := uint64(p.id) & uint64(bpf.TracepointsProbeCookieCOOKIE_PROBE_MASK)
	if p.stage.NFHook {
		c |= uint64(bpf.TracepointsProbeCookieCOOKIE_NF_HOOK)
	}
	return c
}
