package deploy

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRenderOptions checks that each option lands where the gateway and
// `mcgate link` read it.
func TestRenderOptions(t *testing.T) {
	objs, err := Render(Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30443, ProbeNodePort: 30444,
		ProbePort: 4192, HA: true, IdentitySecret: "gw-certs", Image: "img:v1", TrustDomain: "example.org", ClusterDomain: "east.example"})
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
		"--cluster-domain=east.example", "mcgate.io/cluster-domain: east.example",
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
		{ClusterDomain: "Cluster_Local"},
		{ServiceAnnotations: map[string]string{AnnotationClusterDomain: "cluster.local"}},
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

// TestRenderClusterDomain: the gateway's flag and its Service's annotation
// carry the same domain, the default one included, and the flag appears once.
func TestRenderClusterDomain(t *testing.T) {
	for _, tc := range []struct{ given, want string }{{"", "cluster.local"}, {"east.example", "east.example"}} {
		objs, err := Render(Options{ClusterDomain: tc.given})
		if err != nil {
			t.Fatal(err)
		}
		dep, svc, err := GatewayObjects(objs)
		if err != nil {
			t.Fatal(err)
		}
		var flags []string
		for _, a := range container(&dep.Spec.Template.Spec).Args {
			if strings.HasPrefix(a, "--cluster-domain") {
				flags = append(flags, a)
			}
		}
		if len(flags) != 1 || flags[0] != "--cluster-domain="+tc.want || svc.Annotations[AnnotationClusterDomain] != tc.want {
			t.Errorf("ClusterDomain %q: args %v, annotation %q; want --cluster-domain=%s on both", tc.given, flags,
				svc.Annotations[AnnotationClusterDomain], tc.want)
		}
	}
}
