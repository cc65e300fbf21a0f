package vm

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// cpioWriter writes the "newc" format the kernel unpacks as its initramfs.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	seen map[string]bool
}

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), seen: map[string]bool{"/": true}}
}

func (c *cpioWriter) header(name string, mode uint32, size int64) error {
	c.ino++
	name = strings.TrimPrefix(name, "/")
	_, err := fmt.Fprintf(c.w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s\x00",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0, name)
	if err != nil {
		return err
	}
	return c.pad(110 + int64(len(name)) + 1)
}

func (c *cpioWriter) pad(n int64) error {
	_, err := c.w.Write(make([]byte, (4-n%4)%4))
	return err
}

// dir adds p and its missing parents.
func (c *cpioWriter) dir(p string) error {
	p = path.Clean(p)
	if c.seen[p] {
		return nil
	}
	if err := c.dir(path.Dir(p)); err != nil {
		return err
	}
	c.seen[p] = true
	return c.header(p, 0o040755, 0)
}

func (c *cpioWriter) entry(p string) error {
	p = path.Clean(p)
	if !path.IsAbs(p) {
		return fmt.Errorf("guest path %q is not absolute", p)
	}
	if c.seen[p] {
		return fmt.Errorf("guest path %s given twice", p)
	}
	if err := c.dir(path.Dir(p)); err != nil {
		return err
	}
	c.seen[p] = true
	return nil
}

func (c *cpioWriter) bytes(p string, mode uint32, data []byte) error {
	if err := c.entry(p); err != nil {
		return err
	}
	if err := c.header(p, 0o100000|mode, int64(len(data))); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.pad(int64(len(data)))
}

func (c *cpioWriter) symlink(p, target string) error {
	if err := c.entry(p); err != nil {
		return err
	}
	if err := c.header(p, 0o120777, int64(len(target))); err != nil {
		return err
	}
	if _, err := c.w.WriteString(target); err != nil {
		return err
	}
	return c.pad(int64(len(target)))
}

// file copies a host file (following symlinks), or a host directory recursively.
func (c *cpioWriter) file(p, host string) error {
	st, err := os.Stat(host)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return filepath.WalkDir(host, func(h string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(host, h)
			if err != nil {
				return err
			}
			return c.file(path.Join(p, filepath.ToSlash(rel)), h)
		})
	}
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.entry(p); err != nil {
		return err
	}
	if err := c.header(p, 0o100000|uint32(st.Mode().Perm()), st.Size()); err != nil {
		return err
	}
	n, err := io.Copy(c.w, f)
	if err != nil {
		return err
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed size while being copied", host)
	}
	return c.pad(n)
}

func (c *cpioWriter) close() error {
	if err := c.header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

// defaultTools are the host's iproute2 and nftables, which the in-VM scenarios drive as
// the end-to-end tests do on the host (busybox's ip cannot make veth pairs or netns), and
// dash as /bin/sh: Debian's static busybox runs its own applets before anything in PATH,
// so a busybox shell would never reach the real ip.
var defaultTools = []string{"ip", "nft", "dash"}

// hostTool finds a host command and the shared libraries and loader it needs, so it runs
// unchanged in the guest: Debian's loader searches the multiarch library directories
// without an ld.so.cache.
func hostTool(ctx context.Context, name string) (bin string, libs []string, err error) {
	bin, err = exec.LookPath(name)
	if err != nil {
		// Root's PATH has sbin, a test runner's may not.
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
			if st, serr := os.Stat(filepath.Join(dir, name)); serr == nil && st.Mode().IsRegular() {
				bin, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s not found on the host (run make vmtest-deps): %w", name, err)
	}
	if interp, err := interpreter(bin); err != nil || interp == "" {
		return bin, nil, err // static, nothing else to copy
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return "", nil, fmt.Errorf("ldd %s: %w", bin, cmdErr(err))
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			return "", nil, fmt.Errorf("%s: %s not found on the host", bin, f[0])
		}
	}
	return bin, libs, nil
}

func interpreter(bin string) (string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			return strings.TrimRight(string(b), "\x00"), err
		}
	}
	return "", nil
}

const busyboxPath = "/bin/busybox"

// guest layout
const (
	guestModules = "/lib/modules/vm"
	guestPayload = "/payload.sh"
	guestOut     = "/out"
	guestDisk    = "/dev/vda"
)

// diskModules make the output disk appear; virtio_blk does not name its PCI transport as
// a dependency, and Debian's 6.1 has that as a module too.
var diskModules = []string{"virtio_pci", "virtio_blk"}

