package deploy

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestLinkClusterDomain: `mcgate link` takes the target's cluster domain
// from its gateway Service unless given, and refuses a given one the
// Service contradicts. The rest of link runs against real clusters in
// test/deploy.
func TestLinkClusterDomain(t *testing.T) {
	gateway := func(annotations map[string]string) *corev1.Service {
		a := map[string]string{AnnotationGatewayIdentity: GatewayIdentity("")}
		for k, v := range annotations {
			a[k] = v
		}
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: GatewayName, Namespace: Namespace, Annotations: a},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
				{Name: PortNameGateway, Port: 4143}, {Name: PortNameProbe, Port: 4191}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.18.0.2"}}}},
		}
	}
	published := map[string]string{AnnotationClusterDomain: "east.example"}
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service // nil: no gateway Service in the target
		given   string
		want    string
		wantErr []string // parts of the error
	}{
		{"published", gateway(published), "", "east.example", nil},
		{"not published", gateway(nil), "", "cluster.local", nil},
		{"given, not published", gateway(nil), "other.example", "other.example", nil},
		{"given, agrees", gateway(published), "east.example", "east.example", nil},
		{"given, agrees up to case and a trailing dot", gateway(published), "East.example.", "east.example", nil},
		{"given, contradicted", gateway(published), "cluster.local", "",
			[]string{`--cluster-domain "cluster.local"`, `"east.example"`, "linkerd-multicluster/linkerd-gateway", "mcgate.io/cluster-domain",
				"leave out --cluster-domain", "mcgate install --cluster-domain cluster.local"}},
		{"no gateway Service", nil, "", "cluster.local", nil},
		{"no gateway Service, given", nil, "other.example", "other.example", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.svc != nil {
				client = fake.NewClientset(tc.svc)
			}
			o := LinkOptions{ClusterName: "east", ClusterDomain: tc.given, GatewayAddresses: "198.18.0.2",
				GatewayIdentity: GatewayIdentity("")}
			o.setDefaults()
			spec, err := gatewaySpec(context.Background(), client, o)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("targetClusterDomain %q, want an error", spec.TargetClusterDomain)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.TargetClusterDomain != tc.want {
				t.Errorf("targetClusterDomain %q, want %q", spec.TargetClusterDomain, tc.want)
			}
		})
	}
}
