package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mcgate/mcgate/deploy"
)

// TestInstallFlags checks that the CLI flags reach the manifests; the
// manifests themselves are tested against real API servers in deploy.
func TestInstallFlags(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"install", "--gateway-service-type", "NodePort", "--gateway-node-port", "30443",
		"--gateway-probe-node-port", "30444", "--gateway-probe-port", "4192", "--ha", "--identity-secret", "gw-id",
		"--image", "img:1", "--trust-domain", "example.org", "-o", "json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var list struct {
		Kind  string
		Items []map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 14 {
		t.Fatalf("kind %s with %d items, want a List of 14", list.Kind, len(list.Items))
	}
	js := out.String()
	for _, want := range []string{`"type": "NodePort"`, `"nodePort": 30443`, `"nodePort": 30444`, `"port": 4192`, `"replicas": 3`,
		`"secretName": "gw-id"`, `"image": "img:1"`, `identity.linkerd.example.org`} {
		if !strings.Contains(js, want) {
			t.Errorf("install output lacks %s", want)
		}
	}
	if errb.Len() != 0 {
		t.Errorf("install with --image wrote to stderr: %s", errb.String())
	}
}

func TestOperatorCommandErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--gateway-service-type", "External"}, "want LoadBalancer, NodePort or ClusterIP"},
		{[]string{"install", "--gateway-node-port", "80"}, "outside the service node port range 30000-32767 (--service-node-port-range)"},
		{[]string{"install", "-o", "toml"}, "want yaml or json"},
		{[]string{"allow"}, "--service-account-name is required"},
		{[]string{"link"}, "--cluster-name is required"},
		{[]string{"unlink"}, "--cluster-name is required"},
		{[]string{"link", "--cluster-name", "east", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
		{[]string{"gateways", "-o", "xml"}, "want table or json"},
		{[]string{"check", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
		{[]string{"uninstall", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("mcgate %s: exit %d, stderr %q, want it to contain %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"allow", "--service-account-name", "west-mirror"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "name: west-mirror") {
		t.Errorf("allow: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// installed are the objects of an install that its options change.
type installed struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
}

// install runs `mcgate install args...` and returns the gateway's
// Deployment and Service, and what it wrote to stderr.
func install(t *testing.T, args ...string) (installed, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"install"}, args...), &out, &errb); code != 0 {
		t.Fatalf("mcgate install %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	objs, err := deploy.Decode(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	dep, svc, err := deploy.GatewayObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	return installed{deployment: dep, service: svc}, errb.String()
}

// TestInstallOperatorFlags checks where each flag a cluster operator needs
// lands in the manifests (test/install applies the same to an API server).
func TestInstallOperatorFlags(t *testing.T) {
	for _, c := range []struct {
		name       string
		args       []string
		check      func(installed) error
		wantStderr string
	}{
		{"allow-identity", []string{"--allow-identity", "spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway",
			"--allow-identity", "*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}, func(i installed) error {
			args := i.deployment.Spec.Template.Spec.Containers[0].Args
			want := []string{"--allow-identity=spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway",
				"--allow-identity=*.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"}
			if !slices.Equal(args[len(args)-2:], want) || args[0] != "gateway" {
				return fmt.Errorf("args %q", args)
			}
			return nil
		}, ""},
		{"service-annotations", []string{"--gateway-service-annotation", "service.beta.kubernetes.io/aws-load-balancer-type=nlb",
			"--gateway-service-annotation", "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags=team=net,env=prod",
			"--gateway-service-annotation", "example.com/empty="}, func(i installed) error {
			a := i.service.Annotations
			if a["service.beta.kubernetes.io/aws-load-balancer-type"] != "nlb" ||
				a["service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags"] != "team=net,env=prod" ||
				a["example.com/empty"] != "" || len(a) != 7 || a[deploy.AnnotationGatewayIdentity] == "" {
				return fmt.Errorf("annotations %v", a)
			}
			return nil
		}, ""},
		{"source-ranges", []string{"--gateway-load-balancer-source-ranges", "203.0.113.0/24,198.51.100.7/32",
			"--gateway-load-balancer-source-ranges", "2001:db8::/32"}, func(i installed) error {
			if r := i.service.Spec.LoadBalancerSourceRanges; !slices.Equal(r, []string{"203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"}) {
				return fmt.Errorf("source ranges %v", r)
			}
			return nil
		}, ""},
		{"traffic-policy-local", []string{"--gateway-external-traffic-policy", "Local"}, func(i installed) error {
			if p := i.service.Spec.ExternalTrafficPolicy; p != corev1.ServiceExternalTrafficPolicyLocal {
				return fmt.Errorf("external traffic policy %q", p)
			}
			return nil
		}, ""},
		{"traffic-policy-default", nil, func(i installed) error {
			if p := i.service.Spec.ExternalTrafficPolicy; p != "" || len(i.service.Spec.LoadBalancerSourceRanges) != 0 {
				return fmt.Errorf("external traffic policy %q, source ranges %v without flags", p, i.service.Spec.LoadBalancerSourceRanges)
			}
			return nil
		}, ""},
		{"node-port-range", []string{"--service-node-port-range", "20000-22767", "--gateway-service-type", "NodePort",
			"--gateway-node-port", "20000", "--gateway-probe-node-port", "22767"}, func(i installed) error {
			if p := i.service.Spec.Ports; p[0].NodePort != 20000 || p[1].NodePort != 22767 {
				return fmt.Errorf("ports %+v", p)
			}
			return nil
		}, ""},
		{"cluster-domain", []string{"--cluster-domain", "east.example"}, func(i installed) error {
			args := i.deployment.Spec.Template.Spec.Containers[0].Args
			if !slices.Contains(args, "--cluster-domain=east.example") || i.service.Annotations[deploy.AnnotationClusterDomain] != "east.example" {
				return fmt.Errorf("args %q, annotations %v: want the domain in both", args, i.service.Annotations)
			}
			return nil
		}, ""},
		{"cluster-domain-default", nil, func(i installed) error {
			args := i.deployment.Spec.Template.Spec.Containers[0].Args
			if !slices.Contains(args, "--cluster-domain=cluster.local") || i.service.Annotations[deploy.AnnotationClusterDomain] != "cluster.local" {
				return fmt.Errorf("args %q, annotations %v: want cluster.local in both", args, i.service.Annotations)
			}
			return nil
		}, ""},
		{"context-kubeconfig", []string{"--context", "east", "--kubeconfig", "/nonexistent"}, func(installed) error { return nil },
			"install contacts no cluster, so --context and --kubeconfig choose nothing here"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, stderr := install(t, append(c.args, "--image", "img:1")...)
			if err := c.check(got); err != nil {
				t.Error(err)
			}
			if !strings.Contains(stderr, c.wantStderr) || (c.wantStderr == "" && stderr != "") {
				t.Errorf("stderr %q, want %q", stderr, c.wantStderr)
			}
		})
	}
}

func TestInstallOperatorFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--service-node-port-range", "30000"}, `--service-node-port-range: port range "30000": want low-high`},
		{[]string{"--service-node-port-range", "32767-30000"}, "want low-high with 1 <= low <= high <= 65535"},
		{[]string{"--service-node-port-range", "0-100"}, `"0" is not a port`},
		{[]string{"--service-node-port-range", "1-70000"}, `"70000" is not a port`},
		{[]string{"--service-node-port-range", "20000-22767", "--gateway-node-port", "30443"},
			"gateway node port 30443: outside the service node port range 20000-22767"},
		{[]string{"--gateway-probe-node-port", "29999"}, "gateway node port 29999: outside the service node port range 30000-32767"},
		{[]string{"--gateway-load-balancer-source-ranges", "10.0.0.0"}, `"10.0.0.0" is not a CIDR`},
		{[]string{"--gateway-load-balancer-source-ranges", "10.0.0.1/8"}, `"10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8 or 10.0.0.1/32?`},
		{[]string{"--gateway-load-balancer-source-ranges", "10.0.0.0/33"}, `"10.0.0.0/33" is not a CIDR`},
		{[]string{"--gateway-load-balancer-source-ranges", "10.0.0.0/8", "--gateway-service-type", "NodePort"},
			"source ranges need service type LoadBalancer, not NodePort"},
		{[]string{"--gateway-external-traffic-policy", "local"}, `external traffic policy "local": want Cluster or Local`},
		{[]string{"--gateway-external-traffic-policy", "Local", "--gateway-service-type", "ClusterIP"},
			"external traffic policy needs service type LoadBalancer or NodePort, not ClusterIP"},
		{[]string{"--gateway-service-annotation", "novalue"}, `--gateway-service-annotation "novalue": want key=value`},
		{[]string{"--gateway-service-annotation", "=v"}, `want key=value`},
		{[]string{"--gateway-service-annotation", "bad key=v"}, `gateway service annotation key "bad key"`},
		{[]string{"--gateway-service-annotation", "a=1", "--gateway-service-annotation", "a=2"}, `a given twice, as "1" and "2"`},
		{[]string{"--gateway-service-annotation", "mirror.linkerd.io/gateway-identity=x"}, "install sets it (set from --trust-domain)"},
		{[]string{"--cluster-domain", "Cluster_Local"}, `cluster domain "Cluster_Local": a lowercase RFC 1123 subdomain`},
		{[]string{"--gateway-service-annotation", "mcgate.io/cluster-domain=x"}, "install sets it (set from --cluster-domain)"},
		{[]string{"--allow-identity", "spiffe://cluster.local/ns/gw-*"}, `--allow-identity: identity: allow pattern "spiffe://cluster.local/ns/gw-*"`},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"install", "--image", "img:1"}, c.args...)
		if code := run(args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("mcgate %s: exit %d, stderr %q, want it to contain %q", strings.Join(args, " "), code, errb.String(), c.want)
		}
	}
}
