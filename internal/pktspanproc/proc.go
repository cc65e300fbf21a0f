// Package pktspanproc runs the pktspan binary as a script would: start it, wait for its
// --ready-file (every probe attached), and stop it with a signal as Ctrl-C does. The
// demo, the benchmarks and the kernel matrix's scenario share it.
package pktspanproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is one pktspan process started by Start.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's result, set before exited is closed
}

// Start runs cmd, a pktspan command line, with --ready-file added, and returns once the
// ready file exists. If pktspan exits first, or ctx ends first (pktspan is then killed),
// it returns an error; ctx bounds the start only, not pktspan's life. cmd's output,
// environment and SysProcAttr are the caller's; Start adds Pdeathsig, so pktspan never
// outlives the program that started it. The exit status is in cmd.ProcessState after
// Wait or Stop.
func Start(ctx context.Context, cmd *exec.Cmd) (*Proc, error) {
	dir, err := os.MkdirTemp("", "pktspan-ready-")
	if err != nil {
		return nil, fmt.Errorf("starting pktspan: %w", err)
	}
	ready := filepath.Join(dir, "ready")
	cmd.Args = append(cmd.Args, "--ready-file", ready)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting pktspan: %w", err)
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		os.RemoveAll(dir)
		close(p.exited)
	}()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(ready); err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("pktspan exited before attaching: %v", p.err)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-p.exited
			return nil, fmt.Errorf("pktspan did not attach: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Exited is closed once pktspan has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Wait waits for pktspan to exit and returns cmd.Wait's error: nil after a clean exit.
func (p *Proc) Wait() error {
	<-p.exited
	return p.err
}

// Stop sends sig (os.Interrupt stops pktspan as Ctrl-C does: detach, drain, flush) and
// waits up to timeout for it to exit, killing it after that. It returns Wait's error, or
// one saying pktspan did not stop in time. Stopping an exited pktspan returns Wait's.
func (p *Proc) Stop(sig os.Signal, timeout time.Duration) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("pktspan did not stop within %s of %v", timeout, sig)
	}
}
