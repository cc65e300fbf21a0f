// Package vm boots Debian's own kernels under qemu (software emulation, no KVM) with a
// small busybox initramfs, so tests can run pktspan on kernels that offer kprobes and
// fentry when the development machine's kernel does not (docs/DESIGN.md, testing tier 3).
//
// Ensure downloads and caches a kernel package; Run boots it with a payload script and
// brings back the payload's output, exit status and the files it wrote.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Kernel is one Debian cloud kernel package unpacked in the cache.
type Kernel struct {
	Series  string    // what Ensure was asked for: "6.1", "6.12"
	Release string    // uname -r inside the VM: "6.12.117+deb12-cloud-amd64"
	Package string    // Debian package: "linux-image-6.12.117+deb12-cloud-amd64"
	Version string    // Debian package version: "6.12.117-1~deb12u1"
	Fetched time.Time // when it was downloaded; the newest of a series is used
	Dir     string    `json:"-"` // the cache directory holding everything below
	Vmlinuz string    `json:"-"`
	// Config is the kernel's build configuration (boot/config-*): "CONFIG_KPROBES" → "y".
	// Options that are not set are absent.
	Config map[string]string `json:"-"`
}

// DefaultModules are loaded in every VM unless RunOptions.Modules says otherwise: veth
// for namespace pairs, nf_tables for `nft` rulesets (the inet filter chains are built
// into nf_tables on Debian's kernels).
var DefaultModules = []string{"veth", "nf_tables"}

// metaPackages are tried in order to find a series' kernel in the configured apt
// sources: bookworm carries 6.12 as its own meta package next to 6.1.
func metaPackages(series string) []string {
	return []string{"linux-image-" + series + "-cloud-amd64", "linux-image-cloud-amd64"}
}

var seriesRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// CacheDir is where kernels are kept: ${XDG_CACHE_HOME:-$HOME/.cache}/pktspan/kernels.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the cache directory: %w", err)
	}
	return filepath.Join(base, "pktspan", "kernels"), nil
}

// Ensure returns a cached kernel of the series ("6.1", "6.12"), downloading Debian's
// linux-image-*-cloud-amd64 package with apt-get the first time. A cached kernel is used
// as it is even when apt knows a newer one, so results do not change under a test.
func Ensure(ctx context.Context, series string) (*Kernel, error) {
	if !seriesRE.MatchString(series) {
		return nil, fmt.Errorf("kernel series %q: want major.minor like 6.12", series)
	}
	root, err := CacheDir()
	if err != nil {
		return nil, err
	}
	k, err := cached(root, series)
	if err != nil {
		return nil, err
	}
	if k == nil {
		if k, err = fetch(ctx, root, series); err != nil {
			return nil, fmt.Errorf("fetching kernel %s: %w", series, err)
		}
	}
	if err := k.readConfig(); err != nil {
		return nil, err
	}
	return k, nil
}

// cached returns the most recently fetched complete kernel of the series, or nil.
func cached(root, series string) (*Kernel, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the kernel cache: %w", err)
	}
	var best *Kernel
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := load(filepath.Join(root, e.Name()))
		if err != nil {
			continue // not a complete kernel directory
		}
		if k.Series == series && (best == nil || k.Fetched.After(best.Fetched)) {
			best = k
		}
	}
	return best, nil
}

const metaFile = "kernel.json"

func load(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, metaFile), err)
	}
	// The cache may have moved with $HOME; paths follow the directory.
	k.Dir = dir
	k.Vmlinuz = filepath.Join(dir, "vmlinuz")
	return &k, nil
}

// resolve finds the kernel package and version apt would install for the series.
func resolve(ctx context.Context, series string) (pkg, version string, err error) {
	depRE := regexp.MustCompile(`^(linux-image-` + regexp.QuoteMeta(series) + `\.[^ ]*-cloud-amd64) \(= ([^)]+)\)$`)
	for _, meta := range metaPackages(series) {
		out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", meta).Output()
		if err != nil {
			continue // not in the configured sources
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			dep, ok := strings.CutPrefix(sc.Text(), "Depends: ")
			if !ok {
				continue
			}
			for _, d := range strings.Split(dep, ", ") {
				if m := depRE.FindStringSubmatch(d); m != nil {
					return m[1], m[2], nil
				}
			}
		}
	}
	return "", "", fmt.Errorf("no %s cloud kernel in the configured apt sources (looked for %s); run apt-get update",
		series, strings.Join(metaPackages(series), ", "))
}

