package mirror

// One step of the controller at a time, against fake clientsets: the
// informer stores are filled by hand and nothing runs in the background.
// The controller on real API servers is tested in test/mirror.

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/internal/testenv/testhealth"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// stepper is a controller over fake clientsets, and the remote cluster's
// watcher as a pair of stores.
type stepper struct {
	t      *testing.T
	m      *Mirror
	c      *controller
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	remote *remote
	events *record.FakeRecorder
	health *testhealth.Health
}

const (
	testNS      = "mc"
	testCluster = "east"
)

func testLinkObject() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link",
		"metadata": map[string]any{"name": testCluster, "namespace": testNS, "generation": int64(1)},
		"spec": map[string]any{
			"targetClusterName": testCluster, "clusterCredentialsSecret": "creds",
			"gatewayAddress": "198.18.0.2", "gatewayIdentity": "gw.id", "gatewayPort": "4143",
			"selector": map[string]any{"matchLabels": map[string]any{"mirror.linkerd.io/exported": "true"}},
		},
	}}
}

// newStepper is a leader with the Link east, watching east (its remote
// stores are empty), and namespace prod in this cluster.
func newStepper(t *testing.T) *stepper {
	t.Helper()
	link := testLinkObject()
	s := &stepper{t: t, client: fake.NewClientset(), health: testhealth.New(), events: record.NewFakeRecorder(10),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{multicluster.LinkGVR: "LinkList"}, link.DeepCopy())}
	m, err := New(Config{Client: s.client, Dynamic: s.dyn, Namespace: testNS, Health: s.health, Identity: "x",
		AdvertiseAddresses: []string{"198.18.0.10"}, EgressPorts: PortRange{4200, 4299},
		Log: zerolog.Nop(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s.m, s.c = m, newController(m, s.events)
	s.add(m.links, link)
	s.add(m.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}})
	l, err := multicluster.LinkFromUnstructured(link)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := l.Config()
	if err != nil {
		t.Fatal(err)
	}
	s.remote = &remote{cancel: func() {},
		services: cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Service{}, 0,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		slices: cache.NewSharedIndexInformer(&cache.ListWatch{}, &discoveryv1.EndpointSlice{}, 0,
			cache.Indexers{indexByService: sliceServiceKey})}
	st := s.c.stateOf(testCluster)
	st.cfg, st.cluster, st.remote, st.gatewayIPs = cfg, testCluster, s.remote, []string{"198.18.0.2"}
	t.Cleanup(s.c.q.ShutDown)
	return s
}

func (s *stepper) add(inf cache.SharedIndexInformer, obj any) {
	s.t.Helper()
	if err := inf.GetStore().Add(obj); err != nil {
		s.t.Fatal(err)
	}
}

// exportRemote puts an exported service with a ready endpoint into east.
func (s *stepper) exportRemote(name string) {
	s.add(s.remote.services, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", ResourceVersion: "7",
			Labels: map[string]string{"mirror.linkerd.io/exported": "true"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	})
	s.add(s.remote.slices, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-x", Namespace: "prod", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.50"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	})
}

// sync copies what the fake API server holds of a mirror into the
// informer stores, as the watch would.
func (s *stepper) sync(name string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	s.t.Helper()
	ctx := s.t.Context()
	svc, err := s.client.CoreV1().Services("prod").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	sl, err := s.client.DiscoveryV1().EndpointSlices("prod").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.m.mirrors.GetStore().Update(svc); err != nil {
		s.t.Fatal(err)
	}
	if err := s.m.slices.GetStore().Update(sl); err != nil {
		s.t.Fatal(err)
	}
	return svc, sl
}

