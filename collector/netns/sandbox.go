package netns

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// defaultSandboxDir is where Docker keeps a namespace file per container sandbox (its
// SandboxKey); the same under /proc/1/root is read from a container sharing the host's
// pid namespace.
const defaultSandboxDir = "/var/run/docker/netns"

// sandboxMountWait is how long a new sandbox file is watched for the namespace Docker
// mounts on it right after creating it.
const sandboxMountWait = time.Second

// sandboxKeep is how long a sandbox's namespace is remembered after it was seen: its
// container's start event, which names it, comes well within it.
const sandboxKeep = time.Minute

// sandboxWatch remembers the namespace Docker mounted on each sandbox file, as soon as
// it is mounted. A container that lives for less than its start event takes to arrive
// (a `docker run --rm` of 100 ms) has exited, and its namespace is gone, when the namer
// inspects it; the inspection still gives its SandboxKey, and the inode mounted there is
// remembered here.
type sandboxWatch struct {
	dir   string
	limit int
	// onMount hears of each namespace mounted after the watch began, at once.
	onMount func(path string, ns sandboxNS)
	file    *os.File // the inotify instance, read through the runtime's poller
	closed  atomic.Bool

	// evicted counts sandboxes not remembered for sandboxKeep to stay within the
	// bounds: forgotten early, or never read because the resolver was behind.
	evicted atomic.Uint64

	mu     sync.Mutex // guards what follows
	inodes map[string]sandboxNS
	order  []string // names by when they were recorded, oldest first
}

type sandboxNS struct {
	inode uint32
	at    time.Time
}

// watchSandboxes starts watching dir (or the host's, through procRoot/1/root, where dir
// is not visible) and records the namespaces already mounted there.
func watchSandboxes(procRoot, dir string, limit int, onMount func(path string, ns sandboxNS)) (*sandboxWatch, error) {
	if _, err := os.Stat(dir); err != nil {
		host := filepath.Join(procRoot, "1", "root", dir)
		if _, herr := os.Stat(host); herr != nil {
			return nil, fmt.Errorf("reading Docker's sandbox directory: %w", err)
		}
		dir = host
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watching Docker's sandbox directory: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watching Docker's sandbox directory %s: %w", dir, err)
	}
	w := &sandboxWatch{dir: dir, limit: limit, onMount: onMount, file: os.NewFile(uintptr(fd), "inotify"), inodes: make(map[string]sandboxNS)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		w.close()
		return nil, fmt.Errorf("reading Docker's sandbox directory: %w", err)
	}
	now := time.Now()
	for _, e := range entries {
		if inode, ok := mountedNamespace(filepath.Join(dir, e.Name())); ok {
			w.record(e.Name(), inode, now)
		}
	}
	return w, nil
}

// run reads the watch until ctx ends or close, and waits for each new file's namespace.
func (w *sandboxWatch) run(ctx context.Context) {
	created := make(chan string, 256)
	go w.read(created)
	type pending struct {
		name     string
		deadline time.Time
	}
	var (
		waiting []pending
		tick    *time.Ticker
		tickC   <-chan time.Time
	)
	check := func() {
		now := time.Now()
		kept := waiting[:0]
		for _, p := range waiting {
			path := filepath.Join(w.dir, p.name)
			if inode, ok := mountedNamespace(path); ok {
				w.record(p.name, inode, now)
				if w.onMount != nil {
					w.onMount(path, sandboxNS{inode: inode, at: now})
				}
			} else if now.Before(p.deadline) {
				kept = append(kept, p)
			}
		}
		waiting = kept
		if len(waiting) == 0 && tick != nil {
			tick.Stop()
			tick, tickC = nil, nil
		}
	}
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case name, ok := <-created:
			if !ok {
				return
			}
			if len(waiting) < w.limit {
				waiting = append(waiting, pending{name, time.Now().Add(sandboxMountWait)})
			} else {
				w.evicted.Add(1)
			}
			check()
			if len(waiting) > 0 && tick == nil {
				// Docker mounts the namespace within microseconds of creating the file.
				tick = time.NewTicker(time.Millisecond)
				tickC = tick.C
			}
		case <-tickC:
			check()
		}
	}
}

// read passes the names of the files created in the directory to created, and closes
// it when the watch is closed.
func (w *sandboxWatch) read(created chan<- string) {
	defer close(created)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then the name.
			end := off + unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
			if end > n {
				break
			}
			name := cString(buf[off+unix.SizeofInotifyEvent : end])
			off = end
			if name == "" {
				continue
			}
			select {
			case created <- name:
			default: // the resolver is behind: this sandbox is not named if it exits at once
				w.evicted.Add(1)
			}
		}
	}
}

// close stops the watch; run returns.
func (w *sandboxWatch) close() {
	if w.closed.CompareAndSwap(false, true) {
		w.file.Close()
	}
}

func (w *sandboxWatch) record(name string, inode uint32, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.inodes[name]; !ok {
		w.order = append(w.order, name)
	}
	w.inodes[name] = sandboxNS{inode: inode, at: now}
	for len(w.order) > 0 {
		oldest := w.order[0]
		ns := w.inodes[oldest]
		if len(w.order) <= w.limit && now.Sub(ns.at) < sandboxKeep {
			break
		}
		if now.Sub(ns.at) < sandboxKeep {
			w.evicted.Add(1)
		}
		delete(w.inodes, oldest)
		w.order = w.order[1:]
	}
}

// lookup returns the namespace last mounted on the sandbox file at key (a SandboxKey)
// and when it was seen mounted, if it was.
func (w *sandboxWatch) lookup(key string) (sandboxNS, bool) {
	if w == nil || key == "" {
		return sandboxNS{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ns, ok := w.inodes[filepath.Base(key)]
	return ns, ok
}

// mountedNamespace reports the inode of the network namespace mounted on path, if one
// is: the file Docker creates is an ordinary one until the namespace is bound on it.
func mountedNamespace(path string) (uint32, bool) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0, false
	}
	inode, err := inodeOf(path)
	if err != nil {
		return 0, false
	}
	return inode, true
}

// cString is a NUL-padded name of an inotify event.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
