// Package netns builds throw-away test hosts: named network namespaces joined by veth
// pairs, with nftables rules and traffic helpers, for pktspan's kernel end-to-end tests.
//
// It needs root and the `ip` (iproute2) and `nft` (nftables) commands. Every namespace is
// named pktspan-<name>-<pid>-<n>, and Close deletes exactly that name, so parallel test
// processes and a developer's own namespaces are never touched.
//
// Addresses: links take only test addresses, 198.18.0.0/15 (RFC 2544, benchmarking) for
// IPv4 and fd00::/8 (RFC 4193, unique local addresses) for IPv6, so test traffic can
// never leave for a real network.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cmdTimeout bounds each ip/nft command run without a caller's context.
const cmdTimeout = 10 * time.Second

// runDir is where `ip netns` keeps its named namespaces.
const runDir = "/run/netns"

var (
	seq       atomic.Uint64
	validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

	testNet4 = netip.MustParsePrefix("198.18.0.0/15")
	testNet6 = netip.MustParsePrefix("fd00::/8")
)

// NS is one network namespace created by New.
type NS struct {
	name string

	closeOnce sync.Once
	closeErr  error
}

// New creates the namespace pktspan-<name>-<pid>-<n> with its loopback up. name is a
// short label such as "client" (lower-case letters, digits and dashes).
func New(name string) (*NS, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("creating netns: bad label %q (want %s)", name, validName)
	}
	ns := &NS{name: fmt.Sprintf("pktspan-%s-%d-%d", name, os.Getpid(), seq.Add(1))}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := run(ctx, nil, "ip", "netns", "add", ns.name); err != nil {
		return nil, fmt.Errorf("creating netns %s: %w", ns.name, err)
	}
	if _, err := run(ctx, nil, "ip", "-n", ns.name, "link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(fmt.Errorf("creating netns %s: %w", ns.name, err), ns.Close())
	}
	return ns, nil
}

// Name is the namespace's name as `ip netns` knows it.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind mount, usable as pktspan's --filter-netns.
func (n *NS) Path() string { return filepath.Join(runDir, n.name) }

// Close deletes the namespace; its interfaces and nft tables go with it once no socket
// or process holds it, so close servers opened inside first. Safe to call twice.
func (n *NS) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if _, err := run(ctx, nil, "ip", "netns", "delete", n.name); err != nil {
			n.closeErr = fmt.Errorf("deleting netns %s: %w", n.name, err)
		}
	})
	return n.closeErr
}

// Exec runs a command inside the namespace (`ip netns exec`) and returns its combined
// output; a failure's error includes the output.
func (n *NS) Exec(ctx context.Context, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("exec in netns: no command")
	}
	out, err := run(ctx, nil, "ip", append([]string{"netns", "exec", n.name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("exec in netns %s: %w", n.name, err)
	}
	return out, nil
}

// Nft loads an nftables ruleset (nft -f syntax) inside the namespace. Its tables belong
// to the namespace and vanish with it.
func (n *NS) Nft(ctx context.Context, ruleset string) error {
	if _, err := run(ctx, []byte(ruleset), "ip", "netns", "exec", n.name, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("loading nft ruleset in %s: %w", n.name, err)
	}
	return nil
}

// Do runs fn on an OS thread switched into the namespace, so sockets fn opens belong to
// it (and stay there when used later from any goroutine). Goroutines fn starts run in the
// caller's namespace, not this one.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- n.do(fn) }()
	return <-errc
}

func (n *NS) do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", n.name, err)
	}
	defer orig.Close()
	target, err := os.Open(n.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", n.name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", n.name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Left locked, the thread exits with this goroutine instead of running
		// other goroutines in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("leaving netns %s: %w", n.name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// LinkOption adds to what Link configures.
type LinkOption func(*linkOptions)

type linkOptions struct {
	extra [][2]netip.Prefix
}

// WithAddrs assigns one more address pair, typically the IPv6 one next to IPv4.
func WithAddrs(addrA, addrB netip.Prefix) LinkOption {
	return func(o *linkOptions) { o.extra = append(o.extra, [2]netip.Prefix{addrA, addrB}) }
}

var linkSeq atomic.Uint64

// Link joins a and b with a veth pair, assigns addrA on a's end and addrB on b's (IPv6
// without duplicate address detection, so it is usable at once) and sets both ends up.
// Addresses must lie in 198.18.0.0/15 or fd00::/8. It returns the interface names,
// veth<n>a in a and veth<n>b in b.
func Link(a, b *NS, addrA, addrB netip.Prefix, opts ...LinkOption) (ifA, ifB string, err error) {
	var o linkOptions
	for _, opt := range opts {
		opt(&o)
	}
	pairs := append([][2]netip.Prefix{{addrA, addrB}}, o.extra...)
	for _, p := range pairs {
		for _, pfx := range p {
			if !isTestPrefix(pfx) {
				return "", "", fmt.Errorf("linking %s and %s: %s is not in %s or %s", a.name, b.name, pfx, testNet4, testNet6)
			}
		}
	}
	k := linkSeq.Add(1)
	ifA, ifB = fmt.Sprintf("veth%da", k), fmt.Sprintf("veth%db", k)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	// Created directly inside both namespaces, so the names never meet the host's.
	cmds := [][]string{{"ip", "link", "add", ifA, "netns", a.name, "type", "veth", "peer", "name", ifB, "netns", b.name}}
	for _, p := range pairs {
		cmds = append(cmds, addrCmd(a, ifA, p[0]), addrCmd(b, ifB, p[1]))
	}
	cmds = append(cmds,
		[]string{"ip", "-n", a.name, "link", "set", ifA, "up"},
		[]string{"ip", "-n", b.name, "link", "set", ifB, "up"},
	)
	for _, c := range cmds {
		if _, err := run(ctx, nil, c[0], c[1:]...); err != nil {
			return "", "", fmt.Errorf("linking %s and %s: %w", a.name, b.name, err)
		}
	}
	return ifA, ifB, nil
}

func addrCmd(ns *NS, dev string, p netip.Prefix) []string {
	c := []string{"ip", "-n", ns.name, "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		c = append(c, "nodad")
	}
	return c
}

func isTestPrefix(p netip.Prefix) bool {
	if !p.IsValid() {
		return false
	}
	for _, n := range []netip.Prefix{testNet4, testNet6} {
		if n.Contains(p.Addr()) && p.Bits() >= n.Bits() {
			return true
		}
	}
	return false
}

// run runs a command with stdin and returns its combined output; a failure's error
// names the command and includes the output.
func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = time.Second
	// A child such as `ip netns exec` must not outlive a killed test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// VLAN adds an 802.1Q interface with the given ID on top of parent inside ns, assigns
// addr and sets it up. It returns the interface's name, <parent>.<id>.
func VLAN(ns *NS, parent string, id int, addr netip.Prefix) (string, error) {
	if !isTestPrefix(addr) {
		return "", fmt.Errorf("adding vlan %d in %s: %s is not in %s or %s", id, ns.name, addr, testNet4, testNet6)
	}
	name := fmt.Sprintf("%s.%d", parent, id)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	for _, c := range [][]string{
		{"ip", "-n", ns.name, "link", "add", "link", parent, "name", name, "type", "vlan", "id", fmt.Sprint(id)},
		addrCmd(ns, name, addr),
		{"ip", "-n", ns.name, "link", "set", name, "up"},
	} {
		if _, err := run(ctx, nil, c[0], c[1:]...); err != nil {
			return "", fmt.Errorf("adding vlan %d in %s: %w", id, ns.name, err)
		}
	}
	return name, nil
}
