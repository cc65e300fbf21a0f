package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pktspan/pktspan/internal/bpfstats"
	"github.com/pktspan/pktspan/internal/kernelmatrix"
	"github.com/pktspan/pktspan/internal/netns"
	"github.com/pktspan/pktspan/internal/pktspanproc"
)

// costWindow is how long each mode's requests run. The VM emulates its CPU (no KVM):
// a few hundred requests take seconds.
const costWindow = 3 * time.Second

// runCost measures, with the kernel's BPF statistics, what pktspan's programs cost per
// call with one backend over the lab's TCP requests: with a filter matching nothing and
// with every lab packet traced, and an empty tp_btf program at the tracepoints over the
// same requests, all in this boot, so the host compares backends and modes by ratios
// (absolute times under emulation say little). The figures go to out/cost.json.
func runCost(ctx context.Context, lab *netns.Lab, bin, backend, out string) error {
	stats, err := bpfstats.Enable()
	if err != nil {
		return err
	}
	defer stats.Close()
	requests := func() error { return requestLoop(ctx, lab, costWindow) }

	res := kernelmatrix.Cost{Backend: backend, Modes: map[string]bpfstats.Window{}}
	floor, err := bpfstats.WithFloor(bpfstats.TracepointHooks, requests)
	if err != nil {
		return fmt.Errorf("the empty programs' floor: %w", err)
	}
	res.Modes[kernelmatrix.CostFloor] = floor
	for _, m := range []struct {
		name string
		args []string
	}{
		// Port 9 carries no lab traffic: every skb is looked at, none is followed.
		{kernelmatrix.CostNothing, []string{"--filter-port", "9"}},
		{kernelmatrix.CostEverything, []string{"--filter-addr", netns.LabServer.Masked().String()}},
	} {
		w, err := measurePktspan(ctx, bin, append([]string{"--backend", backend, "--output", "none"}, m.args...), requests,
			filepath.Join(out, "pktspan-"+m.name+".log"))
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		res.Modes[m.name] = w
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, kernelmatrix.CostFile), b, 0o644)
}

// measurePktspan runs pktspan with args, its log in logPath, and returns its programs'
// statistics over fn, sampled once every probe is attached.
func measurePktspan(ctx context.Context, bin string, args []string, fn func() error, logPath string) (bpfstats.Window, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	attachCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	p, err := pktspanproc.Start(attachCtx, cmd)
	if err != nil {
		return nil, fmt.Errorf("%w (see %s)", err, filepath.Base(logPath))
	}
	set, err := bpfstats.OfProcess(cmd.Process.Pid)
	var w bpfstats.Window
	if err == nil {
		w, err = bpfstats.Measure(set, fn)
		err = errors.Join(err, set.Close())
	}
	if stopErr := p.Stop(os.Interrupt, 60*time.Second); stopErr != nil {
		err = errors.Join(err, fmt.Errorf("stopping pktspan: %w (see %s)", stopErr, filepath.Base(logPath)))
	}
	return w, err
}

// requestLoop makes TCP requests to the lab's server, one after another, for d.
func requestLoop(ctx context.Context, lab *netns.Lab, d time.Duration) error {
	end := time.Now().Add(d)
	for n := 0; time.Now().Before(end); n++ {
		if _, err := netns.TCPRequest(ctx, lab.Client, netns.LabServer.Addr(), netns.ReplyPort, []byte("cost")); err != nil {
			return fmt.Errorf("request %d: %w", n, err)
		}
	}
	return nil
}
