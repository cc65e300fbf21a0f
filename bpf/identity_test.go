package bpf

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// identityCase is one line of testdata/skb_identity.txt.
type identityCase struct {
	name    string
	numbers []string // the harness's input: tracked l3 l4 seq ack flags delivered, event l3 l4 seq ack flags, mode
	verdict string
}

var followModes = map[string]string{"follow": "0", "free": "1", "deliver": "2"}

func readIdentityCases(t *testing.T) []identityCase {
	t.Helper()
	f, err := os.Open("testdata/skb_identity.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []identityCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "|")
		if len(parts) != 4 {
			t.Fatalf("malformed fixture line %q", line)
		}
		tracked, event := strings.Fields(parts[1]), strings.Fields(parts[2])
		if len(tracked) != 6 || len(event) != 6 {
			t.Fatalf("malformed fixture line %q", line)
		}
		mode, ok := followModes[event[5]]
		if !ok {
			t.Fatalf("unknown mode %q in %q", event[5], line)
		}
		cases = append(cases, identityCase{
			name:    strings.TrimSpace(parts[0]),
			numbers: append(append(tracked, event[:5]...), mode),
			verdict: strings.TrimSpace(parts[3]),
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// hostCC is the C compiler for the harness: the Makefile installs clang for the
// probes, and gcc is the Debian default.
func hostCC(t *testing.T) string {
	t.Helper()
	for _, cc := range []string{"clang", "cc", "gcc"} {
		if p, err := exec.LookPath(cc); err == nil {
			return p
		}
	}
	t.Fatal("no C compiler (clang, cc or gcc) to build the same_skb harness: run make deps")
	return ""
}

// The kernel side's same_skb, compiled for the host from the very header the probes
// include, answers every fixture line as it says. spanner's TestIsNewSKBAgreesWithTheKernelFixtures
// checks the Go side against the same lines.
func TestSameSKBInTheProbesAnswersTheSharedFixtures(t *testing.T) {
	cases := readIdentityCases(t)
	bin := filepath.Join(t.TempDir(), "identity")
	build := exec.Command(hostCC(t), "-O2", "-Wall", "-Werror", "-Iheaders", "-o", bin, "testdata/identity_harness.c")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the harness: %v\n%s", err, out)
	}
	var in bytes.Buffer
	for _, c := range cases {
		fmt.Fprintln(&in, strings.Join(c.numbers, " "))
	}
	run := exec.Command(bin)
	run.Stdin = &in
	out, err := run.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	if len(got) != len(cases) {
		t.Fatalf("harness answered %d lines of %d", len(got), len(cases))
	}
	for i, c := range cases {
		if got[i] != c.verdict {
			t.Errorf("%s: same_skb says %s, the fixture %s", c.name, got[i], c.verdict)
		}
	}
}
