package kernelmatrix

import (
	"testing"
	"time"
)

// A pktspan log as the scenario keeps it: the summary's block of lines, then text slog.
const sampleLog = `kernel 6.12.117+deb12-cloud-amd64, BTF from /sys/kernel/btf/vmlinux, 105 drop reasons
conntrack: from BTF
attached 3 probes in 860.4ms:
  skb:kfree_skb                  tp_btf
  ip_rcv_core                    fentry/fexit
  skb_clone                      fexit
  udpv6_rcv                      skipped: not in BTF
filter: none (every IP packet)
time=2026-11-22T11:22:18.902Z level=INFO msg=stats component=pktspan events_read=0 detach=0s
time=2026-11-22T11:22:31.782Z level=INFO msg="final stats" component=pktspan events_read=12 detach=2.270397356s
`

func TestReadTimingFindsAttachAndDetachInPktspansLog(t *testing.T) {
	got, err := ReadTiming(sampleLog)
	if err != nil {
		t.Fatal(err)
	}
	want := Timing{Probes: 3, Skipped: 1, Attach: 860400 * time.Microsecond, Detach: 2270397356 * time.Nanosecond}
	if got != want {
		t.Errorf("ReadTiming = %+v, want %+v", got, want)
	}
	if !AttachedVia(sampleLog, "ip_rcv_core", "fentry/fexit") || AttachedVia(sampleLog, "udpv6_rcv", "fentry/fexit") {
		t.Error("AttachedVia does not read the summary's lines")
	}
}

func TestReadTimingFailsOnALogWithoutThem(t *testing.T) {
	for name, log := range map[string]string{
		"no summary":     `level=INFO msg="final stats" detach=1s`,
		"no final stats": "kernel 6.18, BTF from /sys/kernel/btf/vmlinux, 1 drop reasons\nattached 3 probes in 1s:\nfilter: none",
	} {
		if _, err := ReadTiming(log); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