type initramfs struct {
	modules []string // host .ko files, load order
	files   map[string]string
	tools   []string
	script  string // the payload
	init    string
}

func (ir *initramfs) write(ctx context.Context, out string) error {
	bb, err := interpreter(busyboxPath)
	if err != nil {
		return fmt.Errorf("%s: %w (run make vmtest-deps)", busyboxPath, err)
	}
	if bb != "" {
		return fmt.Errorf("%s is linked dynamically: install busybox-static (make vmtest-deps)", busyboxPath)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	c := newCPIO(f)
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/root", guestOut} {
		if err := c.dir(d); err != nil {
			return err
		}
	}
	adds := []func() error{
		func() error { return c.file(busyboxPath, busyboxPath) },
		func() error { return c.symlink("/bin/sh", "/usr/bin/dash") },
		func() error { return c.symlink("/var/run", "/run") },
		func() error { return c.bytes("/init", 0o755, []byte(ir.init)) },
		func() error { return c.bytes(guestPayload, 0o755, []byte(ir.script)) },
	}
	for _, add := range adds {
		if err := add(); err != nil {
			return err
		}
	}
	for _, ko := range ir.modules {
		if err := c.file(path.Join(guestModules, filepath.Base(ko)), ko); err != nil {
			return err
		}
	}
	libs := map[string]bool{}
	for _, t := range ir.tools {
		bin, ls, err := hostTool(ctx, t)
		if err != nil {
			return err
		}
		// Tools go to /usr/bin, ahead of busybox's applets of the same name in PATH.
		if err := c.file(path.Join("/usr/bin", t), bin); err != nil {
			return err
		}
		for _, l := range ls {
			libs[l] = true
		}
	}
	for _, l := range slices.Sorted(maps.Keys(libs)) {
		if err := c.file(l, l); err != nil {
			return err
		}
	}
	for _, g := range slices.Sorted(maps.Keys(ir.files)) {
		if err := c.file(g, ir.files[g]); err != nil {
			return fmt.Errorf("adding %s as %s: %w", ir.files[g], g, err)
		}
	}
	if err := c.close(); err != nil {
		return err
	}
	return f.Close()
}

// initScript is /init: it mounts what pktspan and the tools expect, loads the modules,
// runs the payload with a deadline, saves /out to the output disk and powers off. Lines
// starting with the run's marker tell the host where it got to.
func initScript(marker string, modules []string, payloadSeconds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin HOME=/root OUT=%[2]s
M=%[1]s
fail() { echo "$M FAIL $*"; poweroff -f; }
mount -t proc proc /proc || fail mount proc
mount -t sysfs sysfs /sys || fail mount sysfs
mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts || fail mount devpts
mount -t tmpfs tmpfs /dev/shm || fail mount shm
mount -t tmpfs tmpfs /run || fail mount run
mount -t tracefs tracefs /sys/kernel/tracing || fail mount tracefs
mount -t debugfs debugfs /sys/kernel/debug || fail mount debugfs
mount -t bpf bpf /sys/fs/bpf || fail mount bpffs
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail mount cgroup2
ulimit -l unlimited
hostname vm
ip link set lo up || fail lo up
`, marker, guestOut)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod %s || fail insmod %s\n", path.Join(guestModules, filepath.Base(m)), filepath.Base(m))
	}
	fmt.Fprintf(&b, `i=0
while [ ! -b %[1]s ]; do
	i=$((i + 1)); [ $i -gt 200 ] && fail "no output disk %[1]s"
	sleep 0.05
done
up=$(cut -d. -f1 /proc/uptime)
budget=$((%[2]d - up))
[ $budget -lt 5 ] && budget=5
echo "$M BEGIN $(cut -d' ' -f1 /proc/uptime)"
cd /
# Its own session, so the deadline stops everything the payload started.
setsid /bin/sh %[3]s </dev/null &
pid=$!
( sleep $budget; echo "$M TIMEOUT"; kill -TERM -$pid; sleep 3; kill -KILL -$pid ) &
watchdog=$!
wait $pid
rc=$?
kill $watchdog 2>/dev/null
echo "$M END $rc $(cut -d' ' -f1 /proc/uptime)"
tar -c -f %[1]s -C %[4]s . || fail "saving %[4]s"
sync
echo "$M EXIT $rc"
poweroff -f
`, guestDisk, payloadSeconds, guestPayload, guestOut)
	return b.String()
}
