package collector

import (
	"errors"
	"strings"
	"testing"

	"github.com/pktspan/pktspan/bpf"
	"github.com/pktspan/pktspan/config"
)

// Every probe that takes a first look at an skb calls the placeholders: after
// injection each holds the expression's program, whole.
func TestExpressionReachesEveryProbeThatLooksAtPackets(t *testing.T) {
	f, err := CompileExpression("tcp port 443 and not host 198.18.0.9")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := bpf.LoadTracepoints()
	if err != nil {
		t.Fatal(err)
	}
	if err := injectExpression(spec, f); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tp_btf_net_dev_queue", "tp_btf_netif_receive_skb", "raw_tp_kfree_skb", "tp_btf_skb_copy_datagram_iovec"} {
		insns := spec.Programs[name].Instructions
		for fn, body := range map[string]int{pcapEthernetFunc: len(f.Ethernet), pcapRawIPFunc: len(f.RawIP)} {
			start := -1
			for i, ins := range insns {
				if ins.Symbol() == fn {
					start = i
				}
			}
			if start < 0 {
				t.Errorf("%s does not call %s", name, fn)
				continue
			}
			end := start + 1
			for end < len(insns) && insns[end].Symbol() == "" {
				end++
			}
			if end-start != body {
				t.Errorf("%s: %s has %d instructions, want the program's %d", name, fn, end-start, body)
			}
		}
	}
}

func TestBadExpressionsAreConfigErrors(t *testing.T) {
	var cerr *config.Error
	if _, err := CompileExpression("port http-nonexistent"); !errors.As(err, &cerr) || !strings.Contains(err.Error(), "is refused by libpcap") {
		t.Errorf("CompileExpression() = %v, want a config error quoting libpcap", err)
	}
}
