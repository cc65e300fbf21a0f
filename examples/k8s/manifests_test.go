// Package k8s tests the Kubernetes manifests beside it: each document decodes strictly
// into Kubernetes' own API types (an unknown or misspelt field is an error), the
// references between them resolve, and the pktspan and collector configurations they
// carry say what the README promises. gateway_e2e_test.go runs the gateway's collector
// configuration in the real collector.
//
// A Go module of its own, so that pktspan's go.mod does not carry Kubernetes' modules.
package k8s

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/pktspan/pktspan/config"
)

// manifests are the files `kubectl apply -f` takes, in the README's order.
var manifests = []string{"namespace.yaml", "daemonset.yaml", "gateway.yaml"}

// objects is every document of the manifests, decoded.
type objects struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	daemonSets      []*appsv1.DaemonSet
	deployments     []*appsv1.Deployment
}

// load decodes every document of the manifests strictly into the type its apiVersion and
// kind name.
func load(t *testing.T) objects {
	t.Helper()
	var o objects
	for _, file := range manifests {
		docs, err := documents(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docs {
			if err := o.decode(doc); err != nil {
				t.Fatalf("%s document %d: %v", file, i+1, err)
			}
		}
	}
	return o
}

// strict decodes YAML as the API server does with fieldValidation=Strict: names are
// matched case-sensitively, and a field the type does not have, or a key given twice, is
// an error.
var strict = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// decode adds one document to o, decoded strictly into the type its apiVersion and kind
// name. A kind not listed here is an error, so that a new one gets its checks.
func (o *objects) decode(doc []byte) error {
	obj, _, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return err
	}
	switch v := obj.(type) {
	case *corev1.Namespace:
		o.namespaces = append(o.namespaces, v)
	case *corev1.ServiceAccount:
		o.serviceAccounts = append(o.serviceAccounts, v)
	case *corev1.ConfigMap:
		o.configMaps = append(o.configMaps, v)
	case *corev1.Service:
		o.services = append(o.services, v)
	case *appsv1.DaemonSet:
		o.daemonSets = append(o.daemonSets, v)
	case *appsv1.Deployment:
		o.deployments = append(o.deployments, v)
	default:
		return fmt.Errorf("%T has no checks here", obj)
	}
	return nil
}

// documents splits a YAML file into its documents, as kubectl does.
func documents(file string) ([][]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops whole-line comments, so that a document of comments alone is seen
// as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func TestDecodingRefusesAMisspeltFieldAndAnUnknownKind(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostPid: true\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIP: None\n  clusterIP: 10.0.0.1\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		var o objects
		if err := o.decode([]byte(doc)); err == nil {
			t.Errorf("decoded without an error:\n%s", doc)
		}
	}
}

func TestManifestsDecodeStrictlyAsKubernetesTypes(t *testing.T) {
	o := load(t)
	if len(o.daemonSets) != 1 || len(o.deployments) != 1 || len(o.namespaces) != 1 {
		t.Fatalf("%d DaemonSets, %d Deployments, %d Namespaces; want one of each", len(o.daemonSets), len(o.deployments), len(o.namespaces))
	}
	ns := o.namespaces[0].Name
	for _, m := range o.metas() {
		if m.Namespace != ns {
			t.Errorf("%s is in namespace %q, not %q (namespace.yaml)", m.Name, m.Namespace, ns)
		}
	}
}

func (o objects) metas() []metav1.ObjectMeta {
	var ms []metav1.ObjectMeta
	for _, x := range o.serviceAccounts {
		ms = append(ms, x.ObjectMeta)
	}
	for _, x := range o.configMaps {
		ms = append(ms, x.ObjectMeta)
	}
	for _, x := range o.services {
		ms = append(ms, x.ObjectMeta)
	}
	for _, x := range o.daemonSets {
		ms = append(ms, x.ObjectMeta)
	}
	for _, x := range o.deployments {
		ms = append(ms, x.ObjectMeta)
	}
	return ms
}

