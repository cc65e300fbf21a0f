package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// projectLabel is the label Compose (v1 and v2) puts on every container, network and
// volume of a project.
const projectLabel = "com.docker.compose.project"

// Project is one Compose project: the files, a name no other run uses, and the variables
// Compose substitutes into the files.
type Project struct {
	Tool  []string // the Compose command; nil: what Tool finds
	Dir   string   // the project directory, where the first file is; paths in the files are relative to it
	Name  string   // -p NAME
	Files []string // -f FILE..., relative to Dir
	Env   []string // added to this process's environment
}

// ToolsEnv lists the Compose binaries the tests run the stack with, separated by spaces:
// docker-compose 1.29, v2 run standalone, or both.
const ToolsEnv = "PKTSPANTEST_COMPOSE"

// Tools returns the Compose commands to run the stack with: each binary $PKTSPANTEST_COMPOSE
// lists, else the one Tool finds.
func Tools(ctx context.Context) ([][]string, error) {
	if list := strings.Fields(os.Getenv(ToolsEnv)); len(list) > 0 {
		tools := make([][]string, len(list))
		for i, p := range list {
			tools[i] = []string{p}
		}
		return tools, nil
	}
	tool, err := Tool(ctx)
	if err != nil {
		return nil, err
	}
	return [][]string{tool}, nil
}

// Tool returns the Compose command this machine has: docker-compose (1.29, Python) when
// installed, else the docker CLI's compose plugin (v2).
func Tool(ctx context.Context) ([]string, error) {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}, nil
	}
	if err := exec.CommandContext(ctx, "docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, errors.New("neither docker-compose nor `docker compose` is installed")
}

// Run runs Compose with the project's name and files and args, and returns what it
// printed on standard output; an error carries the end of everything it printed.
func (p *Project) Run(ctx context.Context, args ...string) ([]byte, error) {
	tool := p.Tool
	if tool == nil {
		var err error
		if tool, err = Tool(ctx); err != nil {
			return nil, err
		}
	}
	full := append(slices.Clone(tool[1:]), "-p", p.Name)
	for _, f := range p.Files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, tool[0], full...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s\n%s", tool[len(tool)-1], strings.Join(args, " "), err,
			tail(stdout.Bytes(), 30), tail(stderr.Bytes(), 30))
	}
	return stdout.Bytes(), nil
}

// Container is what WaitHealthy learned of one of the project's containers.
type Container struct {
	ID, Name, Service string
	Status            string // running, exited, restarting, …
	Health            string // healthy, starting, unhealthy, or "" without a health check
	Restarts          int
}

func (c Container) String() string {
	s := fmt.Sprintf("%s (%s): %s", c.Service, c.Name, c.Status)
	if c.Health != "" {
		s += ", " + c.Health
	}
	if c.Restarts > 0 {
		s += fmt.Sprintf(", restarted %d times", c.Restarts)
	}
	return s
}

// Containers lists the project's containers as Docker sees them now.
func (p *Project) Containers(ctx context.Context) ([]Container, error) {
	ids, err := p.labelled(ctx, "ps", "-a")
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	out, err := docker(ctx, nil, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		ID           string `json:"Id"`
		Name         string
		RestartCount int
		State        struct {
			Status string
			Health *struct{ Status string }
		}
		Config struct{ Labels map[string]string }
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("reading docker inspect: %w", err)
	}
	cs := make([]Container, 0, len(raw))
	for _, r := range raw {
		c := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Service: r.Config.Labels["com.docker.compose.service"],
			Status: r.State.Status, Restarts: r.RestartCount}
		if r.State.Health != nil {
			c.Health = r.State.Health.Status
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b Container) int { return strings.Compare(a.Service, b.Service) })
	return cs, nil
}

// WaitHealthy waits until each of services has a running container, healthy where it has
// a health check, and returns the project's containers. A container that stopped or
// restarted is an error at once: a crash loop never turns healthy.
func (p *Project) WaitHealthy(ctx context.Context, services ...string) ([]Container, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		cs, err := p.Containers(ctx)
		if err != nil {
			return nil, err
		}
		ready := 0
		for _, c := range cs {
			if c.Status == "exited" || c.Status == "dead" || c.Restarts > 0 {
				return cs, fmt.Errorf("%s", c)
			}
			if slices.Contains(services, c.Service) && c.Status == "running" && (c.Health == "" || c.Health == "healthy") {
				ready++
			}
		}
		if ready == len(services) {
			return cs, nil
		}
		select {
		case <-ctx.Done():
			return cs, fmt.Errorf("waiting for %s to be healthy: %w", strings.Join(services, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

// Port is the host's address Docker published a service's container port on.
func (p *Project) Port(ctx context.Context, service string, port int) (netip.AddrPort, error) {
	out, err := p.Run(ctx, "port", service, fmt.Sprint(port))
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(string(out)))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("the published port of %s:%d: %w", service, port, err)
	}
	return ap, nil
}

// Subnets returns the subnets of the project's networks, by network name.
func (p *Project) Subnets(ctx context.Context) (map[string][]netip.Prefix, error) {
	ids, err := p.labelled(ctx, "network", "ls")
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	out, err := docker(ctx, nil, append([]string{"network", "inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Name string
		IPAM struct{ Config []struct{ Subnet string } }
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("reading docker network inspect: %w", err)
	}
	nets := make(map[string][]netip.Prefix, len(raw))
	for _, n := range raw {
		for _, c := range n.IPAM.Config {
			pfx, err := netip.ParsePrefix(c.Subnet)
			if err != nil {
				return nil, fmt.Errorf("network %s: %w", n.Name, err)
			}
			nets[n.Name] = append(nets[n.Name], pfx)
		}
		if _, ok := nets[n.Name]; !ok {
			nets[n.Name] = nil
		}
	}
	return nets, nil
}

// Leftovers lists whatever of the project is still on the Docker Engine: containers,
// networks and volumes carrying its label.
func (p *Project) Leftovers(ctx context.Context) ([]string, error) {
	var left []string
	for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
		ids, err := p.labelled(ctx, kind...)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			left = append(left, kind[0]+" "+id)
		}
	}
	return left, nil
}

// labelled runs a docker listing command (ps -a, network ls, volume ls) filtered by the
// project's label and returns the IDs or names it prints.
func (p *Project) labelled(ctx context.Context, list ...string) ([]string, error) {
	format := "{{.ID}}"
	if list[0] == "volume" {
		format = "{{.Name}}"
	}
	args := append(slices.Clone(list), "--filter", "label="+projectLabel+"="+p.Name, "--format", format)
	out, err := docker(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// Version is the Compose command's version, as it prints it.
func Version(ctx context.Context, tool []string) (string, error) {
	out, err := exec.CommandContext(ctx, tool[0], append(slices.Clone(tool[1:]), "version", "--short")...).Output()
	if err != nil {
		return "", fmt.Errorf("%s version: %w", strings.Join(tool, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
