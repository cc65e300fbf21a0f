// Package compose runs the demo stack of docker-compose.yaml for pktspan's container
// tests, on a Docker Engine that has no image registry: it builds local stand-ins for the
// images the stack would pull (Images), then drives docker-compose with the test override
// examples/compose/docker-compose.test.yaml (Project).
package compose

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// The stand-ins' names. The override file reaches them through the PKTSPANTEST_*
// variables of Images.Env.
const (
	// DebianImage stands in for debian:bookworm-slim: a minimal Debian made by debootstrap.
	DebianImage = "pktspan-test/debian:bookworm-slim"
	// GoImage stands in for golang:1.26-bookworm: DebianImage with this machine's Go
	// toolchain at /usr/local/go and its CA certificates.
	GoImage = "pktspan-test/golang:1.26-bookworm"
	// JaegerImage stands in for jaegertracing/jaeger: the binary `make jaeger` builds.
	JaegerImage = "pktspan-test/jaeger:2.13.0"
	// OtelcolImage stands in for otel/opentelemetry-collector-contrib: the binary `make
	// otelcol` builds, at the path and with the entry point of the official image.
	OtelcolImage = "pktspan-test/otelcol:0.161.0"
)

// hostCABundle is where Debian keeps the certificate authorities the system trusts.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// stampLabel holds the hash of what an image was made from; an image whose stamp differs
// from what it would be made from now is made again.
const stampLabel = "org.pktspan.test.stamp"

// debianRecipe is what DebianImage is made from; changing it makes the image again.
const debianRecipe = "debootstrap --variant=minbase bookworm"

// Images says which binaries the stand-ins are made from.
type Images struct {
	Jaeger  string // the Jaeger v2 binary (tools/jaeger)
	Otelcol string // the collector binary (tools/otelcol)
	Log     *slog.Logger
}

// Env is what the override file needs to find the stand-ins.
func (Images) Env() []string {
	return []string{
		"PKTSPANTEST_DEBIAN_IMAGE=" + DebianImage,
		"PKTSPANTEST_GO_IMAGE=" + GoImage,
		"PKTSPANTEST_JAEGER_IMAGE=" + JaegerImage,
		"PKTSPANTEST_OTELCOL_IMAGE=" + OtelcolImage,
	}
}

// Ensure makes each stand-in that is missing or stale, in order: the others start from
// DebianImage. Images already up to date cost one `docker image inspect` each.
func (im Images) Ensure(ctx context.Context) error {
	log := im.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	debian, err := im.ensureDebian(ctx, log)
	if err != nil {
		return err
	}
	// The toolchain that runs these tests, copied in whole.
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("finding the Go toolchain: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	goVersion, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return fmt.Errorf("reading the Go toolchain's version: %w", err)
	}
	steps := []struct {
		image, from string
		files       map[string]string // path in the build context → path on this machine
		dockerfile  string
	}{
		// The certificate authorities this machine trusts, rather than Debian's package:
		// they are what lets its own Go reach the module proxy from this network.
		{GoImage, string(goVersion), map[string]string{"go": goroot, "ca-certificates.crt": hostCABundle}, `FROM ` + DebianImage + `
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY go /usr/local/go
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOTOOLCHAIN=local
WORKDIR /go
`},
		{JaegerImage, "", map[string]string{"jaeger": im.Jaeger}, `FROM ` + DebianImage + `
COPY jaeger /usr/local/bin/jaeger
ENTRYPOINT ["/usr/local/bin/jaeger"]
`},
		{OtelcolImage, "", map[string]string{"otelcol-contrib": im.Otelcol}, `FROM ` + DebianImage + `
COPY otelcol-contrib /otelcol-contrib
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config", "/etc/otelcol-contrib/config.yaml"]
`},
	}
	for _, s := range steps {
		stamp, err := stampOf(s.dockerfile, debian, s.from, s.files)
		if err != nil {
			return fmt.Errorf("making %s: %w", s.image, err)
		}
		if current(ctx, s.image, stamp) {
			continue
		}
		log.Info("building a stand-in image", "image", s.image)
		if err := buildFromFiles(ctx, s.image, stamp, s.dockerfile, s.files); err != nil {
			return fmt.Errorf("making %s: %w", s.image, err)
		}
	}
	return nil
}