func TestWorkloadsReferOnlyToWhatTheManifestsDeclare(t *testing.T) {
	o := load(t)
	for _, w := range []struct {
		name     string
		selector *metav1.LabelSelector
		template corev1.PodTemplateSpec
	}{
		{o.daemonSets[0].Name, o.daemonSets[0].Spec.Selector, o.daemonSets[0].Spec.Template},
		{o.deployments[0].Name, o.deployments[0].Spec.Selector, o.deployments[0].Spec.Template},
	} {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: selector %v does not select its own pods (labels %v): %v", w.name, w.selector, w.template.Labels, err)
		}
		spec := w.template.Spec
		if sa := spec.ServiceAccountName; sa != "" && !slices.ContainsFunc(o.serviceAccounts, func(s *corev1.ServiceAccount) bool { return s.Name == sa }) {
			t.Errorf("%s: service account %q is not declared", w.name, sa)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil && o.configMap(v.ConfigMap.Name) == nil {
				t.Errorf("%s: volume %s: config map %q is not declared", w.name, v.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range spec.Containers {
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s/%s mounts volume %q, which the pod does not have", w.name, c.Name, m.Name)
				}
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
				c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: want CPU and memory requests and limits, have %v", w.name, c.Name, c.Resources)
			}
		}
	}
	for _, s := range o.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		if len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(o.deployments[0].Spec.Template.Labels)) {
			t.Errorf("service %s selects %v, not the gateway's pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if !slices.ContainsFunc(o.deployments[0].Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool {
				return cp.Name == p.TargetPort.String() || cp.ContainerPort == p.TargetPort.IntVal
			}) {
				t.Errorf("service %s port %s targets %s, which the gateway's container does not declare", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
}

func (o objects) configMap(name string) *corev1.ConfigMap {
	for _, c := range o.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (o objects) service(name string) *corev1.Service {
	for _, s := range o.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func TestDaemonSetRunsPrivilegedInTheHostPIDNamespaceWithTheKernelsMounts(t *testing.T) {
	ds := load(t).daemonSets[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is off: pktspan cannot name the network namespaces of the node's processes")
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the container is not privileged: the kernel refuses pktspan's BPF programs")
	}
	hostPaths := map[string]string{} // volume name → host path
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]corev1.VolumeMount{} // host path → its mount
	for _, m := range c.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok {
			mounted[p] = m
		}
	}
	for _, p := range []string{"/sys/kernel/btf", "/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup"} {
		m, ok := mounted[p]
		if !ok {
			t.Errorf("the host's %s is not mounted", p)
			continue
		}
		// pktspan looks for each at the host's path.
		if m.MountPath != p {
			t.Errorf("the host's %s is mounted at %s", p, m.MountPath)
		}
	}
	if !mounted["/sys/kernel/btf"].ReadOnly {
		t.Error("/sys/kernel/btf is mounted writable; pktspan only reads it")
	}
}

func TestDaemonSetNamesTheNodeThroughTheDownwardAPI(t *testing.T) {
	c := load(t).daemonSets[0].Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for i, e := range c.Env {
		if _, ok := env[e.Name]; ok {
			t.Errorf("%s is set twice", e.Name)
		}
		env[e.Name] = e
		// Kubernetes expands $(VAR) only from variables defined before.
		for _, ref := range refs(e.Value) {
			if !slices.ContainsFunc(c.Env[:i], func(p corev1.EnvVar) bool { return p.Name == ref }) {
				t.Errorf("%s refers to $(%s), which is not defined before it", e.Name, ref)
			}
		}
	}
	node := env["NODE_NAME"]
	if node.ValueFrom == nil || node.ValueFrom.FieldRef == nil || node.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Fatalf("NODE_NAME does not come from spec.nodeName: %+v", node)
	}
	attrs := map[string]string{}
	for kv := range strings.SplitSeq(env["OTEL_RESOURCE_ATTRIBUTES"].Value, ",") {
		k, v, _ := strings.Cut(kv, "=")
		attrs[k] = v
	}
	for _, k := range []string{"host.name", "k8s.node.name"} {
		if attrs[k] != "$(NODE_NAME)" {
			t.Errorf("OTEL_RESOURCE_ATTRIBUTES sets %s to %q, want $(NODE_NAME)", k, attrs[k])
		}
	}
}

