package config

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestEveryKeyHasOneFlag(t *testing.T) {
	flagsOf := make(map[string][]string)
	for name, key := range flagKeys {
		if key == "" {
			continue
		}
		if _, ok := leafByKey[key]; !ok {
			t.Errorf("flag --%s maps to unknown key %s", name, key)
		}
		flagsOf[key] = append(flagsOf[key], name)
	}
	for _, l := range leaves {
		want := 1
		if l.key == expressionKey { // set by the positional arguments
			want = 0
		}
		if n := len(flagsOf[l.key]); n != want {
			t.Errorf("key %s has %d flags %v, want %d", l.key, n, flagsOf[l.key], want)
		}
	}
}

func TestUsageListsEveryFlagWithItsArgumentAndDefault(t *testing.T) {
	fs := NewFlagSet()
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage()
	help := out.String()

	if !strings.HasPrefix(help, "pktspan follows each packet through the Linux kernel") {
		t.Errorf("help does not start with the description:\n%s", help)
	}
	for _, g := range flagGroups {
		for _, f := range g.flags {
			if !strings.Contains(help, "--"+f.name+" ") {
				t.Errorf("help does not list --%s", f.name)
			}
		}
	}
	for _, want := range []string{
		"Examples:",
		"--config FILE ",
		"--otlp-endpoint HOST:PORT ",
		"--filter-netns PATH|INODE ",
		`(default "console")`,
		`(default "pktspan")`,
		`(default "gzip")`,
		`(default "auto")`,
		"(default 8388608)",
		"(default 30s)",
		"(default 1m0s)",
		"(default 16384)",
		"(default [ip_rcv_core,ip_local_deliver,",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(help, "(default [])") {
		t.Error("help shows an empty default")
	}

	// Every flag whose default is not empty shows it on its own line.
	lines := strings.Split(help, "\n")
	for _, g := range flagGroups {
		for _, f := range g.flags {
			fl := fs.Lookup(f.name)
			if fl.DefValue == "" || fl.DefValue == "false" || fl.DefValue == "[]" || fl.DefValue == "0" {
				continue
			}
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "--"+f.name+" ") })
			if i < 0 || !strings.Contains(lines[i], "(default ") || !strings.Contains(lines[i], strings.Trim(fl.DefValue, "[]")) {
				t.Errorf("help does not show the default %s of --%s", fl.DefValue, f.name)
			}
		}
	}
}