func fetch(ctx context.Context, root, series string) (*Kernel, error) {
	pkg, version, err := resolve(ctx, series)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	// Everything is built in a private directory and renamed into place, so a kernel
	// directory is either complete or absent, also with two test processes at once.
	stage, err := os.MkdirTemp(root, ".fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)

	args := []string{"download", pkg + "=" + version}
	if os.Geteuid() == 0 {
		// apt would hand the download to the _apt user, which cannot write here.
		args = append([]string{"-o", "APT::Sandbox::User=root"}, args...)
	}
	if err := command(ctx, stage, "apt-get", args...); err != nil {
		return nil, fmt.Errorf("%w (stale package lists? run apt-get update)", err)
	}
	debs, _ := filepath.Glob(filepath.Join(stage, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	x := filepath.Join(stage, "x")
	if err := command(ctx, stage, "dpkg-deb", "-x", debs[0], x); err != nil {
		return nil, err
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", pkg, len(vmlinuz))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")

	k := &Kernel{Series: series, Release: release, Package: pkg, Version: version, Fetched: time.Now().UTC()}
	kdir := filepath.Join(stage, "k")
	if err := os.Mkdir(kdir, 0o755); err != nil {
		return nil, err
	}
	// Only the image, its config and its module tree are kept (the rest is docs).
	for from, to := range map[string]string{
		vmlinuz[0]: "vmlinuz",
		filepath.Join(x, "boot", "config-"+release): "config",
		filepath.Join(x, "lib", "modules", release): "modules",
	} {
		if err := os.Rename(from, filepath.Join(kdir, to)); err != nil {
			return nil, fmt.Errorf("%s: %w", pkg, err)
		}
	}
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(kdir, metaFile), b, 0o644); err != nil {
		return nil, err
	}
	final := filepath.Join(root, release)
	if err := os.Rename(kdir, final); err != nil {
		// Another process may have put the same kernel there first.
		if other, lerr := load(final); lerr == nil {
			return other, nil
		}
		return nil, fmt.Errorf("caching %s: %w", release, err)
	}
	return load(final)
}

func (k *Kernel) readConfig() error {
	b, err := os.ReadFile(filepath.Join(k.Dir, "config"))
	if err != nil {
		return fmt.Errorf("kernel %s config: %w", k.Release, err)
	}
	k.Config = map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, val, ok := strings.Cut(line, "="); ok && strings.HasPrefix(name, "CONFIG_") {
			k.Config[name] = strings.Trim(val, `"`)
		}
	}
	return nil
}

// ModuleFiles returns uncompressed .ko files for the named modules and everything they
// depend on, in an order insmod accepts. Modules built into the kernel are left out.
// Debian ships modules compressed (xz on 6.12); they are decompressed once into the
// cache.
func (k *Kernel) ModuleFiles(ctx context.Context, names ...string) ([]string, error) {
	mods := filepath.Join(k.Dir, "modules")
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(mods, "modules.builtin")); err == nil {
		for _, p := range strings.Fields(string(b)) {
			builtin[moduleName(p)] = true
		}
	}
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(mods, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			index[moduleName(p)] = p
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules of %s: %w", k.Release, err)
	}

	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name string) error
	visit = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		}
		state[name] = 1
		src, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s is neither in %s nor built in", name, k.Package)
		}
		ko, err := k.uncompressed(ctx, name, src)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, ko)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
		}
	}
	return order, nil
}

// moduleName turns kernel/net/netfilter/nf_tables.ko.xz into nf_tables; the kernel
// treats - and _ in module names alike.
func moduleName(p string) string {
	base := filepath.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

func (k *Kernel) uncompressed(ctx context.Context, name, src string) (string, error) {
	var tool string
	switch {
	case strings.HasSuffix(src, ".ko"):
		return src, nil
	case strings.HasSuffix(src, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(src, ".ko.zst"):
		tool = "zstd"
	default:
		return "", fmt.Errorf("module %s: unknown compression of %s", name, filepath.Base(src))
	}
	dst := filepath.Join(k.Dir, "ko", name+".ko")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", src).Output()
	if err != nil {
		return "", fmt.Errorf("decompressing %s: %w", filepath.Base(src), cmdErr(err))
	}
	// Written beside and renamed: a concurrent run never sees half a module.
	tmp, err := os.CreateTemp(filepath.Dir(dst), name+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s has no .modinfo", filepath.Base(ko))
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// command runs a host tool, returning its output in the error when it fails.
func command(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func cmdErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