// refs lists the $(NAME) references in an environment variable's value.
func refs(v string) []string {
	var out []string
	for {
		i := strings.Index(v, "$(")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(v[i:], ')')
		if j < 0 {
			return out
		}
		out = append(out, v[i+2:i+j])
		v = v[i+j+1:]
	}
}

func TestDaemonSetRunsOnEveryNode(t *testing.T) {
	spec := load(t).daemonSets[0].Spec.Template.Spec
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %+v do not tolerate every taint", spec.Tolerations)
	}
	if len(spec.NodeSelector) > 0 || spec.Affinity != nil {
		t.Errorf("the pods are kept off some nodes: nodeSelector %v, affinity %v", spec.NodeSelector, spec.Affinity)
	}
}

// TestDaemonSetsPktspanConfigurationLoads runs the pod's arguments and its ConfigMap's
// file through pktspan's own configuration loading and validation.
func TestDaemonSetsPktspanConfigurationLoads(t *testing.T) {
	o := load(t)
	spec := o.daemonSets[0].Spec.Template.Spec
	files := mountedFiles(t, o, spec)
	dir := t.TempDir()
	var args []string
	for _, a := range spec.Containers[0].Args {
		name, value, _ := strings.Cut(a, "=")
		switch name {
		case "--config":
			content, ok := files[value]
			if !ok {
				t.Fatalf("--config %s is no file of a mounted config map", value)
			}
			value = filepath.Join(dir, "pktspan.yaml")
			if err := os.WriteFile(value, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		case "--ready-file":
			// In the pod, an emptyDir; here, a directory of the test's.
			if !mountedDir(spec.Containers[0], filepath.Dir(value)) {
				t.Errorf("--ready-file %s is in no mounted volume", value)
			}
			value = filepath.Join(dir, "ready")
		}
		args = append(args, name+"="+value)
	}
	cfg, err := config.Load(config.NewFlagSet(), args, nil)
	if err != nil {
		t.Fatalf("pktspan %v: %v", spec.Containers[0].Args, err)
	}
	if cfg.Correlate.Mode != "http" || cfg.Output != "none" || !cfg.OTLP.Insecure {
		t.Errorf("correlate %q, output %q, otlp.insecure %v; want http, none, true", cfg.Correlate.Mode, cfg.Output, cfg.OTLP.Insecure)
	}
	// The gateway, a Collector, takes snappy: less CPU on every node than gzip.
	if cfg.OTLP.Compression != "snappy" {
		t.Errorf("otlp.compression %q, want snappy", cfg.OTLP.Compression)
	}
	// The spans go to the gateway's Service, on a port it has.
	host, port, err := net.SplitHostPort(cfg.OTLP.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	svcName, rest, _ := strings.Cut(host, ".")
	svc := o.service(svcName)
	if svc == nil || rest != svc.Namespace+".svc.cluster.local" {
		t.Fatalf("otlp.endpoint %s is not a Service of the manifests", cfg.OTLP.Endpoint)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("otlp.endpoint %s: service %s has no port %s", cfg.OTLP.Endpoint, svc.Name, port)
	}
}

// mountedFiles maps the path of each config-map file the pod's first container sees to
// its content.
func mountedFiles(t *testing.T, o objects, spec corev1.PodSpec) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, m := range spec.Containers[0].VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			for k, content := range o.configMap(v.ConfigMap.Name).Data {
				files[filepath.Join(m.MountPath, k)] = content
			}
		}
	}
	return files
}

func mountedDir(c corev1.Container, dir string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
}

