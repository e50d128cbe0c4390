package multicluster

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// linkerdLink is a Link as Linkerd's `link-gen` renders it.
const linkerdLink = `
apiVersion: multicluster.linkerd.io/v1alpha3
kind: Link
metadata:
  name: east
  namespace: linkerd-multicluster
spec:
  clusterCredentialsSecret: cluster-credentials-east
  gatewayAddress: 198.18.0.2,gw.example.com
  gatewayIdentity: linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
  gatewayPort: "4143"
  probeSpec:
    failureThreshold: "3"
    path: /ready
    period: "3s"
    port: "4191"
    timeout: 30s
  selector:
    matchLabels:
      mirror.linkerd.io/exported: "true"
  excludedLabels: ["argocd.argoproj.io/*"]
  targetClusterDomain: cluster.local
  targetClusterLinkerdNamespace: linkerd
  targetClusterName: east
status:
  mirrorServices:
  - controllerName: linkerd.io/service-mirror
    remoteRef: {group: "", kind: Service, name: api, namespace: production}
    conditions:
    - type: Mirrored
      status: "True"
      reason: Mirrored
      lastTransitionTime: "2026-01-02T03:04:05Z"
      localRef: {group: "", kind: Service, name: api-east, namespace: production}
`

func decodeLink(t *testing.T, doc string) *Link {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	l, err := LinkFromUnstructured(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLinkDecodeAndConfig(t *testing.T) {
	l := decodeLink(t, linkerdLink)
	if got := l.Status.MirrorServices[0].Conditions[0].LocalRef.Name; got != "api-east" {
		t.Fatalf("status localRef = %q", got)
	}
	c, err := l.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := ProbeConfig{Path: "/ready", Port: 4191, Period: 3 * time.Second, Timeout: 30 * time.Second, FailureThreshold: 3}
	if c.Probe != want {
		t.Fatalf("probe = %+v, want %+v", c.Probe, want)
	}
	if c.Cluster != "east" || c.GatewayPort != 4143 || c.Mode != ModeEgress || c.Secret != "cluster-credentials-east" {
		t.Fatalf("config = %+v", c)
	}
	if len(c.GatewayHosts) != 2 || c.GatewayHosts[1] != "gw.example.com" {
		t.Fatalf("gateway hosts = %v", c.GatewayHosts)
	}
	if !c.Selector.Matches(labels.Set{"mirror.linkerd.io/exported": "true"}) || c.Selector.Matches(labels.Set{}) {
		t.Fatalf("selector %v", c.Selector)
	}
}

func TestLinkConfigInvalidFields(t *testing.T) {
	valid := func() *Link { return decodeLink(t, linkerdLink) }
	for _, tc := range []struct {
		name  string
		edit  func(l *Link)
		field string
	}{
		{"cluster name with dot", func(l *Link) { l.Spec.TargetClusterName = "east.1" }, "spec.targetClusterName"},
		{"empty cluster name", func(l *Link) { l.Spec.TargetClusterName = "" }, "spec.targetClusterName"},
		{"no secret", func(l *Link) { l.Spec.ClusterCredentialsSecret = "" }, "spec.clusterCredentialsSecret"},
		{"bad gateway host", func(l *Link) { l.Spec.GatewayAddress = "1.2.3.4,not a host" }, "spec.gatewayAddress"},
		{"gateway port text", func(l *Link) { l.Spec.GatewayPort = "http" }, "spec.gatewayPort"},
		{"gateway port range", func(l *Link) { l.Spec.GatewayPort = "70000" }, "spec.gatewayPort"},
		{"no identity", func(l *Link) { l.Spec.GatewayIdentity = "" }, "spec.gatewayIdentity"},
		{"probe path", func(l *Link) { l.Spec.ProbeSpec.Path = "ready" }, "spec.probeSpec.path"},
		{"probe port", func(l *Link) { l.Spec.ProbeSpec.Port = "0" }, "spec.probeSpec.port"},
		{"probe period", func(l *Link) { l.Spec.ProbeSpec.Period = "soon" }, "spec.probeSpec.period"},
		{"negative timeout", func(l *Link) { l.Spec.ProbeSpec.Timeout = "-1s" }, "spec.probeSpec.timeout"},
		{"threshold zero", func(l *Link) { l.Spec.ProbeSpec.FailureThreshold = "0" }, "spec.probeSpec.failureThreshold"},
		{"bad selector", func(l *Link) {
			l.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
		}, "spec.selector"},
		{"bad mode", func(l *Link) { l.Annotations = map[string]string{AnnotationEndpointMode: "tunnel"} }, "metadata.annotations[mcgate.io/endpoint-mode]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := valid()
			tc.edit(l)
			_, err := l.Config()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FieldError", err)
			}
			if fe.Field != tc.field {
				t.Fatalf("field = %q, want %q (%v)", fe.Field, tc.field, err)
			}
		})
	}
}

