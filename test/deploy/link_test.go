package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testhealth"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// kubectl runs kubectl against kubeconfig with stdin.
func kubectl(t *testing.T, kubeconfig string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func yamlOf(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := deploy.Write(&b, objs, "yaml"); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// install applies the install manifests for real (not a dry run).
func install(t *testing.T, kubeconfig string, o deploy.Options) {
	t.Helper()
	objs, err := deploy.Render(o)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, kubeconfig, yamlOf(t, objs), "apply", "-f", "-")
}

// TestLinkAppliesToWest is the guide's path: install on both clusters,
// link east (NodePort gateway), apply the output to west, and a mirror
// running with the rights of the installed gateway ServiceAccount mirrors
// an exported east service through the generated credentials. Then unlink
// and uninstall.
func TestLinkAppliesToWest(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	install(t, env.East.Kubeconfig, deploy.Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30453, ProbeNodePort: 30454})
	install(t, env.West.Kubeconfig, deploy.Options{})

	res, err := deploy.Link(ctx, env.East.Client, env.East.Config, deploy.LinkOptions{ClusterName: "east", GatewayAddresses: "198.18.0.20", CreatedBy: "mcgate test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %v", res.Warnings)
	}
	out := yamlOf(t, res.Objects)
	kubectl(t, env.West.Kubeconfig, out, "apply", "-f", "-")

	// The Link as west stores it: NodePort → node ports, gateway and probe
	// (Linkerd #14451); identity and probe settings from the Service.
	u, err := dynamic.NewForConfigOrDie(env.West.Config).Resource(multicluster.LinkGVR).Namespace(deploy.Namespace).Get(ctx, "east", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	link, err := multicluster.LinkFromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	s := link.Spec
	want := multicluster.LinkSpec{TargetClusterName: "east", TargetClusterDomain: "cluster.local", TargetClusterLinkerdNamespace: "linkerd",
		ClusterCredentialsSecret: "cluster-credentials-east", GatewayAddress: "198.18.0.20", GatewayPort: "30453",
		GatewayIdentity: deploy.GatewayIdentity(""), ProbeSpec: multicluster.ProbeSpec{Path: "/ready", Port: "30454", Period: "3s"}}
	s.Selector, s.ProbeSpec.Timeout, s.ProbeSpec.FailureThreshold = nil, "", "" // CRD defaults
	if s.TargetClusterName != want.TargetClusterName || s.GatewayPort != want.GatewayPort || s.ProbeSpec != want.ProbeSpec ||
		s.GatewayIdentity != want.GatewayIdentity || s.GatewayAddress != want.GatewayAddress ||
		s.ClusterCredentialsSecret != want.ClusterCredentialsSecret || s.TargetClusterDomain != want.TargetClusterDomain {
		t.Errorf("link spec\n got %+v\nwant %+v", s, want)
	}
	if got := metav1.FormatLabelSelector(link.Spec.Selector); got != "mirror.linkerd.io/exported=true" {
		t.Errorf("selector %q", got)
	}
	if _, err := link.Config(); err != nil {
		t.Errorf("mirror rejects the Link: %v", err)
	}

	// The credentials are read-only: they list services, not secrets.
	sec, err := env.West.Client.CoreV1().Secrets(deploy.Namespace).Get(ctx, "cluster-credentials-east", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != multicluster.SecretType {
		t.Errorf("secret type %q", sec.Type)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(sec.Data[multicluster.SecretKey])
	if err != nil {
		t.Fatal(err)
	}
	remote := kubernetes.NewForConfigOrDie(rc)
	if _, err := remote.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("generated credentials cannot list services: %v", err)
	}
	if _, err := remote.CoreV1().Secrets(deploy.Namespace).List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Errorf("generated credentials list secrets: err %v, want forbidden", err)
	}

	// An exported east service is mirrored into west by a mirror that has
	// only the rights of the installed linkerd-gateway ServiceAccount.
	ns := kubetest.Namespace(t, env.East, env.West)
	_, err = env.East.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Labels: map[string]string{"mirror.linkerd.io/exported": "true"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Gateway health without probing: this test is about credentials and
	// RBAC, not liveness.
	runMirrorAsGateway(t, env.West, "link-test", testhealth.New(), prometheus.NewRegistry())
	wait.For(t, "mirror api-east in west", func() (bool, string) {
		_, err := env.West.Client.CoreV1().Services(ns).Get(ctx, "api-east", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	// uninstall refuses while the Link exists.
	westDyn := dynamic.NewForConfigOrDie(env.West.Config)
	if _, err := deploy.Uninstall(ctx, westDyn); err == nil || !strings.Contains(err.Error(), "linkerd-multicluster/east") {
		t.Fatalf("uninstall with a Link: err %v, want a refusal naming the Link", err)
	}

	// unlink lists the Link, the Secret and the mirror; deleting them works.
	objs, err := deploy.Unlink(ctx, env.West.Client, westDyn, "", "east")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, deploy.Key(o))
	}
	for _, k := range []string{"Link/linkerd-multicluster/east", "Secret/linkerd-multicluster/cluster-credentials-east", "Service/" + ns + "/api-east"} {
		if !strings.Contains(strings.Join(keys, " "), k) {
			t.Errorf("unlink lists %v, missing %s", keys, k)
		}
	}
	kubectl(t, env.West.Kubeconfig, yamlOf(t, objs), "delete", "--ignore-not-found", "-f", "-")
	if _, err := deploy.Unlink(ctx, env.West.Client, westDyn, "", "east"); err == nil {
		t.Errorf("second unlink succeeded, want nothing to unlink")
	}
	objs, err = deploy.Uninstall(ctx, westDyn)
	if err != nil {
		t.Fatalf("uninstall after unlink: %v", err)
	}
	if deploy.Key(objs[len(objs)-1]) != "Namespace//linkerd-multicluster" {
		t.Errorf("uninstall does not end with the namespace: %v", deploy.Key(objs[len(objs)-1]))
	}
	// Dry run only: other tests of the package use the install.
	kubectl(t, env.West.Kubeconfig, yamlOf(t, objs), "delete", "--dry-run=server", "-f", "-")
}

// runUntilCleanup runs run until the test ends, then cancels it, waits for
// it and reports its error.
func runUntilCleanup(t *testing.T, what string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	})
}

// runMirrorAsGateway runs the mirror in west authenticated as the
// installed linkerd-gateway ServiceAccount, so its RBAC is what is tested.
func runMirrorAsGateway(t *testing.T, cl *kubetest.Cluster, id string, health mirror.GatewayHealth, reg prometheus.Registerer) {
	t.Helper()
	ctx := context.Background()
	tr, err := cl.Client.CoreV1().ServiceAccounts(deploy.Namespace).CreateToken(ctx, deploy.GatewayName, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc := cl.TokenConfig(tr.Status.Token)
	rc.QPS, rc.Burst = 100, 200
	sel, err := labels.Parse("mirror.linkerd.io/exported=true")
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(mirror.Config{
		Client: kubernetes.NewForConfigOrDie(rc), Dynamic: dynamic.NewForConfigOrDie(rc), Namespace: deploy.Namespace,
		ExportSelector: sel, EgressPorts: mirror.PortRange{Lo: 20000, Hi: 20999}, AdvertiseAddresses: []string{"198.18.0.21"},
		Health: health, Identity: id,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Registerer: reg,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Resolve: func(_ context.Context, h string) ([]string, error) { return []string{h}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "mirror", m.Run)
}

// TestLinkErrors checks that each missing piece is named with its fix.
func TestLinkErrors(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	install(t, env.East.Kubeconfig, deploy.Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30453, ProbeNodePort: 30454})
	cases := []struct {
		name string
		o    deploy.LinkOptions
		want string
	}{
		{"bad name", deploy.LinkOptions{ClusterName: "East_1"}, "--cluster-name"},
		{"nodeport without addresses", deploy.LinkOptions{ClusterName: "east"}, "give --gateway-addresses"},
		{"no gateway service", deploy.LinkOptions{ClusterName: "east", GatewayName: "nope"}, "mcgate install"},
		{"no service account", deploy.LinkOptions{ClusterName: "east", GatewayAddresses: "198.18.0.20", ServiceAccount: "nope"}, "mcgate allow --service-account-name nope"},
		{"bad selector", deploy.LinkOptions{ClusterName: "east", Selector: "a in (b"}, "--selector"},
		{"bad address", deploy.LinkOptions{ClusterName: "east", GatewayAddresses: "not_a_host"}, "spec.gatewayAddress"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := deploy.Link(ctx, env.East.Client, env.East.Config, c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
		})
	}
	// Without a Service, addresses and identity suffice (defaults 4143/4191).
	res, err := deploy.Link(ctx, env.East.Client, env.East.Config, deploy.LinkOptions{ClusterName: "east", GatewayName: "nope",
		GatewayAddresses: "gw.east.example", GatewayIdentity: deploy.GatewayIdentity("")})
	if err != nil {
		t.Fatal(err)
	}
	spec := res.Objects[1].Object["spec"].(map[string]any)
	if spec["gatewayPort"] != "4143" || spec["probeSpec"].(map[string]any)["port"] != "4191" {
		t.Errorf("defaults: %v", spec)
	}
	// A LoadBalancer Service without an ingress address says so.
	_, err = env.East.Client.CoreV1().Services(deploy.Namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "gw-lb", Annotations: map[string]string{deploy.AnnotationGatewayIdentity: "x"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
			{Name: deploy.PortNameGateway, Port: 4143}, {Name: deploy.PortNameProbe, Port: 4191}}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err = deploy.Link(ctx, env.East.Client, env.East.Config, deploy.LinkOptions{ClusterName: "east", GatewayName: "gw-lb"})
	if err == nil || !strings.Contains(err.Error(), "no ingress address yet") {
		t.Fatalf("LoadBalancer without ingress: err %v", err)
	}
}