// gatewayConfig is the part of the gateway's collector configuration the tests read.
type gatewayConfig struct {
	Receivers map[string]struct {
		Protocols map[string]struct {
			Endpoint string `json:"endpoint"`
		} `json:"protocols"`
	} `json:"receivers"`
	Processors struct {
		TailSampling struct {
			Policies []struct {
				Type       string `json:"type"`
				StatusCode struct {
					StatusCodes []string `json:"status_codes"`
				} `json:"status_code"`
			} `json:"policies"`
		} `json:"tail_sampling"`
	} `json:"processors"`
	Exporters struct {
		LoadBalancing struct {
			RoutingKey string `json:"routing_key"`
			Resolver   map[string]struct {
				Hostname string `json:"hostname"`
				Port     string `json:"port"`
			} `json:"resolver"`
		} `json:"load_balancing"`
	} `json:"exporters"`
	Service struct {
		Pipelines map[string]struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
	} `json:"service"`
}

// gatewayFile returns the gateway's collector configuration as the pod sees it: the
// file its --config names.
func gatewayFile(t *testing.T, o objects) string {
	t.Helper()
	spec := o.deployments[0].Spec.Template.Spec
	files := mountedFiles(t, o, spec)
	for _, a := range spec.Containers[0].Args {
		if path, ok := strings.CutPrefix(a, "--config="); ok {
			content, ok := files[path]
			if !ok {
				t.Fatalf("--config %s is no file of a mounted config map", path)
			}
			return content
		}
	}
	t.Fatalf("the gateway's container has no --config= among %v", spec.Containers[0].Args)
	return ""
}

func TestGatewayBalancesByTraceIDAcrossItsReplicas(t *testing.T) {
	o := load(t)
	var cfg gatewayConfig
	if err := yaml.Unmarshal([]byte(gatewayFile(t, o)), &cfg); err != nil {
		t.Fatal(err)
	}
	lb := cfg.Exporters.LoadBalancing
	if lb.RoutingKey != "traceID" {
		t.Errorf("load_balancing routes by %q, want traceID", lb.RoutingKey)
	}
	dns, ok := lb.Resolver["dns"]
	if !ok || len(lb.Resolver) != 1 {
		t.Fatalf("load_balancing resolvers %v, want dns alone", lb.Resolver)
	}
	// The resolver asks the headless Service for every replica's address.
	svcName, rest, _ := strings.Cut(dns.Hostname, ".")
	svc := o.service(svcName)
	if svc == nil || rest != svc.Namespace+".svc.cluster.local" {
		t.Fatalf("the resolver's hostname %s is not a Service of the manifests", dns.Hostname)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service %s has a cluster IP: DNS would give one address, not each replica's", svc.Name)
	}
	if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != dns.Port {
		t.Errorf("service %s ports %v; the resolver uses %s", svc.Name, svc.Spec.Ports, dns.Port)
	}
	// That port is the sampling pipeline's receiver, and only that pipeline samples.
	balance, sample := cfg.Service.Pipelines["traces/balance"], cfg.Service.Pipelines["traces/sample"]
	if !slices.Equal(balance.Exporters, []string{"load_balancing"}) || len(balance.Processors) > 0 {
		t.Errorf("traces/balance: processors %v, exporters %v; want none and load_balancing", balance.Processors, balance.Exporters)
	}
	if len(sample.Receivers) != 1 {
		t.Fatalf("traces/sample receives from %v, want one receiver", sample.Receivers)
	}
	grpc := cfg.Receivers[sample.Receivers[0]].Protocols["grpc"]
	if _, port, _ := net.SplitHostPort(grpc.Endpoint); port != dns.Port {
		t.Errorf("traces/sample listens on %q, not on the resolver's port %s", grpc.Endpoint, dns.Port)
	}
	if !slices.Contains(sample.Processors, "tail_sampling") {
		t.Errorf("traces/sample processors %v lack tail_sampling", sample.Processors)
	}
}

func TestGatewayKeepsOnlyTracesHoldingAnError(t *testing.T) {
	var cfg gatewayConfig
	if err := yaml.Unmarshal([]byte(gatewayFile(t, load(t))), &cfg); err != nil {
		t.Fatal(err)
	}
	ps := cfg.Processors.TailSampling.Policies
	if len(ps) != 1 || ps[0].Type != "status_code" || !slices.Equal(ps[0].StatusCode.StatusCodes, []string{"ERROR"}) {
		t.Errorf("tail_sampling policies %+v, want one: status_code ERROR", ps)
	}
}
