package mirror

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

func TestCheckDomain(t *testing.T) {
	gateway := func(annotations map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-gateway", Namespace: "linkerd-multicluster", Annotations: annotations}}
	}
	published := func(d string) *corev1.Service {
		return gateway(map[string]string{multicluster.AnnotationClusterDomain: d})
	}
	for _, tc := range []struct {
		name         string
		linkDomain   string
		gw           *corev1.Service
		mismatch     bool
		unknown      string // a part of the reason the check could not be made
		wantInReport []string
	}{
		{"agree", "cluster.local", published("cluster.local"), false, "", nil},
		{"agree: case and trailing dot", "east.example", published("East.Example."), false, "", nil},
		{"disagree", "cluster.local", published("east.example"), true, "",
			[]string{`"cluster.local"`, `"east.example"`, "cluster east", "linkerd-multicluster/linkerd-gateway",
				"set spec.targetClusterDomain to \"east.example\"", "mcgate install --cluster-domain=cluster.local", "Existing mirrors are kept"}},
		{"disagree: published domain in canonical form", "cluster.local", published("EAST.example."), true, "", []string{`serves names in "east.example"`}},
		{"no annotation (Linkerd's gateway, older mcgate)", "cluster.local", gateway(map[string]string{"mirror.linkerd.io/probe-path": "/ready"}), false, "no mcgate.io/cluster-domain annotation", nil},
		{"no annotations at all", "cluster.local", gateway(nil), false, "no mcgate.io/cluster-domain annotation", nil},
		{"empty annotation", "cluster.local", published(""), false, "no mcgate.io/cluster-domain annotation", nil},
		{"no gateway Service", "cluster.local", nil, false, "no gateway Service", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &multicluster.LinkConfig{Cluster: "east", Domain: tc.linkDomain}
			mm, unknown := checkDomain(cfg, tc.gw, "linkerd-multicluster/linkerd-gateway")
			if (mm != nil) != tc.mismatch {
				t.Fatalf("mismatch %v, want %v", mm, tc.mismatch)
			}
			if (unknown == "") != (tc.unknown == "") || !strings.Contains(unknown, tc.unknown) {
				t.Errorf("unknown %q, want %q", unknown, tc.unknown)
			}
			for _, want := range tc.wantInReport {
				if !strings.Contains(mm.Error(), want) {
					t.Errorf("message %q lacks %q", mm.Error(), want)
				}
			}
		})
	}
}
