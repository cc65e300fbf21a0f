package collector

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"
)

// The layout of struct nf_conntrack_tuple has not changed since conntrack took IPv6
// (2.6.15): the offsets the probes get must be these, wherever nf_conn's BTF comes from.
func checkTupleLayout(t *testing.T, cfg kernelCfg) {
	t.Helper()
	got := [6]uint16{cfg.CtSrcAddr, cfg.CtSrcPort, cfg.CtL3num, cfg.CtDstAddr, cfg.CtDstPort, cfg.CtProtonum}
	if want := [6]uint16{0, 16, 18, 20, 36, 38}; got != want {
		t.Errorf("tuple offsets (src.u3, src.u.all, src.l3num, dst.u3, dst.u.all, dst.protonum) = %v, want %v", got, want)
	}
}

func TestConntrackLayoutFromThisKernelsBTF(t *testing.T) {
	if _, err := os.Stat(kernelBTFPath); err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	types, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var conn *btf.Struct
	if types.TypeByName("nf_conn", &conn) != nil {
		t.Skip("nf_conn is not in vmlinux BTF here (conntrack is a module)")
	}
	var cfg kernelCfg
	if err := conntrackLayout(types, &cfg); err != nil {
		t.Fatal(err)
	}
	hashes, _, err := fieldOffset(conn, "tuplehash")
	if err != nil {
		t.Fatal(err)
	}
	// tuplehash[0] is { struct hlist_nulls_node hnnode (two pointers); struct nf_conntrack_tuple tuple; }.
	if cfg.CtTuple != hashes+16 {
		t.Errorf("ct_tuple = %d, want nf_conn.tuplehash (%d) + 16", cfg.CtTuple, hashes)
	}
	checkTupleLayout(t, cfg)

	kcfg, summary := newKernelCfg(types, true, kernelBTFPath, nil)
	if kcfg.CtTuple != cfg.CtTuple || !strings.Contains(summary, "original tuples read (struct nf_conn from "+kernelBTFPath) {
		t.Errorf("newKernelCfg: ct_tuple %d, summary %q", kcfg.CtTuple, summary)
	}
}

