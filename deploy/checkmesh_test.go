package deploy

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// TestCheckMeshedClients: where Linkerd's control plane runs, a Link in
// egress mode (the default) is a warning whose hint is the exact command
// that switches it to direct mode; without Linkerd, or in direct mode, the
// check passes.
func TestCheckMeshedClients(t *testing.T) {
	link := func(name, mode, gateway string) *multicluster.Link {
		l := &multicluster.Link{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace}}
		if mode != "" {
			l.Annotations = map[string]string{multicluster.AnnotationEndpointMode: mode}
		}
		l.Spec.GatewayAddress = gateway
		return l
	}
	config := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-config", Namespace: "linkerd"}}
	destination := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-destination", Namespace: "linkerd"}}
	egressEast, directWest := link("east", "", "198.18.0.2"), link("west", multicluster.ModeDirect, "198.18.0.3")
	for _, c := range []struct {
		name     string
		objects  []runtime.Object
		links    []*multicluster.Link
		forbid   bool
		warning  bool
		wantHint string
	}{
		{name: "no linkerd", links: []*multicluster.Link{egressEast}},
		{name: "linkerd-config, egress link", objects: []runtime.Object{config}, links: []*multicluster.Link{egressEast, directWest}, warning: true,
			wantHint: "kubectl -n linkerd-multicluster annotate --overwrite link/east mcgate.io/endpoint-mode=direct"},
		{name: "destination only, explicit egress", objects: []runtime.Object{destination}, links: []*multicluster.Link{link("east", multicluster.ModeEgress, "gw.example"), link("south", "", "198.18.0.4")}, warning: true,
			wantHint: "annotate --overwrite link/east link/south mcgate.io/endpoint-mode=direct"},
		{name: "linkerd, direct link", objects: []runtime.Object{config}, links: []*multicluster.Link{directWest}},
		{name: "linkerd, gatewayless link", objects: []runtime.Object{config}, links: []*multicluster.Link{link("east", "", "")}},
		{name: "cannot read linkerd namespace", forbid: true, links: []*multicluster.Link{egressEast}, warning: true, wantHint: "kubectl -n linkerd get configmap linkerd-config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.objects...)
			if c.forbid {
				client.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "linkerd-config", nil)
				})
			}
			ch := &checker{cfg: CheckConfig{Client: client, Namespace: Namespace, LinkerdNamespace: "linkerd"}, links: c.links}
			ch.checkMeshedClients(context.Background())
			if len(ch.results) != 1 {
				t.Fatalf("results: %+v", ch.results)
			}
			r := ch.results[0]
			if r.Name != CheckMeshedClients || r.Warning != c.warning || r.OK == c.warning {
				t.Fatalf("result %+v, want warning=%v", r, c.warning)
			}
			if !strings.Contains(r.Hint, c.wantHint) {
				t.Errorf("hint %q, want it to contain %q", r.Hint, c.wantHint)
			}
			if c.warning && !c.forbid && (strings.Contains(r.Detail, "west") || !strings.Contains(r.Detail, "egress mode")) {
				t.Errorf("detail %q: want the egress Links only", r.Detail)
			}
		})
	}
}
