// Command readme-demo is the README's demo, `make demo`: it starts a local Jaeger, builds
// two network namespaces joined by veth with a TCP server, an nft rule that drops TCP to
// port 81 and a closed UDP port, runs pktspan exporting to that Jaeger with console
// output, makes traffic (including drops) every few seconds, prints the trace IDs and
// where to read them, and cleans everything up on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/pktspan/pktspan/internal/jaeger"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

const service = "pktspan-demo"

func main() {
	bin := flag.String("pktspan", "bin/pktspan", "pktspan binary to run")
	jaegerBin := flag.String("jaeger", "", "Jaeger binary (default: the one `make jaeger` builds)")
	every := flag.Duration("every", 3*time.Second, "pause between rounds of traffic")
	duration := flag.Duration("duration", 0, "stop by itself after this long of traffic, once pktspan is attached (0: run until Ctrl-C)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *jaegerBin, *every, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Fprintf(os.Stderr, ">> "+format+"\n", args...) }

// run runs the demo until ctx ends, or for duration of traffic once pktspan is attached.
// Such a scripted run (make test's demo-smoke) fails if no trace reached Jaeger: the
// demo would be broken.
func run(ctx context.Context, bin, jaegerBin string, every, duration time.Duration) error {
	requireTraces := duration > 0
	if os.Geteuid() != 0 {
		return errors.New("the demo loads eBPF probes and creates network namespaces: run it as root (sudo make demo)")
	}
	say("starting Jaeger on loopback")
	var opts []jaeger.Option
	if jaegerBin != "" {
		opts = append(opts, jaeger.WithBinary(jaegerBin))
	}
	j, err := jaeger.Start(ctx, opts...)
	if err != nil {
		return err
	}
	defer func() { say("stopping Jaeger"); _ = j.Stop() }()

	say("creating namespaces client (%s) and server (%s), nft drop of TCP port %d in server", netns.LabClient.Addr(), netns.LabServer.Addr(), netns.DroppedPort)
	lab, err := netns.NewLab(ctx)
	if err != nil {
		return err
	}
	defer func() { say("removing namespaces"); _ = lab.Close() }()

	say("starting pktspan: %s", bin)
	cmd := exec.Command(bin, "--otlp-endpoint", j.OTLPEndpoint(), "--otlp-insecure",
		"--service-name", service, "--output", "console",
		"--filter-addr", netns.LabServer.Masked().String())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own process group: Ctrl-C reaches the demo, which stops pktspan in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := pktspanproc.Start(ctx, cmd)
	if err != nil {
		return err
	}
	defer func() {
		say("stopping pktspan (flushing spans)")
		if err := p.Stop(os.Interrupt, 15*time.Second); err != nil {
			say("pktspan: %v", err)
		}
	}()

	if duration > 0 {
		// Counted from here: starting Jaeger and the lab must not eat the traffic's time.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	say("pktspan is attached; traffic every %s; Ctrl-C to stop", every)
	say("Jaeger query API: %s/api/v3/traces?query.service_name=%s", j.QueryURL(), service)
	since := time.Now().Add(-time.Second)
	seen := map[string]bool{}
	for {
		traffic(ctx, lab)
		select {
		case <-ctx.Done():
			if requireTraces && len(seen) == 0 {
				last, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := printTraces(last, j, since, seen); len(seen) == 0 {
					return errors.Join(errors.New("no trace reached Jaeger: see pktspan's output above"), err)
				}
			}
			return nil
		case <-p.Exited():
			return fmt.Errorf("pktspan exited: %v", p.Wait())
		case <-time.After(every):
		}
		_ = printTraces(ctx, j, since, seen) // the next round tries again
	}
}

// traffic is one round of the lab's traffic (a TCP request and reply, UDP to a closed
// port: NO_SOCKET, a TCP connect the nft rule drops: NETFILTER_DROP) and a ping.
func traffic(ctx context.Context, lab *netns.Lab) {
	if err := lab.Traffic(ctx); err != nil && ctx.Err() == nil {
		say("traffic: %v", err)
	}
	if err := netns.Ping(ctx, lab.Client, netns.LabServer.Addr()); err != nil && ctx.Err() == nil {
		say("ping: %v", err)
	}
}

// printTraces lists the traces Jaeger has that were not printed yet, each named by the
// first packet span that arrived in it (a flow's root span comes when its window closes).
func printTraces(ctx context.Context, j *jaeger.Jaeger, since time.Time, seen map[string]bool) error {
	td, err := j.Traces(ctx, service, since)
	if err != nil {
		return err
	}
	var lines []string
	for _, sp := range jaeger.Spans(td) {
		id := sp.TraceIDHex()
		if seen[id] || (sp.Name != "packet" && len(sp.ParentSpanId) != 0) {
			continue
		}
		seen[id] = true
		proto, _ := sp.Attr("network.transport")
		src, _ := sp.Attr("source.address")
		dst, _ := sp.Attr("destination.address")
		port := ""
		if p, ok := sp.Attr("destination.port"); ok {
			port = ":" + p
		}
		status := ""
		if msg := sp.GetStatus().GetMessage(); msg != "" {
			status = " dropped: " + msg
		}
		lines = append(lines, fmt.Sprintf(">> trace %s  %-4s %s > %s%s%s", id, proto, src, dst, port, status))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(os.Stderr, l)
	}
	if len(lines) > 0 {
		say("read one: %s/api/v3/traces/<trace id>", j.QueryURL())
	}
	return nil
}