// Where conntrack is a loaded module (Debian's kernels: the kernel matrix runs this test
// in their VMs), its BTF must load on top of vmlinux's, and struct nf_conn be found: in
// vmlinux's BTF when built-in code declares it (the module's then leaves it out as a
// duplicate), else in the module's.
func TestConntrackLayoutWhereConntrackIsAModule(t *testing.T) {
	if _, err := os.Stat(moduleBTFDir + "/nf_conntrack"); err != nil {
		t.Skipf("nf_conntrack is not a loaded module here: %v", err)
	}
	types, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := moduleTypes(types, "nf_conntrack"); err != nil {
		t.Fatal(err)
	}
	holder, source, err := conntrackTypes(types, true, kernelBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg kernelCfg
	if err := conntrackLayout(holder, &cfg); err != nil {
		t.Fatalf("%s: %v", source, err)
	}
	checkTupleLayout(t, cfg)
	t.Logf("ct_tuple at %d in struct nf_conn (from %s)", cfg.CtTuple, source)
}

// tupleTypes builds the BTF of a kernel whose sk_buff has _nfct (when withNfct) and,
// when withConn, the conntrack types as include/net/netfilter/nf_conntrack_tuple.h
// declares them.
func tupleTypes(t *testing.T, withNfct, withConn bool) *btf.Spec {
	t.Helper()
	u8 := &btf.Int{Name: "u8", Size: 1}
	u16 := &btf.Int{Name: "u16", Size: 2}
	ulong := &btf.Int{Name: "unsigned long", Size: 8}
	u32 := &btf.Int{Name: "u32", Size: 4}
	ptr := &btf.Pointer{Target: &btf.Void{}}
	addr := &btf.Union{Name: "nf_inet_addr", Size: 16, Members: []btf.Member{
		{Name: "all", Type: &btf.Array{Index: u32, Type: u32, Nelems: 4}},
	}}
	proto := &btf.Union{Name: "nf_conntrack_man_proto", Size: 2, Members: []btf.Member{{Name: "all", Type: u16}}}
	man := &btf.Struct{Name: "nf_conntrack_man", Size: 20, Members: []btf.Member{
		{Name: "u3", Type: addr}, {Name: "u", Type: proto, Offset: 16 * 8}, {Name: "l3num", Type: u16, Offset: 18 * 8},
	}}
	dst := &btf.Struct{Size: 20, Members: []btf.Member{
		{Name: "u3", Type: addr},
		{Name: "u", Type: &btf.Union{Size: 2, Members: []btf.Member{{Name: "all", Type: u16}}}, Offset: 16 * 8},
		{Name: "protonum", Type: u8, Offset: 18 * 8},
		{Name: "dir", Type: u8, Offset: 19 * 8},
	}}
	tuple := &btf.Struct{Name: "nf_conntrack_tuple", Size: 40, Members: []btf.Member{
		{Name: "src", Type: man}, {Name: "dst", Type: dst, Offset: 20 * 8},
	}}
	hash := &btf.Struct{Name: "nf_conntrack_tuple_hash", Size: 56, Members: []btf.Member{
		{Name: "hnnode", Type: &btf.Array{Index: u32, Type: ptr, Nelems: 2}}, {Name: "tuple", Type: tuple, Offset: 16 * 8},
	}}
	conn := &btf.Struct{Name: "nf_conn", Size: 200, Members: []btf.Member{
		{Name: "ct_general", Type: ulong},
		// The kernel nests nothing here; an anonymous struct proves the lookup looks through one.
		{Type: &btf.Struct{Size: 112, Members: []btf.Member{{Name: "tuplehash", Type: &btf.Array{Index: u32, Type: hash, Nelems: 2}}}}, Offset: 24 * 8},
	}}
	skbMembers := []btf.Member{{Name: "len", Type: u16}}
	if withNfct {
		skbMembers = append(skbMembers, btf.Member{Name: "_nfct", Type: ulong, Offset: 8 * 8})
	}
	types := []btf.Type{&btf.Struct{Name: "sk_buff", Size: 16, Members: skbMembers}}
	if withConn {
		types = append(types, conn)
	}
	return specOf(t, types...)
}

// specOf is a BTF spec holding types, as a kernel's would be read.
func specOf(t *testing.T, types ...btf.Type) *btf.Spec {
	t.Helper()
	var b btf.Builder
	for _, typ := range types {
		if _, err := b.Add(typ); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestConntrackLayoutLooksThroughAnonymousMembers(t *testing.T) {
	var cfg kernelCfg
	if err := conntrackLayout(tupleTypes(t, true, true), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.CtTuple != 24+16 {
		t.Errorf("ct_tuple = %d, want 40", cfg.CtTuple)
	}
	checkTupleLayout(t, cfg)
}

func TestConntrackNotReadSaysWhy(t *testing.T) {
	frees := []bpf.TracepointsNormalFree{{Reason: 1, Class: uint8(bpf.TracepointsFreeClassFREE_CONSUMED)}}
	cases := []struct {
		name              string
		withNfct, withCon bool
		inKernel          bool
		want              string
	}{
		{"kernel without conntrack", false, false, true, "CONFIG_NF_CONNTRACK"},
		{"--btf file without nf_conn", true, false, false, "struct nf_conn is not in /tmp/vmlinux.btf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, summary := newKernelCfg(tupleTypes(t, c.withNfct, c.withCon), c.inKernel, "/tmp/vmlinux.btf", frees)
			if cfg.CtTuple != 0 || !strings.HasPrefix(summary, "tuples not read: ") || !strings.Contains(summary, c.want) {
				t.Errorf("ct_tuple %d, summary %q; want 0 and a reason containing %q", cfg.CtTuple, summary, c.want)
			}
			if cfg.N_normalFrees != 1 || cfg.NormalFrees[0].Reason != 1 {
				t.Errorf("the normal frees are lost with conntrack: %d", cfg.N_normalFrees)
			}
		})
	}
}
