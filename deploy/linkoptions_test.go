package deploy

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mcgate/mcgate/mirror/multicluster"
)

// TestLinkExclusionsAndMode: --excluded-labels and --excluded-annotations
// become the Link's excludedLabels and excludedAnnotations (which the
// mirror honours: mirror.TestExcluded and the desired-state tests), and
// --endpoint-mode its mcgate.io/endpoint-mode annotation; a mode the
// mirror would refuse is refused here.
func TestLinkExclusionsAndMode(t *testing.T) {
	target := func() *fake.Clientset {
		c := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: RemoteAccessName, Namespace: Namespace}})
		// The fake tracker has no TokenRequest; the API server's answer is
		// a token and its expiry.
		c.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "token" {
				return false, nil, nil
			}
			return true, &authnv1.TokenRequest{Status: authnv1.TokenRequestStatus{Token: "t",
				ExpirationTimestamp: metav1.NewTime(time.Now().Add(DefaultTokenDuration))}}, nil
		})
		return c
	}
	cfg := &rest.Config{Host: "https://198.18.0.1:6443"}
	base := LinkOptions{ClusterName: "east", GatewayAddresses: "198.18.0.2", GatewayPort: 4143, GatewayIdentity: GatewayIdentity("")}

	o := base
	o.ExcludedLabels = []string{"argocd.argoproj.io/*", "team"}
	o.ExcludedAnnotations = []string{"prometheus.io/scrape"}
	o.EndpointMode = multicluster.ModeDirect
	res, err := Link(context.Background(), target(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := multicluster.LinkFromUnstructured(res.Objects[1])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Spec.ExcludedLabels, o.ExcludedLabels) || !reflect.DeepEqual(l.Spec.ExcludedAnnotations, o.ExcludedAnnotations) {
		t.Errorf("exclusions: labels %v, annotations %v", l.Spec.ExcludedLabels, l.Spec.ExcludedAnnotations)
	}
	c, err := l.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != multicluster.ModeDirect || !reflect.DeepEqual(c.ExcludedLabels, o.ExcludedLabels) {
		t.Errorf("mirror's view: mode %q, excluded labels %v", c.Mode, c.ExcludedLabels)
	}

	res, err = Link(context.Background(), target(), cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Objects[1].GetAnnotations()[multicluster.AnnotationEndpointMode]; ok {
		t.Error("no --endpoint-mode: the Link carries the annotation anyway")
	}
	if m := res.Objects[1].Object["spec"].(map[string]any); m["excludedLabels"] != nil || m["excludedAnnotations"] != nil {
		t.Errorf("no exclusions given: spec %v", m)
	}

	o = base
	o.EndpointMode = "tunnel"
	if _, err := Link(context.Background(), target(), cfg, o); err == nil || !strings.Contains(err.Error(), "must be egress or direct") {
		t.Errorf("--endpoint-mode tunnel: %v", err)
	}
}
