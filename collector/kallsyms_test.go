package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKallsymsNamesAddressesAsSymbolPlusOffset(t *testing.T) {
	k, err := NewKallsyms("testdata/kallsyms", "testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[uint64]string{
		0xffffffff81a00457: "sk_stream_kill_queues+0x57",
		0xffffffff81a00000: "kfree_skb_reason+0x0",
		0xffffffffc0a011f3: "nft_do_chain+0x1f3",            // module symbol, [nf_tables] dropped
		0xffffffff81b00010: "sk_stream_kill_queues+0xffc10", // data symbols are skipped
		0x1000:             "0x1000",                        // below every symbol
	}
	for addr, want := range cases {
		if got := k.Symbolize(addr); got != want {
			t.Errorf("Symbolize(%#x) = %q, want %q", addr, got, want)
		}
	}
}

func TestKallsymsRereadsWhenModulesChange(t *testing.T) {
	dir := t.TempDir()
	syms, mods := filepath.Join(dir, "kallsyms"), filepath.Join(dir, "modules")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(syms, "ffffffff81000000 T _text\n")
	write(mods, "")
	k, err := NewKallsyms(syms, mods)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Symbolize(0xffffffffc0a01010); got != "_text+0x3fa01010" {
		t.Fatalf("before the module loads: %q", got)
	}
	write(syms, "ffffffff81000000 T _text\nffffffffc0a01000 t nft_do_chain\t[nf_tables]\n")
	write(mods, "nf_tables 1 0 - Live 0x0\n")
	k.checked = k.checked.Add(-2 * refreshEvery)
	if got := k.Symbolize(0xffffffffc0a01011); got != "nft_do_chain+0x11" {
		t.Errorf("after the module loads: %q, want nft_do_chain+0x11", got)
	}
}

func TestKallsymsWithoutAddressesSaysRunAsRoot(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kallsyms")
	_ = os.WriteFile(p, []byte("0000000000000000 T _text\n"), 0o644)
	if _, err := NewKallsyms(p, ""); err == nil || !strings.Contains(err.Error(), "run as root") {
		t.Errorf("a kallsyms with zeroed addresses: error %v, want one saying to run as root", err)
	}
}

func TestDropReasonsStripPrefixesAndNameUnknownValues(t *testing.T) {
	r := dropReasonsFrom(map[uint32]string{
		0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 3: "SKB_DROP_REASON_NO_SOCKET",
		0x10000: "SKB_DROP_REASON_SUBSYS_MASK", // subsystem values above 16 bits are not indexed
	})
	cases := []struct {
		v    uint32
		name string
	}{
		{0, "NOT_DROPPED_YET"},
		{1, "CONSUMED"},
		{3, "NO_SOCKET"},
		{2, "REASON_2"},
		{0x10001, "REASON_65537"},
	}
	for _, c := range cases {
		if name := r.Name(c.v); name != c.name {
			t.Errorf("Name(%d) = %q, want %q", c.v, name, c.name)
		}
		if v, ok := r.Value(c.name); ok != !strings.HasPrefix(c.name, "REASON_") || (ok && v != c.v) {
			t.Errorf("Value(%q) = %d, %v; want %d", c.name, v, ok, c.v)
		}
	}
}
