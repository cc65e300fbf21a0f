//go:build vmtest

package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// selfTest is what every later VM test relies on: modules from the kernel's own package,
// the host's ip and nft, two namespaces joined by veth, an nft drop rule, BTF, kprobes on
// the functions pktspan traces, and files coming back through $OUT.
const selfTest = `
set -e
ip netns add a
ip netns add b
ip link add va netns a type veth peer name vb netns b
ip -n a addr add 198.18.0.1/30 dev va
ip -n b addr add 198.18.0.2/30 dev vb
ip -n a link set va up
ip -n b link set vb up
ip -n a link set lo up
ip -n b link set lo up
ip netns exec b nft -f - <<'EOF'
table inet pktspan_test {
	chain input {
		type filter hook input priority 0;
		tcp dport 81 counter drop
	}
}
EOF
ip netns exec b nft list ruleset > $OUT/ruleset

uname -r > $OUT/release
ls /sys/kernel/btf > $OUT/btf
cut -d' ' -f1 /sys/kernel/tracing/available_filter_functions > $OUT/functions

# A kprobe that fires proves kprobes work, not only that the option is set.
echo 'p:pktspan_test ip_rcv_core' >> /sys/kernel/tracing/kprobe_events
echo 1 > /sys/kernel/tracing/events/kprobes/pktspan_test/enable
ip netns exec a ping -c 3 -i 0.2 -W 2 198.18.0.2 > $OUT/ping
echo 0 > /sys/kernel/tracing/events/kprobes/pktspan_test/enable
grep -c 'pktspan_test:' /sys/kernel/tracing/trace > $OUT/kprobe_hits

# The rule drops: a listener on port 81 is never reached (busybox nc), the counter moves.
ip netns exec b nc -l -p 81 >/dev/null 2>&1 &
sleep 0.3
if ip netns exec a nc -w 2 198.18.0.2 81 </dev/null; then echo connected > $OUT/port81; else echo dropped > $OUT/port81; fi
ip netns exec b nft list ruleset | grep -o 'packets [0-9]*' | cut -d' ' -f2 > $OUT/drops
echo payload done
`

func TestBootDebianKernels(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the VM tests run as root, like the rest of make test (sudo make test): they share root's kernel cache")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: run make vmtest-deps")
	}
	for _, series := range []string{"6.1", "6.12"} {
		t.Run(series, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			k, err := Ensure(ctx, series)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(k.Release, series+".") {
				t.Fatalf("Ensure(%s) gave kernel %s", series, k.Release)
			}
			for _, opt := range []string{"CONFIG_DEBUG_INFO_BTF", "CONFIG_KPROBES", "CONFIG_BPF_JIT", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"} {
				if k.Config[opt] != "y" {
					t.Errorf("%s: %s=%q, want y", k.Release, opt, k.Config[opt])
				}
			}

			out := t.TempDir()
			res, err := Run(ctx, k, RunOptions{Script: selfTest, OutDir: out, Tools: []string{"ping"}, Timeout: 3 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%s %s): booted in %s, whole run %s, boots that panicked and were tried again: %d", k.Release, k.Package, k.Version,
				res.BootTime.Round(10*time.Millisecond), res.Duration.Round(10*time.Millisecond), res.Reboots)
			if res.ExitCode != 0 || !strings.Contains(res.Output, "payload done") {
				t.Fatalf("payload exited %d:\n%s", res.ExitCode, res.Output)
			}

			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(out, name))
				if err != nil {
					t.Fatalf("output file: %v", err)
				}
				return strings.TrimSpace(string(b))
			}
			if got := read("release"); got != k.Release {
				t.Errorf("VM ran kernel %q, want %q", got, k.Release)
			}
			btf := strings.Fields(read("btf"))
			for _, want := range []string{"vmlinux", "nf_tables", "veth"} {
				if !slices.Contains(btf, want) {
					t.Errorf("/sys/kernel/btf has no %s: %v", want, btf)
				}
			}
			funcs := strings.Fields(read("functions"))
			for _, want := range []string{"ip_rcv_core", "nf_hook_slow", "tcp_v4_rcv", "ip_local_deliver", "__dev_queue_xmit"} {
				if !slices.Contains(funcs, want) {
					t.Errorf("%s is not traceable (available_filter_functions)", want)
				}
			}
			if !strings.Contains(read("ping"), " 3 received") {
				t.Errorf("ping across the veth pair:\n%s", read("ping"))
			}
			if hits := read("kprobe_hits"); hits == "0" {
				t.Errorf("the kprobe on ip_rcv_core never fired")
			} else {
				t.Logf("kprobe on ip_rcv_core fired %s times during the ping", hits)
			}
			if !strings.Contains(read("ruleset"), "tcp dport 81 counter") {
				t.Errorf("nft ruleset in the VM:\n%s", read("ruleset"))
			}
			if got := read("port81"); got != "dropped" {
				t.Errorf("TCP to port 81, behind the drop rule: %s", got)
			}
			if got := read("drops"); got == "0" || got == "" {
				t.Errorf("the nft drop rule counted %q packets", got)
			}
		})
	}
}
