package multicluster

import "testing"

func TestGatewayClusterDomain(t *testing.T) {
	for _, tc := range []struct {
		annotations map[string]string
		want        string
		ok          bool
	}{
		{map[string]string{AnnotationClusterDomain: "cluster.local"}, "cluster.local", true},
		{map[string]string{AnnotationClusterDomain: " East.Example. "}, "east.example", true},
		{map[string]string{AnnotationClusterDomain: ""}, "", false},
		{map[string]string{"mirror.linkerd.io/gateway-identity": "x"}, "", false},
		{nil, "", false},
	} {
		if got, ok := GatewayClusterDomain(tc.annotations); got != tc.want || ok != tc.ok {
			t.Errorf("GatewayClusterDomain(%v) = %q, %v; want %q, %v", tc.annotations, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSameClusterDomain(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"cluster.local", "cluster.local", true},
		{"cluster.local", "Cluster.Local.", true},
		{"cluster.local", "east.local", false},
		{"cluster.local", "local", false},
		{"cluster.local", "", false},
	} {
		if got := SameClusterDomain(tc.a, tc.b); got != tc.same {
			t.Errorf("SameClusterDomain(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