// ensureDebian makes DebianImage unless it is there, and returns its ID, which the
// other stand-ins' stamps include.
func (im Images) ensureDebian(ctx context.Context, log *slog.Logger) (string, error) {
	stamp := hashOf(debianRecipe)
	if !current(ctx, DebianImage, stamp) {
		log.Info("making a Debian root file system with debootstrap (a few minutes)", "image", DebianImage)
		if err := makeDebian(ctx, stamp); err != nil {
			return "", fmt.Errorf("making %s: %w", DebianImage, err)
		}
	}
	out, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", DebianImage)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// makeDebian runs debootstrap into a temporary directory and imports the tree as
// DebianImage. debootstrap's default mirror is the one Debian's images use.
func makeDebian(ctx context.Context, stamp string) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("debootstrap is not installed (apt-get install debootstrap): %w", err)
	}
	dir, err := os.MkdirTemp("", "pktspan-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "bookworm", root)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("debootstrap: %w\n%s", err, tail(out, 40))
	}
	// What Debian's own images leave out: downloaded packages and package lists.
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return err
			}
		}
	}
	tarCmd := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "-c", ".")
	importCmd := exec.CommandContext(ctx, "docker", "import",
		"--change", `CMD ["bash"]`, "--change", "LABEL "+stampLabel+"="+stamp, "-", DebianImage)
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	importCmd.Stdin = pipe
	var tarErr, importOut bytes.Buffer
	tarCmd.Stderr = &tarErr
	importCmd.Stdout, importCmd.Stderr = &importOut, &importOut
	if err := tarCmd.Start(); err != nil {
		return err
	}
	ierr := importCmd.Run()
	terr := tarCmd.Wait()
	if terr != nil {
		return fmt.Errorf("tar of the root file system: %w: %s", terr, tarErr.Bytes())
	}
	if ierr != nil {
		return fmt.Errorf("docker import: %w: %s", ierr, importOut.Bytes())
	}
	return nil
}

// current says whether image exists with the stamp label stamp.
func current(ctx context.Context, image, stamp string) bool {
	out, err := docker(ctx, nil, "image", "inspect", "--format", `{{index .Config.Labels "`+stampLabel+`"}}`, image)
	return err == nil && strings.TrimSpace(string(out)) == stamp
}

// stampOf hashes everything an image is made from: its Dockerfile, the image ID it starts
// from, extra words, and the contents of each file or tree it copies in.
func stampOf(dockerfile, base, extra string, files map[string]string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", dockerfile, base, extra)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		src := files[name]
		st, err := os.Stat(src)
		if err != nil {
			return "", err
		}
		if st.IsDir() {
			// A toolchain tree: its VERSION (in extra) says what it is; hashing 270 MB
			// on every run would cost more than the check saves.
			fmt.Fprintf(h, "%s dir %s\x00", name, src)
			continue
		}
		f, err := os.Open(src)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s file\x00", name)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// buildFromFiles runs `docker build` on a context streamed as a tar: the Dockerfile and
// the files (or trees) named, so nothing is copied on disk first.
func buildFromFiles(ctx context.Context, image, stamp, dockerfile string, files map[string]string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, dockerfile, files)) }()
	_, err := docker(ctx, pr, "build", "--quiet", "--label", stampLabel+"="+stamp, "-t", image, "-")
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer when docker stopped early
	return err
}

// writeContext writes a build context: Dockerfile at its root, and each file or tree of
// files at its name, with modes and symbolic links kept.
func writeContext(w io.Writer, dockerfile string, files map[string]string) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		src := files[name]
		err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, path)
			if err != nil {
				return err
			}
			return addToTar(tw, path, filepath.ToSlash(filepath.Join(name, rel)), d)
		})
		if err != nil {
			return fmt.Errorf("adding %s: %w", src, err)
		}
	}
	return tw.Close()
}

func addToTar(tw *tar.Writer, path, name string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// docker runs the docker CLI with stdin and returns its standard output; an error
// carries the end of what it printed.
func docker(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, tail(append(stdout.Bytes(), stderr.Bytes()...), 40))
	}
	return stdout.Bytes(), nil
}

// tail is the last n lines of out, for error messages.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