func TestLinkConfigDefaults(t *testing.T) {
	l := &Link{Spec: LinkSpec{TargetClusterName: "east", ClusterCredentialsSecret: "creds"}}
	l.Annotations = map[string]string{AnnotationEndpointMode: ModeDirect}
	c, err := l.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain != "cluster.local" || c.GatewayPort != 4143 || c.Probe.Period != 3*time.Second || c.Probe.Timeout != 30*time.Second || c.Probe.FailureThreshold != 3 || c.Mode != ModeDirect {
		t.Fatalf("defaults = %+v", c)
	}
	// Linkerd (#11309): no selector selects nothing.
	if !c.Selector.Empty() && c.Selector.Matches(labels.Set{"mirror.linkerd.io/exported": "true"}) {
		t.Fatal("nil selector matched a service")
	}
	if c.Selector.Matches(labels.Set{}) {
		t.Fatal("nil selector matched everything")
	}
	// Bare integers are seconds, as Linkerd's CLI writes them.
	l.Spec.ProbeSpec.Period = "5"
	if c, err = l.Config(); err != nil || c.Probe.Period != 5*time.Second {
		t.Fatalf("period %v, %v", c, err)
	}
}

// FuzzLinkConfig feeds arbitrary YAML/JSON documents through the Link
// decoder and validation, as a Link written by anyone who may write Links
// reaches the mirror: no panic, and whatever validates is usable as is.
func FuzzLinkConfig(f *testing.F) {
	f.Add([]byte(linkerdLink))
	f.Add([]byte(`{"apiVersion":"multicluster.linkerd.io/v1alpha3","kind":"Link","metadata":{"name":"x"},"spec":{"targetClusterName":"east","gatewayPort":"gateway","probeSpec":{"period":"-1s"}}}`))
	f.Add([]byte(`{"spec":{"targetClusterName":"EAST","gatewayAddress":",,","selector":{"matchExpressions":[{"key":"a","operator":"Bogus"}]}}}`))
	f.Add([]byte(`{"spec":{"targetClusterName":"east","gatewayPort":"70000","probeSpec":{"port":"0","failureThreshold":"-3","timeout":"1y"}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil || obj == nil {
			return
		}
		l, err := LinkFromUnstructured(&unstructured.Unstructured{Object: obj})
		if err != nil {
			return
		}
		c, err := l.Config()
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Config error %v (%T) names no field", err, err)
			}
			return
		}
		switch {
		case c.GatewayPort < 1 || c.GatewayPort > 65535:
			t.Fatalf("valid Link with gateway port %d", c.GatewayPort)
		case c.Probe.Path != "" && (c.Probe.Port < 1 || c.Probe.Port > 65535 || c.Probe.Period <= 0 || c.Probe.Timeout <= 0 || c.Probe.FailureThreshold < 1):
			t.Fatalf("valid Link with probe %+v", c.Probe)
		case c.Selector == nil:
			t.Fatal("valid Link without a selector")
		}
	})
}

func TestHolderIdentity(t *testing.T) {
	a, err := HolderIdentity("linkerd-gateway-7d9f-x2x4q")
	if err != nil {
		t.Fatal(err)
	}
	b, err := HolderIdentity("linkerd-gateway-7d9f-x2x4q")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two processes of one name share the identity %q", a)
	}
	for _, tc := range []struct{ identity, name string }{
		{a, "linkerd-gateway-7d9f-x2x4q"},
		{"node-1.example_0123456789abcdef", "node-1.example"},
		{"linkerd-gateway-7d9f-x2x4q", "linkerd-gateway-7d9f-x2x4q"}, // an older gateway's
	} {
		if got := HolderName(tc.identity); got != tc.name {
			t.Errorf("HolderName(%q) = %q, want %q", tc.identity, got, tc.name)
		}
	}
}
