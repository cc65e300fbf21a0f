package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread switched into the network namespace at path, so the
// sockets fn opens belong to that namespace (and stay there, used from any thread)
// while everything else, the OTLP exporter's connection included, stays in the
// process's own. An empty path runs fn as it is. Tests put the apps into their lab's
// namespaces this way and keep exporting to a collector on the host's loopback.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() { errc <- enterAndRun(path, fn) }()
	return <-errc
}

func enterAndRun(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", path, err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Left locked, the thread exits with its goroutine instead of running others
		// in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("leaving netns %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dialInNetns is a DialContext whose connections are made in the netns at path.
func dialInNetns(path string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(path, func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
