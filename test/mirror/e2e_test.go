package mirror_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testhealth"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

const protobuf = "application/vnd.kubernetes.protobuf"

var clusterSeq atomic.Int32

// fixture is one test's link from west to east.
type fixture struct {
	t       testing.TB
	env     *kubetest.Env
	ns      string // app namespace, present in both clusters
	mcNS    string // west namespace of the Link, Secret and Lease
	cluster string // targetClusterName, unique per test
	link    string
	health  *testhealth.Health
	dyn     dynamic.Interface
	metrics map[string]*prometheus.Registry // of each mirror, by identity
}

func newFixture(t testing.TB) *fixture {
	env := kubetest.Start(t)
	f := &fixture{t: t, env: env, health: testhealth.New(), metrics: map[string]*prometheus.Registry{}}
	f.ns = kubetest.Namespace(t, env.East, env.West)
	f.mcNS = kubetest.Namespace(t, env.West)
	f.cluster = fmt.Sprintf("east%d", clusterSeq.Add(1))
	f.link = f.cluster
	var err error
	if f.dyn, err = dynamic.NewForConfig(env.West.Config); err != nil {
		t.Fatal(err)
	}
	return f
}

// kubeconfig returns east's admin kubeconfig, or one with a bad token.
func (f *fixture) kubeconfig(good bool) []byte {
	f.t.Helper()
	b, err := os.ReadFile(f.env.East.Kubeconfig)
	if err != nil {
		f.t.Fatal(err)
	}
	if good {
		return b
	}
	kc, err := clientcmd.Load(b)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range kc.AuthInfos {
		*a = clientcmdapi.AuthInfo{Token: "not-a-valid-token"}
	}
	out, err := clientcmd.Write(*kc)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// kubeconfigVia returns east's admin kubeconfig with the server moved to
// server (a forwarder's URL).
func (f *fixture) kubeconfigVia(server string) []byte {
	f.t.Helper()
	kc, err := clientcmd.Load(f.kubeconfig(true))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = server
	}
	out, err := clientcmd.Write(*kc)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) putSecret(good bool) { f.t.Helper(); f.putSecretData(f.kubeconfig(good)) }

func (f *fixture) putSecretData(kubeconfig []byte) {
	f.t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster-credentials-" + f.cluster, Namespace: f.mcNS},
		Type:       multicluster.SecretType,
		Data:       map[string][]byte{multicluster.SecretKey: kubeconfig},
	}
	c := f.env.West.Client.CoreV1().Secrets(f.mcNS)
	if _, err := c.Update(f.t.Context(), s, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = c.Create(f.t.Context(), s, metav1.CreateOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
	} else if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) linkObject(edit func(spec map[string]any)) *unstructured.Unstructured {
	spec := map[string]any{
		"targetClusterName":        f.cluster,
		"targetClusterDomain":      "cluster.local",
		"clusterCredentialsSecret": "cluster-credentials-" + f.cluster,
		"gatewayAddress":           "198.18.0.2",
		"gatewayPort":              "4143",
		"gatewayIdentity":          "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
		"probeSpec":                map[string]any{"path": "/ready", "port": "4191", "period": "3s"},
		"selector":                 map[string]any{"matchLabels": map[string]any{"mirror.linkerd.io/exported": "true"}},
	}
	if edit != nil {
		edit(spec)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link",
		"metadata": map[string]any{"name": f.link, "namespace": f.mcNS},
		"spec":     spec,
	}}
}

