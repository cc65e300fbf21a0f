package vm

import (
	"archive/tar"
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConsoleSplitsPayloadOutputExitCodeAndFailureByMarker(t *testing.T) {
	c := &console{marker: "M1", start: time.Now()}
	for _, l := range strings.Split(strings.Join([]string{
		"SeaBIOS",
		"[    1.0] Run /init as init process",
		"M1 BEGIN 1.93",
		"hello",
		"[    2.0] a kernel warning M1 END 3 2.24", // marker after kernel output on one line
		"M1 EXIT 3",
	}, "\r\n"), "\n") {
		c.line(strings.TrimRight(l, "\r"))
	}
	r := c.result()
	if !c.exited || r.ExitCode != 3 || c.timedOut || c.failed != "" {
		t.Fatalf("exited=%v code=%d timedOut=%v failed=%q", c.exited, r.ExitCode, c.timedOut, c.failed)
	}
	want := "hello\n[    2.0] a kernel warning \n"
	if r.Output != want {
		t.Errorf("payload output %q, want %q", r.Output, want)
	}
	if !strings.HasPrefix(r.Console, "SeaBIOS\n") || !strings.HasSuffix(r.Console, "M1 EXIT 3\n") {
		t.Errorf("console %q", r.Console)
	}

	f := &console{marker: "M2"}
	f.line("M2 FAIL insmod veth.ko")
	if f.failed != "insmod veth.ko" || f.exited {
		t.Errorf("failed=%q exited=%v", f.failed, f.exited)
	}
}

func tarDisk(t *testing.T, entries map[string]string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(entries[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(entries[name]))
	}
	tw.Close()
	disk := filepath.Join(t.TempDir(), "out.img")
	// The disk is larger than the archive, as in the VM: zeros follow it.
	if err := os.WriteFile(disk, append(b.Bytes(), make([]byte, 1<<16)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return disk
}

func TestExtractUnpacksTheOutputDiskAndRejectsEscapesAndGarbage(t *testing.T) {
	dir := t.TempDir()
	if err := extract(tarDisk(t, map[string]string{"./spans.json": "{}", "./d/log": "x"}), dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"spans.json": "{}", "d/log": "x"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
	if err := extract(tarDisk(t, map[string]string{"../escape": "x"}), t.TempDir()); err == nil {
		t.Error("a path leaving the output directory was accepted")
	}
	if err := extract(filepath.Join(dir, "spans.json"), t.TempDir()); err == nil {
		t.Error("garbage on the disk was accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty.img")
	if err := makeDisk(empty); err != nil {
		t.Fatal(err)
	}
	if err := extract(empty, t.TempDir()); err != nil {
		t.Errorf("an untouched disk: %v", err)
	}
}

// The archive is read back by the newc rules the kernel applies.
func TestCPIOWritesNewcEntriesTheKernelCanUnpack(t *testing.T) {
	var b bytes.Buffer
	c := newCPIO(&b)
	host := filepath.Join(t.TempDir(), "f")
	os.WriteFile(host, []byte("hello"), 0o755)
	if err := c.file("/usr/bin/f", host); err != nil {
		t.Fatal(err)
	}
	if err := c.symlink("/bin/sh", "/usr/bin/dash"); err != nil {
		t.Fatal(err)
	}
	if err := c.bytes("/usr/bin/f", 0o644, nil); err == nil {
		t.Error("a path given twice was accepted")
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}

	type entry struct {
		mode uint64
		data string
	}
	got := map[string]entry{}
	data := b.Bytes()
	for len(data) > 0 {
		if len(data) < 110 || string(data[:6]) != "070701" {
			t.Fatalf("bad header at %q", data[:min(len(data), 16)])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(data[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(data[110 : 110+nameSize-1])
		off := (110 + nameSize + 3) &^ 3
		got[name] = entry{uint64(mode), string(data[off : off+size])}
		data = data[(off+size+3)&^3:]
		if name == "TRAILER!!!" {
			break
		}
	}
	want := map[string]entry{
		"usr":        {0o40755, ""},
		"usr/bin":    {0o40755, ""},
		"usr/bin/f":  {0o100755, "hello"},
		"bin":        {0o40755, ""},
		"bin/sh":     {0o120777, "/usr/bin/dash"},
		"TRAILER!!!": {0, ""},
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, want %+v", name, got[name], w)
		}
	}
	if len(data) != 0 {
		t.Errorf("%d bytes after the trailer", len(data))
	}
}
