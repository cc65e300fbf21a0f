package collector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/spanner"
)

// nf_tables' layout is found where this kernel keeps it: built in (this host) or a
// loaded module (Debian's kernels, in the kernel matrix's VMs).
func TestNftLayoutFindsTheSkbAndTheNamesWhereverNfTablesIs(t *testing.T) {
	types, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF here: %v", err)
	}
	var chain *btf.Struct
	if types.TypeByName("nft_chain", &chain) != nil {
		if _, err := os.Stat(moduleBTFDir + "/nf_tables"); err != nil {
			t.Skipf("nf_tables is neither built in nor a loaded module here: %v", err)
		}
	}
	var cfg kernelCfg
	source, err := nftLayout(types, true, kernelBTFPath, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The skb is nft_pktinfo's first field; the others follow a list head at least.
	if cfg.NftPktSkb != 0 || cfg.NftChainTable == 0 || cfg.NftChainName == 0 || cfg.NftTableName == 0 {
		t.Errorf("offsets %+v from %s", cfg, source)
	}
	t.Logf("nft_pktinfo.skb %d, nft_chain.table %d, nft_chain.name %d, nft_table.name %d (from %s)",
		cfg.NftPktSkb, cfg.NftChainTable, cfg.NftChainName, cfg.NftTableName, source)
}

type fakeNftFreed map[nftFreedKey]nftNames

func (f fakeNftFreed) Lookup(key, valueOut any) error {
	v, ok := f[*key.(*nftFreedKey)]
	if !ok {
		return errors.New("key does not exist")
	}
	*valueOut.(*nftNames) = v
	return nil
}

func (f fakeNftFreed) Delete(key any) error {
	delete(f, *key.(*nftFreedKey))
	return nil
}

func names(table, chain string) (n nftNames) {
	for i := range len(table) {
		n.Table[i] = int8(table[i])
	}
	for i := range len(chain) {
		n.Chain[i] = int8(chain[i])
	}
	return n
}

func decodeRaw(t *testing.T, d *Decoder, ev *bpf.TracepointsEvent) spanner.Event {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, ev); err != nil {
		t.Fatal(err)
	}
	var out spanner.Event
	if err := d.Decode(buf.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeGivesANetfilterDropTheNftTableAndChainOnceAndOnlyToItsOwnFree(t *testing.T) {
	d := testDecoder(t)
	m := fakeNftFreed{
		{Skb: 0xffff1, TsNs: 100}: names("pktspan_lab", "input"),
		{Skb: 0xffff2, TsNs: 200}: names("t", "c"),
	}
	d.nft = newNftTable(m)
	drop := &bpf.TracepointsEvent{TsNs: 100, Skb: 0xffff1, Probe: probeKfreeSKB, DropReason: 12, StackId: -1}

	if got := decodeRaw(t, d, drop).NFT; got != (spanner.NFT{Table: "pktspan_lab", Chain: "input"}) {
		t.Errorf("NFT = %+v, want pktspan_lab/input", got)
	}
	if _, ok := m[nftFreedKey{Skb: 0xffff1, TsNs: 100}]; ok {
		t.Error("the names were left in the kernel's map")
	}
	if got := decodeRaw(t, d, drop).NFT; got != (spanner.NFT{}) {
		t.Errorf("the same free read again got %+v", got)
	}
	// A later drop of another skb at the address of one whose names wait: not its names.
	later := &bpf.TracepointsEvent{TsNs: 300, Skb: 0xffff2, Probe: probeKfreeSKB, DropReason: 12, StackId: -1}
	if got := decodeRaw(t, d, later).NFT; got != (spanner.NFT{}) {
		t.Errorf("a later free at the address got %+v", got)
	}
	free := &bpf.TracepointsEvent{TsNs: 200, Skb: 0xffff2, Probe: probeKfreeSKB, DropReason: 1, StackId: -1}
	if got := decodeRaw(t, d, free).NFT; got != (spanner.NFT{}) {
		t.Errorf("a normal free got %+v", got)
	}
}
