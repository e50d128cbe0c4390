package mirror_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// putRemoteGateway creates or updates east's gateway Service (in the
// namespace named like the Links', as an install in both clusters has it)
// publishing domain.
func (f *fixture) putRemoteGateway(domain string) {
	f.t.Helper()
	ctx := f.t.Context()
	c := f.env.East.Client.CoreV1().Services(f.mcNS)
	svc, err := c.Get(ctx, multicluster.GatewayServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: multicluster.GatewayServiceName, Namespace: f.mcNS},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "mc-gateway", Port: 4143}}}}
	} else if err != nil {
		f.t.Fatal(err)
	}
	svc.Annotations = map[string]string{multicluster.AnnotationClusterDomain: domain}
	if svc.ResourceVersion == "" {
		_, err = c.Create(ctx, svc, metav1.CreateOptions{})
	} else {
		_, err = c.Update(ctx, svc, metav1.UpdateOptions{})
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// setLinkDomain edits the Link's targetClusterDomain.
func (f *fixture) setLinkDomain(domain string) {
	f.t.Helper()
	r := f.dyn.Resource(multicluster.LinkGVR).Namespace(f.mcNS)
	u, err := r.Get(f.t.Context(), f.link, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, domain, "spec", "targetClusterDomain"); err != nil {
		f.t.Fatal(err)
	}
	if _, err := r.Update(f.t.Context(), u, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// waitDomainVerdict waits for the Link's Valid condition to say whether
// its domain disagrees with the gateway's (naming both domains), and for
// the metric to follow.
func (f *fixture) waitDomainVerdict(identity string, mismatch bool, linkDomain, gatewayDomain string) {
	f.t.Helper()
	start := time.Now()
	var shown *metav1.Condition
	// A few seconds: the status is written after statusDelay (2s).
	wait.Within(f.t, 10*time.Second, fmt.Sprintf("Valid condition with mismatch=%v", mismatch), func() (bool, string) {
		shown = linkCondition(f.getLink(), multicluster.ConditionValid)
		c := shown
		if c == nil {
			return false, "no Valid condition"
		}
		if !mismatch {
			return c.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", c)
		}
		return c.Status == metav1.ConditionFalse && c.Reason == mirror.ReasonClusterDomainMismatch &&
			strings.Contains(c.Message, `spec.targetClusterDomain is "`+linkDomain+`"`) &&
			strings.Contains(c.Message, `serves names in "`+gatewayDomain+`"`), fmt.Sprintf("%+v", c)
	})
	f.t.Logf("after %v: Valid=%s reason %s: %s", time.Since(start).Round(time.Millisecond), shown.Status, shown.Reason, shown.Message)
	want := 0.0
	if mismatch {
		want = 1
	}
	wait.For(f.t, fmt.Sprintf("mirror_link_cluster_domain_mismatch = %v", want), func() (bool, string) {
		n := f.metric(identity, "mirror_link_cluster_domain_mismatch", map[string]string{"cluster": f.cluster})
		return n == want, fmt.Sprint(n)
	})
}

// waitEvent waits for an Event of reason on the Link.
func (f *fixture) waitEvent(reason string) {
	f.t.Helper()
	wait.For(f.t, "event "+reason, func() (bool, string) {
		evs, err := f.env.West.Client.CoreV1().Events(f.mcNS).List(f.t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.InvolvedObject.Name == f.link {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
}

// TestE2EClusterDomainMismatch: a Link whose targetClusterDomain is not
// the domain its cluster's gateway publishes says so (Valid=False, an
// Event, a metric) and gets no new mirrors, whose every connection that
// gateway would refuse; fixing the gateway's annotation or the Link
// resumes mirroring, and mirrors written before are never touched.
func TestE2EClusterDomainMismatch(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := f.env.East.EnsureNamespace(ctx, f.mcNS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.env.East.Client.CoreV1().Namespaces().Delete(context.Background(), f.mcNS, metav1.DeleteOptions{})
	})
	f.putRemoteGateway("east.example")
	f.createRemote(exportedService("api", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	f.putSecret(true)
	f.createLink(nil) // targetClusterDomain: cluster.local
	const id = "replica-a"
	f.startMirror(id)

	// At start: the check is made before any mirror is written.
	f.waitDomainVerdict(id, true, "cluster.local", "east.example")
	f.waitEvent(mirror.ReasonClusterDomainMismatch)
	if c := linkCondition(f.getLink(), multicluster.ConditionCredentials); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Credentials %+v, want True: the cluster is watched", c)
	}
	f.createRemote(exportedService("api2", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	f.recheckAll(id)
	for _, n := range []string{"api", "api2"} {
		if _, err := f.westService(n + "-" + f.cluster); !apierrors.IsNotFound(err) {
			t.Fatalf("%s mirrored while the domains disagree: %v", n, err)
		}
	}
	if n := f.mirrorWrites(id); n != 0 {
		t.Fatalf("%v mirror writes while the domains disagree", n)
	}

	// The gateway is reinstalled with the Link's domain: mirroring resumes.
	f.putRemoteGateway("cluster.local")
	f.waitDomainVerdict(id, false, "", "")
	f.waitEvent("ClusterDomainAgrees")
	f.waitMirrored("api mirrored once the domains agree", "api-"+f.cluster)
	f.waitMirrored("api2 mirrored once the domains agree", "api2-"+f.cluster)
	before, err := f.westService("api-" + f.cluster)
	if err != nil {
		t.Fatal(err)
	}

	// The Link is edited to a domain the gateway does not serve: existing
	// mirrors stay as they are, new ones wait.
	f.setLinkDomain("west.example")
	f.waitDomainVerdict(id, true, "west.example", "cluster.local")
	f.createRemote(exportedService("api3", f.ns, corev1.ServicePort{Name: "http", Port: 8080}), true)
	f.recheckAll(id)
	if _, err := f.westService("api3-" + f.cluster); !apierrors.IsNotFound(err) {
		t.Fatalf("api3 mirrored while the domains disagree: %v", err)
	}
	after, err := f.westService("api-" + f.cluster)
	if err != nil || after.UID != before.UID || after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("existing mirror touched while the domains disagree: %v (uid %s→%s)", err, before.UID, after.UID)
	}

	// The Link is fixed.
	f.setLinkDomain("cluster.local")
	f.waitDomainVerdict(id, false, "", "")
	f.waitMirrored("api3 mirrored once the Link is fixed", "api3-"+f.cluster)
}
