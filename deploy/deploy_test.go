package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// installCases are the option sets every test runs over.
var installCases = []struct {
	name    string
	opts    Options
	overlay string // kustomize directory that builds the same objects, if any
}{
	{"default", Options{}, "."},
	{"nodeport", Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30443}, "overlays/nodeport"},
	{"ha", Options{HA: true}, "overlays/ha"},
	{"nodeport-probe", Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30443, ProbeNodePort: 30444, ProbePort: 4192}, ""},
	{"clusterip", Options{ServiceType: corev1.ServiceTypeClusterIP}, ""},
	{"loadbalancer-ports", Options{NodePort: 30445, ProbeNodePort: 30446}, ""},
	{"identity-image-domain", Options{IdentitySecret: "gw-certs", Image: "registry.example/mcgate:v1", TrustDomain: "example.org"}, ""},
	{"ha-nodeport", Options{HA: true, ServiceType: corev1.ServiceTypeNodePort}, ""},
}

// TestKustomizeAgrees checks that Render builds what `kubectl kustomize`
// builds from the same files, so the two ways to install cannot drift.
func TestKustomizeAgrees(t *testing.T) {
	for _, c := range installCases {
		if c.overlay == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command("kubectl", "kustomize", c.overlay).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", c.overlay, err)
			}
			want, err := Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Render(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			compareSets(t, got, want)
		})
	}
}

func compareSets(t *testing.T, got, want []*unstructured.Unstructured) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]any {
		m := map[string]any{}
		for _, u := range objs {
			m[Key(u)] = prune(u.Object)
		}
		return m
	}
	g, w := index(got), index(want)
	for k := range w {
		if _, ok := g[k]; !ok {
			t.Errorf("missing %s", k)
		}
	}
	for k, v := range g {
		wv, ok := w[k]
		if !ok {
			t.Errorf("extra %s", k)
			continue
		}
		if !reflect.DeepEqual(v, wv) {
			t.Errorf("%s differs:\nrender:    %v\nkustomize: %v", k, v, wv)
		}
	}
}

// prune drops empty maps and lists, which apply treats as absent, and
// normalises numbers (YAML ints vs. converter int64s).
func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			p := prune(e)
			if p == nil {
				continue
			}
			out[k] = p
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = prune(e)
		}
		return out
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	default:
		return v
	}
}

// TestRenderOptions checks that each option lands where the gateway and
// `mcgate link` read it.
func TestRenderOptions(t *testing.T) {
	objs, err := Render(Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30443, ProbeNodePort: 30444,
		ProbePort: 4192, HA: true, IdentitySecret: "gw-certs", Image: "img:v1", TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, objs, "yaml"); err != nil {
		t.Fatal(err)
	}
	y := b.String()
	for _, want := range []string{
		"type: NodePort", "nodePort: 30443", "nodePort: 30444", "port: 4192", "secretName: gw-certs", "image: img:v1",
		"mirror.linkerd.io/gateway-identity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.example.org",
		"replicas: 3", "podAntiAffinity:", "linkerd.io/control-plane-component: gateway", "readOnlyRootFilesystem: true",
		"--identity-dir=/var/run/mcgate/identity", "fieldPath: status.podIP", "fieldPath: metadata.name",
		"kind: CustomResourceDefinition", "kind: PodDisruptionBudget", "name: linkerd-service-mirror-remote-access-default",
		"--probe-addr=:4192", "targetPort: probe",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("rendered manifests lack %q", want)
		}
	}
	// The load balancer must not expose /metrics or pprof.
	if strings.Contains(y, "targetPort: admin") {
		t.Error("a Service port targets the admin port")
	}
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" { // its schema names both fields
			continue
		}
		var b bytes.Buffer
		if err := Write(&b, []*unstructured.Unstructured{u}, "yaml"); err != nil {
			t.Fatal(err)
		}
		if s := b.String(); strings.Contains(s, "creationTimestamp") || strings.Contains(s, "status: {}") {
			t.Errorf("%s carries typed-object noise:\n%s", Key(u), s)
		}
	}
	for _, bad := range []Options{
		{ServiceType: "External"},
		{ServiceType: corev1.ServiceTypeClusterIP, NodePort: 30443},
		{ServiceType: corev1.ServiceTypeNodePort, NodePort: 80},
		{ProbePort: 70000},
	} {
		if _, err := Render(bad); err == nil {
			t.Errorf("Render(%+v) succeeded, want an error", bad)
		}
	}
}

func TestRemoteAccess(t *testing.T) {
	objs, err := RemoteAccess("mirror-west")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range objs {
		keys = append(keys, Key(u))
	}
	want := []string{"Namespace//linkerd-multicluster", "ServiceAccount/linkerd-multicluster/mirror-west",
		"Secret/linkerd-multicluster/mirror-west-token", "ClusterRole//mirror-west", "ClusterRoleBinding//mirror-west"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("objects %v, want %v", keys, want)
	}
	crb := objs[4].Object
	if n, _, _ := unstructured.NestedString(crb, "roleRef", "name"); n != "mirror-west" {
		t.Errorf("roleRef.name %q", n)
	}
	subj, _, _ := unstructured.NestedSlice(crb, "subjects")
	if n := subj[0].(map[string]any)["name"]; n != "mirror-west" {
		t.Errorf("subject name %v", n)
	}
}

// TestServerDryRun applies every install variant, in YAML and in JSON,
// with `kubectl apply --dry-run=server` to both real clusters: the API
// server validates each object (schemas, node port range, RBAC rules).
func TestServerDryRun(t *testing.T) {
	env := kubetest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, cl := range []*kubetest.Cluster{env.East, env.West} {
		// Server-side dry run checks namespaced objects against an existing
		// namespace; the install's own Namespace is dry-run too.
		_, err := cl.Client.CoreV1().Namespaces().Create(ctx,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	remote, err := RemoteAccess("mirror-other")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range installCases {
		objs, err := Render(c.opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"yaml", "json"} {
			for _, cl := range []struct {
				name, kubeconfig string
			}{{"east", env.East.Kubeconfig}, {"west", env.West.Kubeconfig}} {
				name := fmt.Sprintf("%s-%s-%s", c.name, format, cl.name)
				t.Run(name, func(t *testing.T) { dryRun(t, dir, name, cl.kubeconfig, objs, format) })
			}
		}
	}
	t.Run("allow", func(t *testing.T) { dryRun(t, dir, "allow", env.East.Kubeconfig, remote, "yaml") })
}

func dryRun(t *testing.T, dir, name, kubeconfig string, objs []*unstructured.Unstructured, format string) {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, objs, format); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+"."+format)
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	// One line per object: "<kind>/<name> created (server dry run)".
	if n := strings.Count(string(out), "(server dry run)"); n != len(objs) {
		t.Fatalf("%d objects dry-run, want %d:\n%s", n, len(objs), out)
	}
}