func (f *fixture) createLink(edit func(spec map[string]any)) {
	f.t.Helper()
	if _, err := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS).Create(f.t.Context(), f.linkObject(edit), metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) getLink() *multicluster.Link {
	f.t.Helper()
	u, err := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS).Get(f.t.Context(), f.link, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := multicluster.LinkFromUnstructured(u)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// startMirror runs a Mirror until the test ends (or stop is called).
func (f *fixture) startMirror(identity string) (*mirror.Mirror, func()) {
	f.t.Helper()
	// The client budget of the gateway's wiring (cmd/mcgate --kube-api-qps).
	rc := rest.CopyConfig(f.env.West.Config)
	rc.QPS, rc.Burst = 500, 1000
	rc.ContentType, rc.AcceptContentTypes = protobuf, protobuf+",application/json"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f.metrics[identity] = reg
	m, err := mirror.New(mirror.Config{
		Client: client, Dynamic: dyn, Namespace: f.mcNS,
		EgressPorts: mirror.PortRange{Lo: 20000, Hi: 29999}, AdvertiseAddresses: []string{"198.18.0.10"},
		Health: f.health, Identity: identity, Log: zerolog.New(zerolog.NewTestWriter(f.t)).Level(zerolog.InfoLevel),
		Registerer:    reg,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Resolve: func(_ context.Context, h string) ([]string, error) { return []string{h}, nil },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("mirror Run: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return m, stop
}

func exportedService(name, ns string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"mirror.linkerd.io/exported": "true", "app": name}},
		Spec: corev1.ServiceSpec{Ports: ports},
	}
}

func (f *fixture) createRemote(s *corev1.Service, readyEndpoint bool) {
	f.t.Helper()
	ctx := f.t.Context()
	if _, err := f.env.East.Client.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if readyEndpoint {
		f.setRemoteEndpoint(s.Namespace, s.Name, true)
	}
}

func (f *fixture) setRemoteEndpoint(ns, name string, present bool) {
	f.t.Helper()
	c := f.env.East.Client.DiscoveryV1().EndpointSlices(ns)
	if !present {
		if err := c.Delete(f.t.Context(), name+"-x", metav1.DeleteOptions{}); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	if _, err := c.Create(f.t.Context(), remoteSlice(ns, name), metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// remoteSlice is a ready endpoint of a remote service.
func remoteSlice(ns, name string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-x", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.50"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
}

func (f *fixture) westService(name string) (*corev1.Service, error) {
	return f.env.West.Client.CoreV1().Services(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
}

func (f *fixture) westSlice(name string) (*discoveryv1.EndpointSlice, error) {
	return f.env.West.Client.DiscoveryV1().EndpointSlices(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
}

// waitMirrored waits for the mirror Service name (in the app namespace).
func (f *fixture) waitMirrored(what, name string) {
	f.t.Helper()
	wait.For(f.t, what, func() (bool, string) {
		_, err := f.westService(name)
		return err == nil, fmt.Sprint(err)
	})
}

func (f *fixture) waitGone(name string) {
	f.t.Helper()
	wait.For(f.t, "mirror "+name+" deleted", func() (bool, string) {
		_, err := f.westService(name)
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// sliceIs waits for the mirror's slice to hold want addresses with ready.
func (f *fixture) sliceIs(name string, want []string, ready bool) *discoveryv1.EndpointSlice {
	f.t.Helper()
	var got *discoveryv1.EndpointSlice
	wait.For(f.t, fmt.Sprintf("slice %s = %v ready=%v", name, want, ready), func() (bool, string) {
		s, err := f.westSlice(name)
		if err != nil {
			return false, err.Error()
		}
		var addrs []string
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready != ready {
				return false, fmt.Sprintf("endpoint %v ready=%v", e.Addresses, e.Conditions.Ready)
			}
			addrs = append(addrs, e.Addresses...)
		}
		got = s
		return fmt.Sprint(addrs) == fmt.Sprint(want), fmt.Sprint(addrs)
	})
	return got
}

func (f *fixture) serviceCondition(name string) *multicluster.LinkCondition {
	for _, s := range f.getLink().Status.MirrorServices {
		if s.RemoteRef.Name == name && s.RemoteRef.Namespace == f.ns && len(s.Conditions) == 1 {
			return &s.Conditions[0]
		}
	}
	return nil
}

func linkCondition(l *multicluster.Link, typ string) *metav1.Condition {
	for i := range l.Status.Conditions {
		if l.Status.Conditions[i].Type == typ {
			return &l.Status.Conditions[i]
		}
	}
	return nil
}

func TestE2EMirrorLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.putSecret(true)
	f.createLink(nil)
	m, _ := f.startMirror("replica-a")

	f.createRemote(exportedService("api", f.ns,
		corev1.ServicePort{Name: "http", Port: 8080, AppProtocol: ptr.To("http")}), true)
	mirrorName := "api-" + f.cluster

	// Export → mirror Service with the Linkerd labels/annotations and a
	// ready slice on the local gateway's egress port.
	var svc *corev1.Service
	wait.For(t, "mirror created", func() (bool, string) {
		var err error
		svc, err = f.westService(mirrorName)
		return err == nil, fmt.Sprint(err)
	})
	if svc.Labels[multicluster.LabelMirroredService] != "true" || svc.Labels[multicluster.LabelClusterName] != f.cluster || svc.Labels["app"] != "api" {
		t.Errorf("labels %v", svc.Labels)
	}
	if svc.Annotations[multicluster.AnnotationRemoteFQName] != "api."+f.ns+".svc.cluster.local" {
		t.Errorf("annotations %v", svc.Annotations)
	}
	if p := svc.Spec.Ports[0]; p.Port != 8080 || p.AppProtocol == nil || *p.AppProtocol != "http" {
		t.Errorf("ports %+v", svc.Spec.Ports)
	}
	egress, err := mirror.ParseEgressPorts(svc.Annotations[mirror.AnnotationEgressPorts])
	if err != nil || egress[8080] < 20000 || egress[8080] > 29999 {
		t.Fatalf("egress ports %v %v", egress, err)
	}
	sl := f.sliceIs(mirrorName, []string{"198.18.0.10"}, true)
	if *sl.Ports[0].Port != egress[8080] || sl.Labels[discoveryv1.LabelManagedBy] != "mcgate" ||
		len(sl.OwnerReferences) != 1 || sl.OwnerReferences[0].UID != svc.UID {
		t.Errorf("slice %+v", sl)
	}
	wait.For(t, "Mirrored condition", func() (bool, string) {
		c := f.serviceCondition("api")
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == multicluster.ReasonMirrored, fmt.Sprintf("%+v", c)
	})
	wait.For(t, "egress entry", func() (bool, string) {
		e := m.Egress()
		return len(e) == 1 && e[0].Port == int(egress[8080]) && e[0].Target == "api."+f.ns+".svc.cluster.local:8080" &&
			e[0].GatewayAddresses[0] == "198.18.0.2:4143", fmt.Sprintf("%+v", e)
	})

	// Update: a new port gets its own egress port; the old one stays.
	rs, err := f.env.East.Client.CoreV1().Services(f.ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.Spec.Ports = append(rs.Spec.Ports, corev1.ServicePort{Name: "grpc", Port: 9090})
	if _, err := f.env.East.Client.CoreV1().Services(f.ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "port added", func() (bool, string) {
		s, err := f.westService(mirrorName)
		if err != nil {
			return false, err.Error()
		}
		e, _ := mirror.ParseEgressPorts(s.Annotations[mirror.AnnotationEgressPorts])
		return len(s.Spec.Ports) == 2 && e[8080] == egress[8080] && e[9090] != 0 && s.UID == svc.UID,
			fmt.Sprintf("%v %v", s.Spec.Ports, e)
	})

	// Remote endpoints gone → empty slice; back → filled.
	f.setRemoteEndpoint(f.ns, "api", false)
	f.sliceIs(mirrorName, nil, true)
	f.setRemoteEndpoint(f.ns, "api", true)
	f.sliceIs(mirrorName, []string{"198.18.0.10"}, true)

	// Gateway dead → not ready; alive → ready. GatewayAlive follows.
	f.health.SetAlive(f.cluster, false)
	f.sliceIs(mirrorName, []string{"198.18.0.10"}, false)
	wait.For(t, "GatewayAlive=False", func() (bool, string) {
		c := linkCondition(f.getLink(), multicluster.ConditionGatewayAlive)
		return c != nil && c.Status == metav1.ConditionFalse, fmt.Sprintf("%+v", c)
	})
	f.health.SetAlive(f.cluster, true)
	f.sliceIs(mirrorName, []string{"198.18.0.10"}, true)

	// Unexport → mirror deleted, status entry dropped.
	if rs, err = f.env.East.Client.CoreV1().Services(f.ns).Get(ctx, "api", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(rs.Labels, "mirror.linkerd.io/exported")
	if _, err := f.env.East.Client.CoreV1().Services(f.ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitGone(mirrorName)
	wait.For(t, "status entry dropped", func() (bool, string) {
		c := f.serviceCondition("api")
		return c == nil, fmt.Sprintf("%+v", c)
	})

	// Re-export then delete remotely → deleted.
	if rs, err = f.env.East.Client.CoreV1().Services(f.ns).Get(ctx, "api", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	rs.Labels["mirror.linkerd.io/exported"] = "true"
	if _, err := f.env.East.Client.CoreV1().Services(f.ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitMirrored("re-exported", mirrorName)
	if err := f.env.East.Client.CoreV1().Services(f.ns).Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitGone(mirrorName)
}

func TestE2EMissingNamespaceAndLinkDeletion(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.putSecret(true)
	f.createLink(nil)
	f.startMirror("replica-a")
	f.createRemote(exportedService("web", f.ns, corev1.ServicePort{Name: "http", Port: 80}), true)

	// A namespace only east has.
	only := f.ns + "-e"
	if len(only) > 63 {
		only = only[len(only)-63:]
	}
	if err := f.env.East.EnsureNamespace(ctx, only); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.env.East.Client.CoreV1().Namespaces().Delete(context.Background(), only, metav1.DeleteOptions{})
		f.env.West.Client.CoreV1().Namespaces().Delete(context.Background(), only, metav1.DeleteOptions{})
	})
	f.createRemote(exportedService("db", only, corev1.ServicePort{Name: "pg", Port: 5432}), true)

	wait.For(t, "MissingNamespace recorded", func() (bool, string) {
		for _, s := range f.getLink().Status.MirrorServices {
			if s.RemoteRef.Name == "db" && s.Conditions[0].Reason == multicluster.ReasonMissingNamespace && s.Conditions[0].Status == metav1.ConditionFalse {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", f.getLink().Status.MirrorServices)
	})
	wait.For(t, "event recorded", func() (bool, string) {
		evs, err := f.env.West.Client.CoreV1().Events(f.mcNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == "ServiceMirroringSkipped" && e.InvolvedObject.Name == f.link && strings.Contains(e.Message, "db") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
	if err := f.env.West.EnsureNamespace(ctx, only); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "mirrored once the namespace exists", func() (bool, string) {
		_, err := f.env.West.Client.CoreV1().Services(only).Get(ctx, "db-"+f.cluster, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	// Link deleted → its mirrors deleted.
	f.waitMirrored("web mirrored", "web-"+f.cluster)
	if err := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS).Delete(ctx, f.link, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitGone("web-" + f.cluster)
	wait.For(t, "db mirror deleted", func() (bool, string) {
		_, err := f.env.West.Client.CoreV1().Services(only).Get(ctx, "db-"+f.cluster, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func TestE2EInvalidLinkAndCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.createRemote(exportedService("api", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	mirrorName := "api-" + f.cluster
	f.putSecret(false)
	f.createLink(func(spec map[string]any) { spec["gatewayPort"] = "gateway" })
	f.startMirror("replica-a")

	wait.For(t, "Valid=False names the field", func() (bool, string) {
		c := linkCondition(f.getLink(), multicluster.ConditionValid)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "spec.gatewayPort"), fmt.Sprintf("%+v", c)
	})
	// Fix the field: now the (bad) credentials are the problem.
	u, err := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS).Get(ctx, f.link, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(u.Object, "4143", "spec", "gatewayPort")
	if _, err := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "Credentials=False", func() (bool, string) {
		l := f.getLink()
		c := linkCondition(l, multicluster.ConditionCredentials)
		v := linkCondition(l, multicluster.ConditionValid)
		return c != nil && c.Status == metav1.ConditionFalse && v != nil && v.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", c)
	})
	if _, err := f.westService(mirrorName); !apierrors.IsNotFound(err) {
		t.Fatalf("mirrored with bad credentials: %v", err)
	}
	// Good credentials, no restart.
	f.putSecret(true)
	f.waitMirrored("mirrored after rotation", mirrorName)
	// Bad again: mirrors stay, status says so.
	f.putSecret(false)
	wait.For(t, "Credentials=False again", func() (bool, string) {
		c := linkCondition(f.getLink(), multicluster.ConditionCredentials)
		return c != nil && c.Status == metav1.ConditionFalse, fmt.Sprintf("%+v", c)
	})
	// The old watcher keeps running: a remote change still arrives.
	if err := f.env.East.Client.CoreV1().Services(f.ns).Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.createRemote(exportedService("api2", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), false)
	f.waitMirrored("old watcher still mirrors", "api2-"+f.cluster)
}

// TestE2EUnreachableCluster: a cluster that cannot be reached when the
// mirror starts is not reported as bad credentials, and is tried again
// until it answers, with no change to the Link or its Secret.
func TestE2EUnreachableCluster(t *testing.T) {
	f := newFixture(t)
	f.createRemote(exportedService("api", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	u, err := url.Parse(f.env.East.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	fwd := kubetest.NewForwarder(t, u.Host)
	fwd.Cut()
	f.putSecretData(f.kubeconfigVia(fwd.URL()))
	f.createLink(nil)
	f.startMirror("replica-a")
	wait.For(t, "Credentials=Unknown/Unreachable", func() (bool, string) {
		c := linkCondition(f.getLink(), multicluster.ConditionCredentials)
		return c != nil && c.Status == metav1.ConditionUnknown && c.Reason == "Unreachable" &&
			strings.Contains(c.Message, "connection refused"), fmt.Sprintf("%+v", c)
	})
	if _, err := f.westService("api-" + f.cluster); !apierrors.IsNotFound(err) {
		t.Fatalf("mirrored while unreachable: %v", err)
	}
	fwd.Restore()
	f.waitMirrored("mirrored once reachable", "api-"+f.cluster)
	wait.For(t, "Credentials=True", func() (bool, string) {
		c := linkCondition(f.getLink(), multicluster.ConditionCredentials)
		return c != nil && c.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", c)
	})
}

func TestE2ERestartCollectsOrphansAndKeepsUIDs(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.putSecret(true)
	f.createLink(nil)
	for _, n := range []string{"keep", "drop"} {
		f.createRemote(exportedService(n, f.ns, corev1.ServicePort{Name: "http", Port: 80}), true)
	}
	_, stop := f.startMirror("replica-a")
	var keep *corev1.Service
	wait.For(t, "both mirrored", func() (bool, string) {
		var err error
		keep, err = f.westService("keep-" + f.cluster)
		_, err2 := f.westService("drop-" + f.cluster)
		return err == nil && err2 == nil, fmt.Sprint(err, err2)
	})
	f.sliceIs("keep-"+f.cluster, []string{"198.18.0.10"}, true)
	stop()

	// While the mirror is down, east changes.
	if err := f.env.East.Client.CoreV1().Services(f.ns).Delete(ctx, "drop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.createRemote(exportedService("new", f.ns, corev1.ServicePort{Name: "http", Port: 80}), true)
	f.startMirror("replica-b")
	f.waitGone("drop-" + f.cluster)
	f.waitMirrored("new mirrored", "new-"+f.cluster)
	after, err := f.westService("keep-" + f.cluster)
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != keep.UID || after.Annotations[mirror.AnnotationEgressPorts] != keep.Annotations[mirror.AnnotationEgressPorts] {
		t.Fatalf("surviving mirror changed: uid %s→%s, egress %s→%s", keep.UID, after.UID,
			keep.Annotations[mirror.AnnotationEgressPorts], after.Annotations[mirror.AnnotationEgressPorts])
	}
	nw, _ := f.westService("new-" + f.cluster)
	if nw.Annotations[mirror.AnnotationEgressPorts] == keep.Annotations[mirror.AnnotationEgressPorts] {
		t.Fatalf("new mirror got the surviving mirror's egress port %s", nw.Annotations[mirror.AnnotationEgressPorts])
	}
}

func TestE2ELeaderFailover(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.putSecret(true)
	f.createLink(nil)
	a, stopA := f.startMirror("replica-a")
	wait.For(t, "a leads", func() (bool, string) { return a.Leading(), "" })
	b, _ := f.startMirror("replica-b")
	f.createRemote(exportedService("one", f.ns, corev1.ServicePort{Name: "http", Port: 80}), true)
	f.waitMirrored("one mirrored", "one-"+f.cluster)
	if b.Leading() {
		t.Fatal("two leaders")
	}
	// The follower serves the same egress set from the annotations.
	wait.For(t, "follower egress", func() (bool, string) {
		ea, eb := a.Egress(), b.Egress()
		return len(eb) == 1 && fmt.Sprint(ea) == fmt.Sprint(eb), fmt.Sprint(ea, eb)
	})
	stopA()
	wait.For(t, "b leads", func() (bool, string) { return b.Leading(), "" })
	lease, err := f.env.West.Client.CoordinationV1().Leases(f.mcNS).Get(ctx, multicluster.LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != b.Identity() {
		t.Fatalf("lease %+v %v", lease, err)
	}
	f.createRemote(exportedService("two", f.ns, corev1.ServicePort{Name: "http", Port: 80}), true)
	f.waitMirrored("two mirrored by the new leader", "two-"+f.cluster)
}

func TestE2ERoutes(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	m, _ := f.startMirror("replica-a")
	w := f.env.West.Client
	if _, err := w.CoreV1().Services(f.ns).Create(ctx, exportedService("api", f.ns,
		corev1.ServicePort{Name: "http", Port: 80}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hidden := exportedService("hidden", f.ns, corev1.ServicePort{Name: "http", Port: 80})
	hidden.Labels = nil
	if _, err := w.CoreV1().Services(f.ns).Create(ctx, hidden, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"api", "hidden"} {
		if _, err := w.DiscoveryV1().EndpointSlices(f.ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: n + "-a", Namespace: f.ns, Labels: map[string]string{discoveryv1.LabelServiceName: n}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.60"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "route", func() (bool, string) {
		eps, err := m.Routes().Route("api", f.ns, 80)
		return err == nil && len(eps) == 1 && eps[0] == "198.18.0.60:8080", fmt.Sprint(eps, err)
	})
	if _, err := m.Routes().Route("hidden", f.ns, 80); err != mirror.ErrNotExported {
		t.Fatalf("non-exported service routed: %v", err)
	}
}
