// Command matrix-scenario runs inside a test VM (see internal/vm): it builds the end-to-end
// tests' topology (netns.Lab: two namespaces, a TCP server, an nft drop, a closed UDP
// port) and the NAT lab (netns.NATLab: a router translating both ways), opens a packet
// tap on the client's veth, runs pktspan with one function backend writing JSON lines,
// makes the traffic, stops pktspan as Ctrl-C would, and leaves everything in an output
// directory for the host to check. With --cost it measures instead what the backend's
// programs cost per call (cost.go).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

func main() {
	bin := flag.String("pktspan", "/bin/pktspan", "pktspan binary")
	backend := flag.String("backend", "fentry", "function backend to run pktspan with")
	dropsOnly := flag.Bool("drops-only", false, "run pktspan with --drops-only")
	vlan := flag.Bool("vlan", false, "instead, ping over two VLANs and untagged, with pktspan following one VLAN")
	survey := flag.Bool("survey", false, "instead, make every kind of healthy traffic and of drop once and print how the kernel freed each one's packets")
	demo := flag.String("correlate", "", "instead, run pktspan with --correlate http over the requests of this demoapp binary (examples/demoapp)")
	cost := flag.Bool("cost", false, "instead, measure the backend's programs per call with the kernel's BPF statistics (cost.json)")
	expr := flag.String("expression", "", "instead, run pktspan with this filter expression over the lab's traffic and pings over its VLANs")
	out := flag.String("out", "/out", "directory for spans.jsonl and pktspan.log")
	flag.Parse()
	if err := run(*bin, *backend, *dropsOnly, *vlan, *survey, *cost, *demo, *expr, *out); err != nil {
		fmt.Fprintln(os.Stderr, "scenario:", err)
		os.Exit(1)
	}
}

// run builds the lab and runs one of the scenarios in it.
func run(bin, backend string, dropsOnly, vlan, survey, cost bool, demo, expr, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// Two pktspan runs attaching every function under emulation take the longest.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lab, err := netns.NewLab(ctx)
	if err != nil {
		return err
	}
	defer lab.Close()
	if vlan {
		return runVLAN(ctx, lab, bin, out)
	}
	if survey {
		return runSurvey(ctx, lab, bin, backend, dropsOnly, out)
	}
	if demo != "" {
		return runCorrelate(ctx, lab, bin, backend, demo, out)
	}
	if cost {
		return runCost(ctx, lab, bin, backend, out)
	}
	if expr != "" {
		return runExpression(ctx, lab, bin, backend, expr, out)
	}
	return runBackend(ctx, lab, bin, backend, dropsOnly, out)
}

// runBackend runs pktspan with one function backend over the lab's traffic, a NAT lab
// request and a packet tap's clones.
func runBackend(ctx context.Context, lab *netns.Lab, bin, backend string, dropsOnly bool, out string) error {
	nat, err := netns.NewNATLab(ctx)
	if err != nil {
		return err
	}
	defer nat.Close()
	// The kernel clones every packet leaving the client's veth for this tap
	// (dev_queue_xmit_nit), and every one arriving, since the tap shares it.
	tap, err := openTap(lab.Client, lab.ClientIf)
	if err != nil {
		return err
	}
	defer tap.Close()

	args := []string{"--backend", backend,
		"--filter-addr", netns.LabServer.Masked().String(), "--filter-addr", netns.NATClient.Masked().String(),
		"--filter-addr", netns.NATServer.Masked().String()}
	if dropsOnly {
		args = append(args, "--drops-only")
	}
	if err := withPktspan(ctx, bin, out, args, func() error {
		return errors.Join(lab.Traffic(ctx), nat.Request(ctx, []byte("through the router")))
	}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "tapped"), fmt.Appendf(nil, "%d\n", tap.read.Load()), 0o644)
}

// runVLAN pings over the lab's two VLANs and its untagged veth, with pktspan
// (tracepoints only: the filter is what is tested) following the first VLAN.
func runVLAN(ctx context.Context, lab *netns.Lab, bin, out string) error {
	if err := lab.AddVLANs(); err != nil {
		return err
	}
	followed, other := netns.LabVLANs[0], netns.LabVLANs[1]
	args := []string{"--backend", "tracepoint", "--filter-vlan", fmt.Sprint(followed.ID)}
	return withPktspan(ctx, bin, out, args, func() error {
		return errors.Join(
			netns.Ping(ctx, lab.Client, followed.Server.Addr()),
			netns.Ping(ctx, lab.Client, other.Server.Addr()),
			netns.Ping(ctx, lab.Client, netns.LabServer.Addr()))
	})
}

// runExpression runs pktspan with one function backend and a filter expression over the
// lab's traffic and a ping over each of its VLANs and its untagged veth: the expression
// is evaluated at the function probes' hooks too, where the skb may have no Ethernet
// header yet.
func runExpression(ctx context.Context, lab *netns.Lab, bin, backend, expr, out string) error {
	if err := lab.AddVLANs(); err != nil {
		return err
	}
	return withPktspan(ctx, bin, out, []string{"--backend", backend, expr}, func() error {
		errs := []error{lab.Traffic(ctx), netns.Ping(ctx, lab.Client, netns.LabServer.Addr())}
		for _, v := range netns.LabVLANs {
			errs = append(errs, netns.Ping(ctx, lab.Client, v.Server.Addr()))
		}
		return errors.Join(errs...)
	})
}

// withPktspan runs pktspan with args writing JSON lines to out/spans.jsonl and its log
// to out/pktspan.log, makes the traffic once every probe is attached, and stops pktspan
// as Ctrl-C would.
func withPktspan(ctx context.Context, bin, out string, args []string, traffic func() error) error {
	spans, err := os.Create(filepath.Join(out, "spans.jsonl"))
	if err != nil {
		return err
	}
	defer spans.Close()
	logf, err := os.Create(filepath.Join(out, "pktspan.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"--output", "json", "--trace-close-grace", "500ms"}, args...)...)
	cmd.Stdout, cmd.Stderr = spans, logf
	attachCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	p, err := pktspanproc.Start(attachCtx, cmd)
	if err != nil {
		return fmt.Errorf("%w (see pktspan.log)", err)
	}

	trafficErr := traffic()
	time.Sleep(time.Second)

	if err := p.Stop(os.Interrupt, 60*time.Second); err != nil {
		return fmt.Errorf("stopping pktspan: %w (see pktspan.log)", err)
	}
	return trafficErr
}

// tap is an AF_PACKET socket that reads every frame it gets, so the clones queued on it
// are freed as consumed, not purged as drops when it closes.
type tap struct {
	f    *os.File
	read atomic.Int64
	done chan struct{}
}

func openTap(ns *netns.NS, ifname string) (*tap, error) {
	t := &tap{done: make(chan struct{})}
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		// Non-blocking: the runtime's poller reads it, and Close wakes the reader.
		t.f = os.NewFile(uintptr(fd), "packet tap")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("opening a packet tap on %s: %w", ifname, err)
	}
	go func() {
		defer close(t.done)
		buf := make([]byte, 65536)
		for {
			if _, err := t.f.Read(buf); err != nil {
				return
			}
			t.read.Add(1)
		}
	}()
	return t, nil
}

func (t *tap) Close() error {
	err := t.f.Close()
	<-t.done
	return err
}

// htons puts a protocol number in network order, as struct sockaddr_ll wants it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
