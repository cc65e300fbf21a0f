package collector

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kallsyms symbolizes kernel addresses from /proc/kallsyms. Modules loaded after start
// (nf_tables when the first nft rule arrives) are picked up: when /proc/modules changes,
// the table is read again, at most once per refreshEvery.
type Kallsyms struct {
	path, modulesPath string
	syms              []ksym
	cache             map[uint64]string
	modules           []byte
	checked           time.Time
}

type ksym struct {
	addr uint64
	name string
}

const (
	maxSymbolCache = 8192
	refreshEvery   = 2 * time.Second
)

// NewKallsyms reads the symbol table at path (normally /proc/kallsyms).
func NewKallsyms(path, modulesPath string) (*Kallsyms, error) {
	k := &Kallsyms{path: path, modulesPath: modulesPath, cache: make(map[uint64]string)}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kallsyms) load() error {
	f, err := os.Open(k.path)
	if err != nil {
		return fmt.Errorf("reading kernel symbols: %w", err)
	}
	defer f.Close()
	syms, err := parseKallsyms(f)
	if err != nil {
		return fmt.Errorf("reading kernel symbols from %s: %w", k.path, err)
	}
	if len(syms) == 0 {
		return fmt.Errorf("reading kernel symbols from %s: no text symbols with addresses (run as root)", k.path)
	}
	k.syms = syms
	clear(k.cache)
	k.modules, _ = os.ReadFile(k.modulesPath)
	k.checked = time.Now()
	return nil
}

func parseKallsyms(r io.Reader) ([]ksym, error) {
	var syms []ksym
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// "ffffffff81000000 T _text" or "ffffffffc0a01000 t nft_do_chain\t[nf_tables]"
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[1] != "t" && f[1] != "T") {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		syms = append(syms, ksym{addr: addr, name: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(syms, func(a, b ksym) int { return cmp.Compare(a.addr, b.addr) })
	return syms, nil
}

// Symbolize returns `symbol+0xoff`, or the hex address when no symbol covers it.
func (k *Kallsyms) Symbolize(addr uint64) string {
	if s, ok := k.cache[addr]; ok {
		return s
	}
	if time.Since(k.checked) > refreshEvery {
		k.checked = time.Now()
		if mods, err := os.ReadFile(k.modulesPath); err == nil && !bytes.Equal(mods, k.modules) {
			_ = k.load() // on failure the old table stays; names are best effort
		}
	}
	s := k.lookup(addr)
	if len(k.cache) >= maxSymbolCache {
		clear(k.cache)
	}
	k.cache[addr] = s
	return s
}

func (k *Kallsyms) lookup(addr uint64) string {
	i, found := slices.BinarySearchFunc(k.syms, addr, func(s ksym, a uint64) int { return cmp.Compare(s.addr, a) })
	if !found {
		i--
	}
	if i < 0 {
		return "0x" + strconv.FormatUint(addr, 16)
	}
	return k.syms[i].name + "+0x" + strconv.FormatUint(addr-k.syms[i].addr, 16)
}

// Text returns the text of the function named name: a return address inside it lies in
// (lo, hi], hi being where the next symbol starts.
func (k *Kallsyms) Text(name string) (lo, hi uint64, ok bool) {
	for i, s := range k.syms {
		if s.name != name {
			continue
		}
		for _, next := range k.syms[i+1:] {
			if next.addr > s.addr {
				return s.addr, next.addr, true
			}
		}
		return 0, 0, false
	}
	return 0, 0, false
}