// writes is the mirror_writes_total sample of resource and op.
func (s *stepper) writes(resource, op string) float64 {
	s.t.Helper()
	var m dto.Metric
	if err := s.m.met.writes.WithLabelValues(resource, op).Write(&m); err != nil {
		s.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func (s *stepper) reconcileService(name string) {
	s.t.Helper()
	if err := s.c.reconcileService(s.t.Context(), testCluster, "prod", name); err != nil {
		s.t.Fatal(err)
	}
}

func TestReconcileServiceStep(t *testing.T) {
	s := newStepper(t)
	s.exportRemote("api")
	s.reconcileService("api")

	svc, sl := s.sync("api-east")
	if svc.Labels[multicluster.LabelClusterName] != testCluster || svc.Annotations[AnnotationEgressPorts] != "8080=4200" ||
		svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Fatalf("mirror %+v", svc)
	}
	if len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "198.18.0.10" || !*sl.Endpoints[0].Conditions.Ready ||
		*sl.Ports[0].Port != 4200 {
		t.Fatalf("slice %+v", sl)
	}
	if got := s.c.links[testCluster].services["prod/api"].Conditions[0]; got.Reason != multicluster.ReasonMirrored {
		t.Fatalf("status entry %+v", got)
	}
	if s.writes("service", "apply") != 1 || s.writes("endpointslice", "apply") != 1 {
		t.Fatalf("writes: service %v, slice %v; want 1 each", s.writes("service", "apply"), s.writes("endpointslice", "apply"))
	}

	// A write loop cannot start: reconciles of the unchanged mirror write nothing.
	before := len(s.client.Actions())
	s.reconcileService("api")
	s.reconcileService("api")
	if n := len(s.client.Actions()) - before; n != 0 {
		t.Fatalf("%d API calls for an unchanged mirror: %v", n, s.client.Actions()[before:])
	}

	// Hand edits of what the mirror owns are undone in one reconcile. The
	// fake clientset keeps resourceVersions as given; an API server gives
	// every write a new one, which the mirror relies on (writeMemo).
	svc.ResourceVersion, sl.ResourceVersion = svc.ResourceVersion+"-edited", sl.ResourceVersion+"-edited"
	svc.Spec.Selector = map[string]string{"app": "api"}
	svc.Spec.Ports[0].Port = 9999
	if _, err := s.client.CoreV1().Services("prod").Update(t.Context(), svc, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	sl.Endpoints[0].Conditions.Ready = ptr.To(false)
	if _, err := s.client.DiscoveryV1().EndpointSlices("prod").Update(t.Context(), sl, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	s.sync("api-east")
	s.reconcileService("api")
	svc, sl = s.sync("api-east")
	if len(svc.Spec.Selector) != 0 || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 {
		t.Fatalf("mirror not restored: selector %v ports %+v", svc.Spec.Selector, svc.Spec.Ports)
	}
	if !*sl.Endpoints[0].Conditions.Ready {
		t.Fatalf("slice not restored: %+v", sl.Endpoints)
	}
	if s.writes("service", "apply") != 1 || s.writes("service", "patch") != 1 || s.writes("endpointslice", "apply") != 2 {
		t.Fatalf("repair writes: service apply %v patch %v, slice apply %v; want 1, 1, 2",
			s.writes("service", "apply"), s.writes("service", "patch"), s.writes("endpointslice", "apply"))
	}
	before = len(s.client.Actions())
	s.reconcileService("api")
	if n := len(s.client.Actions()) - before; n != 0 {
		t.Fatalf("%d API calls after the repair: %v", n, s.client.Actions()[before:])
	}
}

func TestReconcileServiceMissingNamespace(t *testing.T) {
	s := newStepper(t)
	s.exportRemote("api")
	if err := s.m.namespaces.GetStore().Delete(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}); err != nil {
		t.Fatal(err)
	}
	s.reconcileService("api")
	s.reconcileService("api") // the same condition again: no second event
	if got := s.c.links[testCluster].services["prod/api"].Conditions[0]; got.Reason != multicluster.ReasonMissingNamespace {
		t.Fatalf("status entry %+v", got)
	}
	if n := len(s.client.Actions()); n != 0 {
		t.Fatalf("%d API calls: %v", n, s.client.Actions())
	}
	if len(s.events.Events) != 1 {
		t.Fatalf("%d events, want 1", len(s.events.Events))
	}
	if e := <-s.events.Events; e != "Normal ServiceMirroringSkipped Skipped mirroring service prod/api: namespace does not exist" {
		t.Fatalf("event %q", e)
	}
}

func TestLinkTeardownStep(t *testing.T) {
	s := newStepper(t)
	s.exportRemote("api")
	s.reconcileService("api")
	s.sync("api-east")
	stopped := false
	s.remote.cancel = func() { stopped = true }

	if err := s.m.links.GetStore().Delete(testLinkObject()); err != nil {
		t.Fatal(err)
	}
	if err := s.c.reconcileLink(t.Context(), testCluster); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.CoreV1().Services("prod").Get(t.Context(), "api-east", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("mirror of a deleted Link: %v", err)
	}
	if !stopped {
		t.Error("the deleted Link's watcher still runs")
	}
	if _, ok := s.c.links[testCluster]; ok {
		t.Error("the deleted Link's state is kept")
	}
	if s.c.alloc.inUse() != 0 {
		t.Errorf("%d egress ports still allocated", s.c.alloc.inUse())
	}
}

func TestWriteStatusStep(t *testing.T) {
	s := newStepper(t)
	s.exportRemote("api")
	s.reconcileService("api")
	ctx := t.Context()
	if err := s.c.writeStatus(ctx, testCluster); err != nil {
		t.Fatal(err)
	}
	u, err := s.dyn.Resource(multicluster.LinkGVR).Namespace(testNS).Get(ctx, testCluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := multicluster.LinkFromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Status.MirrorServices) != 1 || l.Status.MirrorServices[0].RemoteRef.Name != "api" ||
		len(l.Status.Conditions) != 2 { // Valid, Credentials; no probe: no GatewayAlive
		t.Fatalf("status %+v", l.Status)
	}
	if s.writes("link", "status") != 1 {
		t.Fatalf("%v status writes, want 1", s.writes("link", "status"))
	}
	// The Link as written comes back through the informer: nothing to write.
	s.add(s.m.links, u)
	if err := s.c.writeStatus(ctx, testCluster); err != nil {
		t.Fatal(err)
	}
	if s.writes("link", "status") != 1 {
		t.Fatalf("%v status writes after an unchanged one, want 1", s.writes("link", "status"))
	}
}
