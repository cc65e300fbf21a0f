package vm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RunOptions describe one VM boot.
type RunOptions struct {
	// Script is the payload, run by /bin/sh (the host's dash) as root in / once the VM is
	// up: proc, sys, devtmpfs, tracefs, debugfs, bpffs, cgroup2 and /run are mounted, lo
	// is up and the modules are loaded. PATH has the host's ip, nft and Tools ahead of
	// busybox's applets. $OUT (/out) is the directory brought back to the host.
	Script string
	// Files are copied into the VM: guest path → host path (a file or a directory).
	Files map[string]string
	// Modules to load from the kernel's package, with their dependencies; nil means
	// DefaultModules.
	Modules []string
	// Tools are host commands copied with their shared libraries into /usr/bin, in
	// addition to ip, nft and dash.
	Tools []string
	// OutDir receives the files the payload left in $OUT; empty discards them.
	OutDir string
	// Timeout bounds the whole run, boot included (default 5 minutes). The payload is
	// stopped shortly before it, so its output still comes back.
	Timeout time.Duration
	// MemoryMB is the VM's memory (default 1024); the initramfs lives in it.
	MemoryMB int
}

// Result is what came back from a VM.
type Result struct {
	Console  string // the whole serial console: firmware, kernel, init and payload
	Output   string // what the payload printed (stdout and stderr)
	ExitCode int    // the payload's exit status
	// BootTime is from starting qemu to the payload's start, as seen by the host.
	BootTime time.Duration
	Duration time.Duration // the whole run
	// Reboots counts boots that panicked before the payload began and were tried again.
	Reboots int
}

// errBootPanic is a kernel that panicked before the payload began.
var errBootPanic = errors.New("the kernel panicked while booting, before the payload began")

const (
	defaultTimeout = 5 * time.Minute
	defaultMemory  = 1024
	// stopMargin is left between stopping the payload and the host's deadline, for
	// saving $OUT and powering off.
	stopMargin = 15 * time.Second
	diskBytes  = 1 << 30 // sparse; bounds what $OUT can hold
)

// Run boots k with the payload under qemu-system-x86_64 (TCG: no KVM needed) and waits
// for it to power off. A payload failing is not an error: see Result.ExitCode. Errors
// (no qemu, a module that does not load, a hung or crashed VM, a payload over its time)
// carry the end of the console; the Result, when not nil, holds all of it.
func Run(ctx context.Context, k *Kernel, opts RunOptions) (*Result, error) {
	res, err := run(ctx, k, opts)
	// Under qemu's software emulation a kernel at times dies patching its own code
	// during boot (an int3 of text_poke_bp hit on the other vCPU), before anything of
	// the payload ran: that boot is tried again, once.
	if errors.Is(err, errBootPanic) && ctx.Err() == nil {
		res, err = run(ctx, k, opts)
		if res != nil {
			res.Reboots = 1
		}
	}
	if err != nil {
		err = fmt.Errorf("booting %s: %w", k.Release, err)
	}
	return res, err
}

func run(ctx context.Context, k *Kernel, opts RunOptions) (*Result, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("qemu-system-x86_64 not found (run make vmtest-deps): %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MemoryMB <= 0 {
		opts.MemoryMB = defaultMemory
	}
	if opts.Modules == nil {
		opts.Modules = DefaultModules
	}
	modules, err := k.ModuleFiles(ctx, append(append([]string{}, diskModules...), opts.Modules...)...)
	if err != nil {
		return nil, err
	}

	work, err := os.MkdirTemp("", "pktspan-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	marker := "PKTSPAN-VM-" + hex.EncodeToString(nonce)
	ir := initramfs{
		modules: modules,
		files:   opts.Files,
		tools:   append(append([]string{}, defaultTools...), opts.Tools...),
		script:  opts.Script,
		init:    initScript(marker, modules, int((opts.Timeout - stopMargin).Seconds())),
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := ir.write(ctx, initrd); err != nil {
		return nil, fmt.Errorf("building the initramfs: %w", err)
	}
	disk := filepath.Join(work, "out.img")
	if err := makeDisk(disk); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", strconv.Itoa(opts.MemoryMB),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet rdinit=/init",
		"-drive", "file="+disk+",format=raw,if=virtio,cache=unsafe",
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting qemu: %w", err)
	}
	con := &console{marker: marker, start: start}
	con.read(stdout) // until qemu exits or is killed
	waitErr := cmd.Wait()

	res := con.result()
	res.Duration = time.Since(start)
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("qemu stopped after %s: %w%s", res.Duration.Round(time.Millisecond), ctx.Err(), tail(res.Console))
	case con.failed != "":
		return res, fmt.Errorf("init: %s%s", con.failed, tail(res.Console))
	case res.BootTime == 0 && strings.Contains(res.Console, "Kernel panic"):
		return res, fmt.Errorf("%w%s", errBootPanic, tail(res.Console))
	case !con.exited:
		return res, fmt.Errorf("the VM stopped before the payload's end%s%s",
			qemuStatus(waitErr, stderr.Bytes()), tail(res.Console))
	}
	if opts.OutDir != "" {
		if err := extract(disk, opts.OutDir); err != nil {
			return res, fmt.Errorf("bringing back %s: %w", guestOut, err)
		}
	}
	if con.timedOut {
		return res, fmt.Errorf("payload stopped %s before the run's timeout of %s%s", stopMargin, opts.Timeout, tail(res.Console))
	}
	return res, nil
}

func qemuStatus(waitErr error, stderr []byte) string {
	stderr = bytes.TrimSpace(stderr)
	if waitErr == nil && len(stderr) == 0 {
		return ""
	}
	return fmt.Sprintf(" (qemu: %v %s)", waitErr, stderr)
}

func makeDisk(p string) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := f.Truncate(diskBytes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// console follows the serial output and the marker lines /init prints.
type console struct {
	marker string
	start  time.Time

	all, payload strings.Builder
	inPayload    bool
	boot         time.Duration
	exitCode     int
	exited       bool
	timedOut     bool
	failed       string
}

func (c *console) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			c.line(strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			return
		}
	}
}

func (c *console) line(l string) {
	c.all.WriteString(l)
	c.all.WriteByte('\n')
	// The marker can follow kernel output on the same line.
	text, f := l, []string(nil)
	if i := strings.Index(l, c.marker+" "); i >= 0 {
		text, f = l[:i], strings.Fields(l[i+len(c.marker):])
	}
	if c.inPayload && (f == nil || text != "") {
		c.payload.WriteString(text)
		c.payload.WriteByte('\n')
	}
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case "BEGIN":
		c.boot = time.Since(c.start)
		c.inPayload = true
	case "END":
		c.inPayload = false
	case "TIMEOUT":
		c.timedOut = true
	case "FAIL":
		c.failed = strings.Join(f[1:], " ")
	case "EXIT":
		if len(f) > 1 {
			c.exitCode, _ = strconv.Atoi(f[1])
			c.exited = true
		}
	}
}

func (c *console) result() *Result {
	return &Result{Console: c.all.String(), Output: c.payload.String(), ExitCode: c.exitCode, BootTime: c.boot}
}

// tail is the end of the console for error messages, where a panic or a failed step shows.
func tail(console string) string {
	lines := strings.Split(strings.TrimRight(console, "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return "\n--- console (end) ---\n" + strings.Join(lines, "\n")
}

// extract unpacks the tar the guest wrote on the output disk into dir.
func extract(disk, dir string) error {
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("unsafe path %q in the output", h.Name)
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		}
	}
}
