package kubetest_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mcgate/mcgate/internal/testenv/kube"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// poll calls cond until it returns true, failing the test after timeout or
// at cond's first error.
func poll(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	wait.Until(t, timeout, what, func() bool {
		ok, err := cond(t.Context())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return ok
	})
}

// pollGone waits until get returns NotFound; a controller of the controller
// manager has to act for that.
func pollGone(t *testing.T, what string, get func(ctx context.Context) error) {
	t.Helper()
	poll(t, 2*time.Minute, what+" gone", func(ctx context.Context) (bool, error) {
		err := get(ctx)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// TestServiceThroughTokenRequest is the acceptance: a Service with a
// 198.18.0.x EndpointSlice in east, read through a token that TokenRequest
// minted for an RBAC-limited ServiceAccount; the address in the slice is a
// real listener in the test's network namespace.
func TestServiceThroughTokenRequest(t *testing.T) {
	env := kubetest.Start(t)
	east, west := env.East, env.West
	ctx := t.Context()
	ns := kubetest.Namespace(t, east, west)

	backend, err := net.Listen("tcp", netip.AddrPortFrom(kubetest.HostIP(10), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	port := int32(backend.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from "+c.LocalAddr().String())
			c.Close()
		}
	}()

	_, err = east.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Labels: map[string]string{"mirror.linkerd.io/exported": "true"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := true
	_, err = east.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "api-1", Labels: map[string]string{
			discoveryv1.LabelServiceName: "api",
			discoveryv1.LabelManagedBy:   "kubetest",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{kubetest.HostIP(10).String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: &port, Protocol: new(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("EndpointSlice with %v: %v", kubetest.HostIP(10), err)
	}
	// The reason for the namespace: the API server refuses loopback.
	_, err = east.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "api-loopback"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("EndpointSlice with 127.0.0.1: got %v, want Invalid", err)
	}

	// A reader that may only get/list/watch Services and EndpointSlices of ns.
	sa, err := east.Client.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = east.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = east.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := east.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	reader, err := kubernetes.NewForConfig(east.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}

	svc, err := reader.CoreV1().Services(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("service through token: %v", err)
	}
	if svc.Spec.ClusterIP == "" {
		t.Errorf("service has no ClusterIP")
	}
	slices, err := reader.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=api"})
	if err != nil {
		t.Fatalf("slices through token: %v", err)
	}
	if len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 1 || len(slices.Items[0].Ports) != 1 {
		t.Fatalf("slices through token: %+v", slices.Items)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr(slices.Items[0].Endpoints[0].Addresses[0]), uint16(*slices.Items[0].Ports[0].Port))
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		t.Fatalf("dial endpoint from slice: %v", err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if want := "hello from " + addr.String(); string(got) != want || err != nil {
		t.Errorf("endpoint said %q, %v; want %q", got, err, want)
	}

	// RBAC is enforced: no Secrets, nothing in other namespaces.
	if _, err := reader.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("secrets through token: got %v, want Forbidden", err)
	}
	if _, err := reader.CoreV1().Services(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("services of default through token: got %v, want Forbidden", err)
	}
	// The clusters are separate: west has no such Service and does not
	// accept east's token.
	if _, err := west.Client.CoreV1().Services(ns).Get(ctx, "api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("west sees east's service: %v", err)
	}
	westReader, err := kubernetes.NewForConfig(west.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := westReader.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("west with east's token: got %v, want Unauthorized", err)
	}
}

// TestNamespaceDeletionFinishes needs the controller manager's namespace
// controller: without it a deleted namespace stays Terminating forever.
func TestNamespaceDeletionFinishes(t *testing.T) {
	env := kubetest.Start(t)
	for _, c := range []*kubetest.Cluster{env.East, env.West} {
		t.Run(c.Name, func(t *testing.T) {
			ctx := t.Context()
			ns := kubetest.Namespace(t, c)
			_, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx,
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "content"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			pollGone(t, "namespace "+ns, func(ctx context.Context) error {
				_, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				return err
			})
		})
	}
}

// TestGarbageCollection needs the controller manager's garbage collector.
func TestGarbageCollection(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	ns := kubetest.Namespace(t, env.West)
	cms := env.West.Client.CoreV1().ConfigMaps(ns)
	owner, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "dependent",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
		}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pollGone(t, "dependent ConfigMap", func(ctx context.Context) error {
		_, err := cms.Get(ctx, "dependent", metav1.GetOptions{})
		return err
	})
}

// TestSelectorServiceGetsEndpointSlice needs the controller manager's
// EndpointSlice controller; CreateReadyPod stands in for scheduler and kubelet.
func TestSelectorServiceGetsEndpointSlice(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	ns := kubetest.Namespace(t, env.East)
	_, err := env.East.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ips := []netip.Addr{kubetest.HostIP(20), kubetest.HostIP(21)}
	for i, ip := range ips {
		_, err := env.East.CreateReadyPod(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + strconv.Itoa(i), Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}},
		}, ip)
		if err != nil {
			t.Fatal(err)
		}
	}
	var seen map[string]bool
	poll(t, 2*time.Minute, "EndpointSlice with both pods ready", func(ctx context.Context) (bool, error) {
		list, err := env.East.Client.DiscoveryV1().EndpointSlices(ns).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return false, err
		}
		seen = map[string]bool{}
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					for _, a := range e.Addresses {
						seen[a] = true
					}
				}
			}
		}
		return len(seen) == len(ips) && seen[ips[0].String()] && seen[ips[1].String()], nil
	})
}

// TestCRDsInstalled: every CRD in <repo>/deploy/crds is established in both
// clusters (none is also fine: the folder may be empty).
func TestCRDsInstalled(t *testing.T) {
	env := kubetest.Start(t)
	root, err := kube.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	opts := envtest.CRDInstallOptions{Paths: []string{kube.CRDDir(root)}}
	if err := envtest.ReadCRDFiles(&opts); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d CRDs in %s", len(opts.CRDs), kube.CRDDir(root))
	for _, c := range []*kubetest.Cluster{env.East, env.West} {
		client, err := apiextensionsclient.NewForConfig(c.Config)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range opts.CRDs {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), want.Name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("%s: CRD %s: %v", c.Name, want.Name, err)
				continue
			}
			established := false
			for _, cond := range got.Status.Conditions {
				established = established || (cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue)
			}
			if !established {
				t.Errorf("%s: CRD %s not established: %+v", c.Name, want.Name, got.Status.Conditions)
			}
		}
	}
}
