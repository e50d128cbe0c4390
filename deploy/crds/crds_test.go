package crds

import (
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func TestLinkCRD(t *testing.T) {
	b, err := FS.ReadFile("links.multicluster.linkerd.io.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &crd); err != nil {
		t.Fatal(err)
	}
	if crd.Name != "links.multicluster.linkerd.io" || crd.Spec.Scope != apiextensionsv1.NamespaceScoped || crd.Spec.Names.Kind != "Link" {
		t.Fatalf("identity: %s %s %s", crd.Name, crd.Spec.Scope, crd.Spec.Names.Kind)
	}
	storage := map[string]bool{}
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			t.Errorf("%s not served", v.Name)
		}
		storage[v.Name] = v.Storage
		if v.Subresources == nil || v.Subresources.Status == nil {
			t.Errorf("%s: no status subresource", v.Name)
		}
		cols := map[string]string{}
		for _, c := range v.AdditionalPrinterColumns {
			cols[c.Name] = c.JSONPath
		}
		for name, path := range map[string]string{
			"Cluster": ".spec.targetClusterName",
			"Gateway": ".spec.gatewayAddress",
			"Alive":   `.status.conditions[?(@.type=="GatewayAlive")].status`,
		} {
			if cols[name] != path {
				t.Errorf("%s: column %s = %q, want %q", v.Name, name, cols[name], path)
			}
		}
		spec := v.Schema.OpenAPIV3Schema.Properties["spec"].Properties
		for _, f := range []string{"targetClusterName", "targetClusterDomain", "clusterCredentialsSecret", "gatewayAddress", "gatewayPort", "gatewayIdentity", "probeSpec", "selector", "excludedLabels", "excludedAnnotations"} {
			if _, ok := spec[f]; !ok {
				t.Errorf("%s: spec.%s missing", v.Name, f)
			}
		}
	}
	want := map[string]bool{"v1alpha1": false, "v1alpha2": false, "v1alpha3": true}
	if len(storage) != len(want) {
		t.Fatalf("versions %v", storage)
	}
	for k, v := range want {
		if s, ok := storage[k]; !ok || s != v {
			t.Errorf("version %s storage=%v present=%v, want storage=%v", k, s, ok, v)
		}
	}
}
