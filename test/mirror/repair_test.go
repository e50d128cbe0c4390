package mirror_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// metric sums the samples of a counter or gauge of one mirror whose labels
// include want.
func (f *fixture) metric(identity, name string, want map[string]string) float64 {
	f.t.Helper()
	mfs, err := f.metrics[identity].Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// mirrorWrites counts the writes of mirror Services and EndpointSlices.
func (f *fixture) mirrorWrites(identity string) float64 {
	return f.metric(identity, "mirror_writes_total", map[string]string{"resource": "service"}) +
		f.metric(identity, "mirror_writes_total", map[string]string{"resource": "endpointslice"})
}

// recheckAll makes the leader reconcile every mirror (a gateway verdict
// "changed") and waits until it has, twice: the kAll key and at least one
// service each time.
func (f *fixture) recheckAll(identity string) {
	f.t.Helper()
	for range 2 {
		before := f.metric(identity, "mirror_reconciles_total", map[string]string{"result": "ok"})
		f.health.SetAlive(f.cluster, true)
		wait.For(f.t, "a re-check of every mirror", func() (bool, string) {
			n := f.metric(identity, "mirror_reconciles_total", map[string]string{"result": "ok"})
			return n >= before+2, fmt.Sprintf("%v reconciles since", n-before)
		})
	}
}

// handEdit gets an object, edits and updates it, and waits up to a second
// for it to be restored.
func handEdit[T any](t *testing.T, what string, get func() (T, error), update func(T) error, edit func(T),
	restored func(T) (bool, string)) {
	t.Helper()
	obj, err := get()
	if err != nil {
		t.Fatal(err)
	}
	edit(obj)
	if err := update(obj); err != nil {
		t.Fatalf("edit %s: %v", what, err)
	}
	wait.Within(t, time.Second, what+" restored", func() (bool, string) {
		obj, err := get()
		if err != nil {
			return false, err.Error()
		}
		return restored(obj)
	})
}

// TestE2EHandEditsRepaired edits what a mirror owns as `kubectl edit`
// would (an update by another field manager): the Service's ports, type
// and selector, the EndpointSlice's addresses, ports and conditions. Each
// is restored within a second, and re-checks of the restored mirror write
// nothing: a write loop against API server defaulting cannot start.
func TestE2EHandEditsRepaired(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.putSecret(true)
	f.createLink(nil)
	const id = "replica-a"
	m, _ := f.startMirror(id)
	wait.For(t, "leading", func() (bool, string) { return m.Leading(), "" })
	f.createRemote(exportedService("api", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	name := "api-" + f.cluster
	f.sliceIs(name, []string{"198.18.0.10"}, true)
	wait.For(t, "Mirrored condition", func() (bool, string) {
		c := f.serviceCondition("api")
		return c != nil && c.Reason == multicluster.ReasonMirrored, fmt.Sprintf("%+v", c)
	})
	svc, err := f.westService(name)
	if err != nil {
		t.Fatal(err)
	}
	egress, err := mirror.ParseEgressPorts(svc.Annotations[mirror.AnnotationEgressPorts])
	if err != nil {
		t.Fatal(err)
	}
	noWrites := func(when string) {
		t.Helper()
		before := f.mirrorWrites(id)
		f.recheckAll(id)
		if after := f.mirrorWrites(id); after != before {
			t.Fatalf("%s: %v writes of an unchanged mirror in two re-checks", when, after-before)
		}
	}
	noWrites("as created")

	// As kubectl edit writes: an update by another field manager.
	kubectlEdit := metav1.UpdateOptions{FieldManager: "kubectl-edit"}
	getService := func() (*corev1.Service, error) { return f.westService(name) }
	updateService := func(s *corev1.Service) error {
		_, err := f.env.West.Client.CoreV1().Services(f.ns).Update(ctx, s, kubectlEdit)
		return err
	}
	serviceIs := func(ok func(*corev1.Service) bool) func(*corev1.Service) (bool, string) {
		return func(s *corev1.Service) (bool, string) {
			return ok(s), fmt.Sprintf("type %s selector %v ports %+v", s.Spec.Type, s.Spec.Selector, s.Spec.Ports)
		}
	}
	onlyPort8080 := func(s *corev1.Service) bool {
		return len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 8080 && s.Spec.Ports[0].Name == "http"
	}
	handEdit(t, "service port", getService, updateService, func(s *corev1.Service) { s.Spec.Ports[0].Port = 9999 },
		serviceIs(onlyPort8080))
	handEdit(t, "service type", getService, updateService, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort },
		serviceIs(func(s *corev1.Service) bool {
			return s.Spec.Type == corev1.ServiceTypeClusterIP && s.Spec.Ports[0].NodePort == 0
		}))
	handEdit(t, "service selector", getService, updateService, func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "api"} },
		serviceIs(func(s *corev1.Service) bool { return len(s.Spec.Selector) == 0 && onlyPort8080(s) }))

	getSlice := func() (*discoveryv1.EndpointSlice, error) { return f.westSlice(name) }
	updateSlice := func(sl *discoveryv1.EndpointSlice) error {
		_, err := f.env.West.Client.DiscoveryV1().EndpointSlices(f.ns).Update(ctx, sl, kubectlEdit)
		return err
	}
	sliceRestored := func(sl *discoveryv1.EndpointSlice) (bool, string) {
		ok := len(sl.Endpoints) == 1 && fmt.Sprint(sl.Endpoints[0].Addresses) == "[198.18.0.10]" &&
			ptr.Deref(sl.Endpoints[0].Conditions.Ready, false) && ptr.Deref(sl.Endpoints[0].Conditions.Serving, false) &&
			len(sl.Ports) == 1 && ptr.Deref(sl.Ports[0].Port, 0) == egress[8080]
		return ok, fmt.Sprintf("endpoints %+v ports %+v", sl.Endpoints, sl.Ports)
	}
	handEdit(t, "slice addresses", getSlice, updateSlice,
		func(sl *discoveryv1.EndpointSlice) { sl.Endpoints[0].Addresses = []string{"198.18.0.99"} }, sliceRestored)
	handEdit(t, "slice ports", getSlice, updateSlice,
		func(sl *discoveryv1.EndpointSlice) { sl.Ports[0].Port = ptr.To[int32](1) }, sliceRestored)
	handEdit(t, "slice conditions", getSlice, updateSlice, func(sl *discoveryv1.EndpointSlice) {
		sl.Endpoints[0].Conditions.Ready, sl.Endpoints[0].Conditions.Serving = ptr.To(false), ptr.To(false)
	}, sliceRestored)
	noWrites("after the repairs")
	t.Logf("writes: %v service applies, %v service patches, %v slice applies",
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "service", "op": "apply"}),
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "service", "op": "patch"}),
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "endpointslice", "op": "apply"}))
}
