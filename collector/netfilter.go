package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"
)

// nftDoChain is the nftables function whose return says which table and base chain
// dropped a packet.
const nftDoChain = "nft_do_chain"

// netfilterDrop is the drop reason of a netfilter verdict: only those drops look for
// the nft table and chain that decided them.
const netfilterDrop = "NETFILTER_DROP"

// nftNames is the kernel's struct nft_names: a drop's table and chain.
type nftNames = bpf.TracepointsNftNames

// maxNftNames bounds the decoder's table of interned names; it starts afresh when full.
const maxNftNames = 1024

// nftLayout finds, in nf_tables' BTF (the kernel's own when it is built in, else its
// loaded module's), where the probes read a packet's skb in struct nft_pktinfo, and the
// names of a struct nft_chain and of its struct nft_table.
func nftLayout(kernel *btf.Spec, inKernel bool, kernelSource string, cfg *kernelCfg) (string, error) {
	types, source := kernel, kernelSource
	var chain *btf.Struct
	if kernel.TypeByName("nft_chain", &chain) != nil {
		if !inKernel {
			return "", fmt.Errorf("struct nft_chain is not in %s", kernelSource)
		}
		var err error
		if types, source, err = moduleTypes(kernel, "nf_tables"); err != nil {
			return "", err
		}
	}
	fields := []struct {
		dst        *uint16
		typ, field string
	}{
		{&cfg.NftPktSkb, "nft_pktinfo", "skb"},
		{&cfg.NftChainTable, "nft_chain", "table"},
		{&cfg.NftChainName, "nft_chain", "name"},
		{&cfg.NftTableName, "nft_table", "name"},
	}
	for _, f := range fields {
		var st *btf.Struct
		if err := types.TypeByName(f.typ, &st); err != nil {
			return "", fmt.Errorf("finding struct %s: %w", f.typ, err)
		}
		off, typ, err := fieldOffset(st, f.field)
		if err != nil {
			return "", err
		}
		if _, ok := typ.(*btf.Pointer); !ok || off > 0xffff {
			return "", fmt.Errorf("%s.%s is %v at offset %d, want a pointer", f.typ, f.field, typ, off)
		}
		*f.dst = uint16(off)
	}
	return source, nil
}

// moduleTypes reads the loaded module's BTF, split on top of the running kernel's.
func moduleTypes(kernel *btf.Spec, module string) (*btf.Spec, string, error) {
	path := moduleBTFDir + "/" + module
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("the %s module is not loaded (%s is missing); load it before pktspan starts", module, path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the %s module's BTF: %w", module, err)
	}
	defer f.Close()
	mod, err := btf.LoadSplitSpecFromReader(f, kernel)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return mod, path, nil
}

// nftMap is the kernel's nft_freed map as nftTable uses it (*ebpf.Map).
type nftMap interface {
	Lookup(key, valueOut any) error
	Delete(key any) error
}

// nftTable gives a netfilter drop the nft table and base chain that decided it, which
// nft_do_chain's probes noted and the drop's free moved to the kernel's nft_freed map
// under the free event's skb and time. Each entry is deleted once read; names are
// interned, in a bounded table.
type nftTable struct {
	m     nftMap
	names map[nftNames][2]string
	key   nftFreedKey
	val   nftNames
}

type nftFreedKey = bpf.TracepointsNftFreedKey

func newNftTable(m nftMap) *nftTable {
	return &nftTable{m: m, names: make(map[nftNames][2]string)}
}

// lookup returns the table and chain that dropped skb in the free at kernel time tsNs,
// or "" when no nft chain did.
func (t *nftTable) lookup(skb, tsNs uint64) (table, chain string) {
	t.key = nftFreedKey{Skb: skb, TsNs: tsNs}
	if t.m.Lookup(&t.key, &t.val) != nil {
		return "", ""
	}
	_ = t.m.Delete(&t.key) // gone already only if the LRU evicted it meanwhile
	if n, ok := t.names[t.val]; ok {
		return n[0], n[1]
	}
	if len(t.names) >= maxNftNames {
		clear(t.names)
	}
	n := [2]string{cString(t.val.Table[:]), cString(t.val.Chain[:])}
	t.names[t.val] = n
	return n[0], n[1]
}

// cString is the NUL-terminated string in b.
func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// netfilterSummary says whether drops will name their nft table and chain, and if not,
// why.
func (c *Collector) netfilterSummary(noBackend bool) string {
	const notRead = "the nft table and chain of a drop are not read: "
	switch {
	case c.isAttached(nftDoChain):
		return c.summary.Netfilter
	case c.backend == BackendTracepoint || noBackend:
		return notRead + "they need fentry or kprobes"
	case c.nftUnusable != nil:
		return notRead + c.nftUnusable.Error()
	}
	return notRead + nftDoChain + " could not be traced (see skipped)"
}
