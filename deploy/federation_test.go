package deploy

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func svc(ns, name string, labels, annotations map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations}}
}

// TestFederatedServices: only Services shaped as the mirror writes
// federated ones are listed (a mirror of a remote service named
// "x-federated" is not one), members local first then by name.
func TestFederatedServices(t *testing.T) {
	mirrored := map[string]string{"mirror.linkerd.io/mirrored-service": "true"}
	client := fake.NewClientset(
		svc("prod", "api-federated", mirrored, map[string]string{
			annotationRemoteDiscovery: "api@north,api@east", annotationLocalDiscovery: "api",
			annotationClusterWeights: "west=80,east=20", annotationEgressPorts: "8080=4201"}),
		svc("prod", "db-federated", mirrored, map[string]string{annotationRemoteDiscovery: "db@east"}),
		// A mirror of east's "x-federated": it has a cluster name.
		svc("prod", "x-federated-east", map[string]string{"mirror.linkerd.io/mirrored-service": "true",
			"mirror.linkerd.io/cluster-name": "east"}, map[string]string{annotationRemoteDiscovery: "x@east"}),
		// A user's Service that only looks like one by name.
		svc("prod", "y-federated", nil, nil),
	)
	got, err := FederatedServices(context.Background(), client)
	if err != nil {
		t.Fatal(err)
	}
	want := []FederatedStatus{
		{Namespace: "prod", Service: "api-federated", Members: []string{"local", "east", "north"},
			Weights: "west=80,east=20", EgressPorts: "8080=4201"},
		{Namespace: "prod", Service: "db-federated", Members: []string{"east"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("federated services:\n got %+v\nwant %+v", got, want)
	}

	rows := []GatewayStatus{{ClusterName: "east"}, {ClusterName: "north"}, {ClusterName: "south"}}
	fams, err := parseMetrics([]byte("# TYPE mcgate_ejected_endpoints gauge\nmcgate_ejected_endpoints{cluster=\"north\"} 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	addFederation(rows, got, fams)
	if rows[0].FederatedServices != 2 || rows[1].FederatedServices != 1 || rows[2].FederatedServices != 0 ||
		rows[1].EjectedEndpoints != 1 || rows[0].EjectedEndpoints != 0 {
		t.Errorf("rows: %+v", rows)
	}

	var b bytes.Buffer
	if err := WriteFederated(&b, got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "prod/api-federated") || !strings.Contains(b.String(), "local,east,north") ||
		!strings.Contains(b.String(), "local,nearest") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	if err := WriteFederated(&b, nil); err != nil || b.Len() != 0 {
		t.Errorf("no federated services must print nothing, got %q", b.String())
	}
}
