package mirror

import (
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mcgate/mcgate/internal/testenv/testhealth"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// offlineMirror is a Mirror whose stores the test fills by hand; nothing
// talks to an API server (the address is never dialled).
func offlineMirror(t *testing.T) *Mirror {
	t.Helper()
	rc := &rest.Config{Host: "http://127.0.0.1:1"}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Client: cs, Dynamic: dyn, Namespace: "mc", Health: testhealth.New(), Identity: "x",
		AdvertiseAddresses: []string{"198.18.0.10"}, EgressPorts: PortRange{4200, 4299},
		Log: zerolog.Nop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addLink(t *testing.T, m *Mirror, name, cluster string, ann map[string]any, spec map[string]any) {
	t.Helper()
	s := map[string]any{
		"targetClusterName": cluster, "clusterCredentialsSecret": "creds",
		"gatewayAddress": "198.18.0.2,gw.east", "gatewayIdentity": "gw.id", "gatewayPort": "4143",
		"probeSpec": map[string]any{"path": "/ready", "port": "4191", "period": "2s"},
	}
	for k, v := range spec {
		s[k] = v
	}
	md := map[string]any{"name": name, "namespace": "mc"}
	if ann != nil {
		md["annotations"] = ann
	}
	if err := m.links.GetStore().Add(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link", "metadata": md, "spec": s,
	}}); err != nil {
		t.Fatal(err)
	}
}

func addMirror(t *testing.T, m *Mirror, name, cluster, fq, egress string) {
	t.Helper()
	if err := m.mirrors.GetStore().Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: "prod",
		Labels:      map[string]string{multicluster.LabelMirroredService: "true", multicluster.LabelClusterName: cluster},
		Annotations: map[string]string{multicluster.AnnotationRemoteFQName: fq, AnnotationEgressPorts: egress},
	}}); err != nil {
		t.Fatal(err)
	}
}

func TestEgressSet(t *testing.T) {
	m := offlineMirror(t)
	addLink(t, m, "east", "east", nil, nil)
	addLink(t, m, "north", "north", map[string]any{multicluster.AnnotationEndpointMode: multicluster.ModeDirect}, nil)
	addLink(t, m, "broken", "south", nil, map[string]any{"gatewayPort": "x"})
	addMirror(t, m, "api-east", "east", "api.prod.svc.cluster.local", "80=4201,9090=4200")
	addMirror(t, m, "db-north", "north", "db.prod.svc.cluster.local", "5432=4202") // direct mode: no listener
	addMirror(t, m, "x-south", "south", "x.prod.svc.cluster.local", "80=4203")     // invalid Link: none
	addMirror(t, m, "y-gone", "gone", "y.prod.svc.cluster.local", "80=4204")       // no Link: none
	addMirror(t, m, "z-east", "east", "z.prod.svc.cluster.local", "80=9999")       // outside the range
	gws := []string{"198.18.0.2:4143", "gw.east:4143"}
	want := []EgressEntry{
		{Port: 4200, Cluster: "east", GatewayAddresses: gws, GatewayIdentity: "gw.id", Target: "api.prod.svc.cluster.local:9090"},
		{Port: 4201, Cluster: "east", GatewayAddresses: gws, GatewayIdentity: "gw.id", Target: "api.prod.svc.cluster.local:80"},
	}
	if got := m.Egress(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Egress() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestProbeTargets(t *testing.T) {
	m := offlineMirror(t)
	addLink(t, m, "east", "east", nil, nil)
	addLink(t, m, "noprobe", "north", nil, map[string]any{"probeSpec": map[string]any{}})
	addLink(t, m, "gatewayless", "west", nil, map[string]any{"gatewayAddress": ""})
	want := []ProbeTarget{{Cluster: "east", Addresses: []string{"198.18.0.2:4191", "gw.east:4191"}, Path: "/ready",
		Period: 2 * time.Second, Timeout: 30 * time.Second, FailureThreshold: 3}}
	if got := m.probeTargets(); !reflect.DeepEqual(got, want) {
		t.Fatalf("probeTargets() = %+v, want %+v", got, want)
	}
}
