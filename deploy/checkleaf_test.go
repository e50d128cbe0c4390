package deploy

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

const day = 24 * time.Hour

func leafGauge(end time.Time) []byte {
	return fmt.Appendf(nil, "# HELP %[1]s NotAfter of the leaf certificate in use, as a Unix timestamp.\n# TYPE %[1]s gauge\n%[1]s %d\n",
		identity.LeafExpiryMetric, end.Unix())
}

// TestLeafExpiryFromMetrics: the check judges the gauge a gateway serves.
func TestLeafExpiryFromMetrics(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		end    time.Time
		ok     bool
		detail string
	}{
		{"far", now.Add(300 * day), true, ""},
		{"just outside the window", now.Add(identity.DefaultLeafExpiryWarning + time.Hour), true, ""},
		{"near", now.Add(5*day + 3*time.Hour), false, "gateway pod gw-1: the leaf expires at 2026-12-09T15:00:00Z, in 5d3h (warned 30d0h ahead)"},
		{"in minutes", now.Add(90 * time.Minute), false, "in 1h30m (warned"},
		{"expired", now.Add(-time.Hour), false, "gateway pod gw-1: the leaf expired at 2026-12-04T11:00:00Z: peers refuse the gateway"},
	} {
		t.Run(c.name, func(t *testing.T) {
			end, found, err := leafEndFromMetrics(leafGauge(c.end))
			if err != nil || !found || !end.Equal(c.end) {
				t.Fatalf("leafEndFromMetrics = %v, %v, %v; want %v", end, found, err, c.end)
			}
			r := leafExpiryResult([]leafEnd{{"gateway pod gw-1", end}}, nil, now, identity.DefaultLeafExpiryWarning, Namespace, IdentitySecretName)
			if r.OK != c.ok || !strings.Contains(r.Detail, c.detail) {
				t.Errorf("result %+v; want OK %v, detail with %q", r, c.ok, c.detail)
			}
			if !c.ok && (!strings.Contains(r.Hint, identity.RenewLeafCommand) ||
				!strings.Contains(r.Hint, "kubectl -n linkerd-multicluster create secret generic linkerd-gateway-identity --type kubernetes.io/tls --from-file=<dir>")) {
				t.Errorf("hint %q does not say how to renew", r.Hint)
			}
		})
	}
	if _, found, err := leafEndFromMetrics([]byte("# TYPE gateway_alive gauge\ngateway_alive{target_cluster_name=\"east\"} 1\n")); found || err != nil {
		t.Errorf("a gateway without the gauge: found %v, err %v", found, err)
	}
	if _, _, err := leafEndFromMetrics([]byte("not metrics {")); err == nil {
		t.Error("garbage metrics parsed")
	}
}

// proxied answers the fake API server's pod proxy with a body.
type proxied []byte

func (p proxied) DoRaw(context.Context) ([]byte, error) { return p, nil }
func (p proxied) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(p))), nil
}

// TestCheckLeafExpiry runs the check against a cluster (fake clientset) with
// a ready gateway pod serving the gauge and the identity Secret.
func TestCheckLeafExpiry(t *testing.T) {
	ca := testpki.New(t)
	tlsCrt := func(in time.Duration) []byte {
		leaf := ca.Leaf(t, "linkerd-gateway", Namespace, identity.CertOptions{NotAfter: time.Now().Add(in)})
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Cert.Raw})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "linkerd-gateway-1", Namespace: Namespace, Labels: map[string]string{LabelComponent: "gateway"}},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, c := range []struct {
		name    string
		gauge   time.Duration // 0: no gateway pod
		secret  time.Duration // 0: no tls.crt in the Secret
		want    []string      // in Detail; none: the check passes
		skipped bool          // nothing to look at: no result
	}{
		{name: "both far", gauge: 300 * day, secret: 300 * day},
		{name: "running leaf near, Secret renewed", gauge: 5 * day, secret: 300 * day,
			want: []string{"gateway pod linkerd-gateway-1: the leaf expires at"}},
		{name: "Secret near, no gateway pod", secret: 2 * day,
			want: []string{"secret linkerd-multicluster/linkerd-gateway-identity: the leaf expires at"}},
		{name: "both near", gauge: 5 * day, secret: 5 * day, want: []string{"gateway pod", "secret"}},
		{name: "nothing to read", skipped: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: IdentitySecretName, Namespace: Namespace},
				Data: map[string][]byte{"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Anchor.Cert.Raw})}}
			if c.secret != 0 {
				secret.Data[identity.CertFile] = tlsCrt(c.secret)
			}
			objs := []runtime.Object{secret}
			if c.gauge != 0 {
				objs = append(objs, pod)
			}
			client := fake.NewClientset(objs...)
			body := leafGauge(time.Now().Add(c.gauge))
			client.PrependProxyReactor("pods", func(k8stesting.Action) (bool, restclient.ResponseWrapper, error) {
				return true, proxied(body), nil
			})
			ck := &checker{cfg: CheckConfig{Client: client, Namespace: Namespace, IdentitySecret: IdentitySecretName}}
			ck.checkLeafExpiry(t.Context())
			if c.skipped {
				if len(ck.results) != 0 {
					t.Errorf("results %+v with nothing to read", ck.results)
				}
				return
			}
			if len(ck.results) != 1 {
				t.Fatalf("results %+v", ck.results)
			}
			r := ck.results[0]
			if r.OK != (len(c.want) == 0) {
				t.Errorf("OK %v: %+v", r.OK, r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.Detail, w) {
					t.Errorf("detail %q lacks %q", r.Detail, w)
				}
			}
		})
	}
}
