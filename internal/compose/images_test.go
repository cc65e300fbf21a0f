package compose

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestBuildContextHoldsTheDockerfileAndTreesWithModesAndLinks(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "go")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "go"), []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/go", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(file, []byte("certs"), 0o644); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := writeContext(&buf, "FROM scratch\n", map[string]string{"go": tree, "ca-certificates.crt": file}); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		mode int64
		link string
		body string
	}
	got := map[string]entry{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		got[h.Name] = entry{h.Mode & 0o777, h.Linkname, string(body)}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
	}
	want := map[string]entry{
		"Dockerfile":          {0o644, "", "FROM scratch\n"},
		"ca-certificates.crt": {0o644, "", "certs"},
		"go/bin/go":           {0o755, "", "binary"},
		"go/link":             {0o777, "bin/go", ""},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: got %+v (present %v), want %+v", name, g, ok, w)
		}
	}
}
