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
		f.health.setAlive(f.cluster, true)
		wait.For(f.t, "a re-check of every mirror", func() (bool, string) {
			n := f.metric(identity, "mirror_reconciles_total", map[string]string{"result": "ok"})
			return n >= before+2, fmt.Sprintf("%v reconciles since", n-before)
		})
	}
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

	services := f.env.West.Client.CoreV1().Services(f.ns)
	editService := func(what string, edit func(*corev1.Service), restored func(*corev1.Service) bool) {
		t.Helper()
		s, err := f.westService(name)
		if err != nil {
			t.Fatal(err)
		}
		edit(s)
		if _, err := services.Update(ctx, s, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatalf("edit %s: %v", what, err)
		}
		wait.Within(t, time.Second, what+" restored", func() (bool, string) {
			s, err := f.westService(name)
			if err != nil {
				return false, err.Error()
			}
			return restored(s), fmt.Sprintf("type %s selector %v ports %+v", s.Spec.Type, s.Spec.Selector, s.Spec.Ports)
		})
	}
	onlyPort8080 := func(s *corev1.Service) bool {
		return len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 8080 && s.Spec.Ports[0].Name == "http"
	}
	editService("service port", func(s *corev1.Service) { s.Spec.Ports[0].Port = 9999 }, onlyPort8080)
	editService("service type", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }, func(s *corev1.Service) bool {
		return s.Spec.Type == corev1.ServiceTypeClusterIP && s.Spec.Ports[0].NodePort == 0
	})
	editService("service selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "api"} },
		func(s *corev1.Service) bool { return len(s.Spec.Selector) == 0 && onlyPort8080(s) })

	slices := f.env.West.Client.DiscoveryV1().EndpointSlices(f.ns)
	editSlice := func(what string, edit func(*discoveryv1.EndpointSlice)) {
		t.Helper()
		sl, err := f.westSlice(name)
		if err != nil {
			t.Fatal(err)
		}
		edit(sl)
		if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatalf("edit %s: %v", what, err)
		}
		wait.Within(t, time.Second, what+" restored", func() (bool, string) {
			sl, err := f.westSlice(name)
			if err != nil {
				return false, err.Error()
			}
			ok := len(sl.Endpoints) == 1 && fmt.Sprint(sl.Endpoints[0].Addresses) == "[198.18.0.10]" &&
				ptr.Deref(sl.Endpoints[0].Conditions.Ready, false) && ptr.Deref(sl.Endpoints[0].Conditions.Serving, false) &&
				len(sl.Ports) == 1 && ptr.Deref(sl.Ports[0].Port, 0) == egress[8080]
			return ok, fmt.Sprintf("endpoints %+v ports %+v", sl.Endpoints, sl.Ports)
		})
	}
	editSlice("slice addresses", func(sl *discoveryv1.EndpointSlice) { sl.Endpoints[0].Addresses = []string{"198.18.0.99"} })
	editSlice("slice ports", func(sl *discoveryv1.EndpointSlice) { sl.Ports[0].Port = ptr.To[int32](1) })
	editSlice("slice conditions", func(sl *discoveryv1.EndpointSlice) {
		sl.Endpoints[0].Conditions.Ready, sl.Endpoints[0].Conditions.Serving = ptr.To(false), ptr.To(false)
	})
	noWrites("after the repairs")
	t.Logf("writes: %v service applies, %v service patches, %v slice applies",
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "service", "op": "apply"}),
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "service", "op": "patch"}),
		f.metric(id, "mirror_writes_total", map[string]string{"resource": "endpointslice", "op": "apply"}))
}
