// Package install applies what `mcgate install` prints, with each flag a
// cluster operator needs, to a real API server (kubectl apply
// --dry-run=server), and reads back what the server would store: the
// server validates every field (CIDRs, node port range, traffic policy
// per service type) and drops none of them. The rendering alone is tested
// in cmd/mcgate without a cluster.
package install

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// stored are the gateway's Deployment and Service as the API server would
// store them.
type stored struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
}

// TestInstallFlagsServerDryRun renders an install per flag with the mcgate
// binary and applies it with a server-side dry run; what the server
// returns must still carry the flag's effect.
func TestInstallFlagsServerDryRun(t *testing.T) {
	env := kubetest.Start(t)
	// Namespaced objects are dry-run against an existing namespace.
	_, err := env.East.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deploy.Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	bin := testbin.Mcgate(t)
	for _, c := range []struct {
		name  string
		args  []string
		check func(*testing.T, stored)
	}{
		{"allow-identity", []string{"--allow-identity", "spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway",
			"--allow-identity", "*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, func(t *testing.T, s stored) {
			args := s.deployment.Spec.Template.Spec.Containers[0].Args
			for _, want := range []string{"--allow-identity=spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway",
				"--allow-identity=*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"} {
				if !slices.Contains(args, want) {
					t.Errorf("args %q lack %s", args, want)
				}
			}
		}},
		{"service-annotations", []string{"--gateway-service-annotation", "service.beta.kubernetes.io/aws-load-balancer-type=nlb",
			"--gateway-service-annotation", "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags=team=net,env=prod"},
			func(t *testing.T, s stored) {
				a := s.service.Annotations
				if a["service.beta.kubernetes.io/aws-load-balancer-type"] != "nlb" ||
					a["service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags"] != "team=net,env=prod" {
					t.Errorf("annotations %v", a)
				}
			}},
		{"source-ranges-local", []string{"--gateway-load-balancer-source-ranges", "203.0.113.0/24,198.51.100.7/32,2001:db8::/32",
			"--gateway-external-traffic-policy", "Local"}, func(t *testing.T, s stored) {
			spec := s.service.Spec
			if !slices.Equal(spec.LoadBalancerSourceRanges, []string{"203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"}) ||
				spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || spec.HealthCheckNodePort == 0 {
				t.Errorf("source ranges %v, policy %q, health check node port %d", spec.LoadBalancerSourceRanges,
					spec.ExternalTrafficPolicy, spec.HealthCheckNodePort)
			}
		}},
		{"nodeport-local", []string{"--gateway-service-type", "NodePort", "--gateway-external-traffic-policy", "Local"},
			func(t *testing.T, s stored) {
				if p := s.service.Spec.ExternalTrafficPolicy; p != corev1.ServiceExternalTrafficPolicyLocal {
					t.Errorf("policy %q", p)
				}
			}},
		{"traffic-policy-cluster", []string{"--gateway-external-traffic-policy", "Cluster"}, func(t *testing.T, s stored) {
			if p := s.service.Spec.ExternalTrafficPolicy; p != corev1.ServiceExternalTrafficPolicyCluster {
				t.Errorf("policy %q", p)
			}
		}},
		{"context-kubeconfig", []string{"--context", "nowhere", "--kubeconfig", "/nonexistent"}, func(*testing.T, stored) {}},
	} {
		for _, format := range []string{"yaml", "json"} {
			t.Run(c.name+"-"+format, func(t *testing.T) {
				manifests := mcgate(t, bin, append([]string{"install", "--image", "registry.example/mcgate:v1", "-o", format}, c.args...)...)
				c.check(t, dryRun(t, env.East.Kubeconfig, manifests))
			})
		}
	}
}

// TestNodePortRangeIsTheServers shows what --service-node-port-range is
// for: the node ports of the rendered Service must be in the API server's
// range, which a server-side dry run does not check (it allocates no
// ports), so the Service is created for real, in a namespace of its own.
// This server has the default range: the ends of it are taken, a port of
// another range renders when --service-node-port-range says so but the
// server refuses it.
func TestNodePortRangeIsTheServers(t *testing.T) {
	env := kubetest.Start(t)
	ns := kubetest.Namespace(t, env.East)
	bin := testbin.Mcgate(t)
	create := func(rangeFlag string, port, probePort string) (*corev1.Service, error) {
		t.Helper()
		manifests := mcgate(t, bin, "install", "--image", "registry.example/mcgate:v1", "--service-node-port-range", rangeFlag,
			"--gateway-service-type", "NodePort", "--gateway-node-port", port, "--gateway-probe-node-port", probePort)
		objs, err := deploy.Decode(manifests)
		if err != nil {
			t.Fatal(err)
		}
		_, svc, err := deploy.GatewayObjects(objs)
		if err != nil {
			t.Fatal(err)
		}
		svc.Namespace = ns
		svc.Name = "gw-" + port
		return env.East.Client.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{})
	}
	svc, err := create("30000-32767", "30000", "32767")
	if err != nil {
		t.Fatalf("node ports at the ends of the default range: %v", err)
	}
	if p := svc.Spec.Ports; p[0].NodePort != 30000 || p[1].NodePort != 32767 {
		t.Errorf("node ports %d, %d", p[0].NodePort, p[1].NodePort)
	}
	_, err = create("20000-22767", "20443", "20444")
	if err == nil || !strings.Contains(err.Error(), "provided port is not in the valid range") {
		t.Fatalf("a node port of another range: %v, want the server's refusal", err)
	}
}

func mcgate(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcgate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// dryRun applies manifests with a server-side dry run and returns the
// gateway's Deployment and Service as the server returned them.
func dryRun(t *testing.T, kubeconfig string, manifests []byte) stored {
	t.Helper()
	cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-o", "json", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, stderr.String())
	}
	objs, err := deploy.Decode(stdout.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want, err := deploy.Decode(manifests)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(want) {
		t.Fatalf("the server returned %d objects, the install has %d", len(objs), len(want))
	}
	dep, svc, err := deploy.GatewayObjects(objs)
	if err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	return stored{deployment: dep, service: svc}
}
