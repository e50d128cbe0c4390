package deploy_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror/multicluster"
	"github.com/mcgate/mcgate/probe"
)

func anchorPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func putIdentity(t *testing.T, client kubernetes.Interface, ca []byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: deploy.IdentitySecretName, Namespace: deploy.Namespace}, Data: map[string][]byte{"ca.crt": ca}}
	if _, err := client.CoreV1().Secrets(deploy.Namespace).Update(ctx, s, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = client.CoreV1().Secrets(deploy.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// serveAdmin runs a probe.Admin (the gateway's admin server) on addr.
func serveAdmin(t *testing.T, addr string, g prometheus.Gatherer, ready func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	testproxy.ServeAdmin(t, ln, probe.AdminConfig{Gatherer: g, Ready: ready})
}

// failing returns the failed (not OK, not warning) check names with details.
func failing(results []deploy.CheckResult) map[string]string {
	m := map[string]string{}
	for _, r := range results {
		if !r.OK && !r.Warning {
			m[r.Name] = r.Detail
		}
	}
	return m
}

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	// Long enough for three failed probes and a batched status write.
	wait.Within(t, 45*time.Second, what, func() (bool, string) {
		ok, err := cond()
		return ok, fmt.Sprint(err)
	})
}

// TestCheckAndGateways runs check and gateways on a healthy link (a real
// mirror with real probes of east's probe endpoint), then breaks it one way
// at a time: a mirror without endpoints, a dead gateway, bad credentials,
// different trust anchors; each failure names its cause.
func TestCheckAndGateways(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	install(t, env.East.Kubeconfig, deploy.Options{ServiceType: corev1.ServiceTypeNodePort, NodePort: 30453, ProbeNodePort: 30454})
	install(t, env.West.Kubeconfig, deploy.Options{})
	ca := anchorPEM(t, "root.linkerd.cluster.local")
	putIdentity(t, env.East.Client, ca)
	putIdentity(t, env.West.Client, ca)

	// East's gateway probe endpoint, on the Link's address and probe node port.
	var eastReady atomic.Bool
	eastReady.Store(true)
	serveAdmin(t, "198.18.0.22:30454", prometheus.NewRegistry(), func() error {
		if !eastReady.Load() {
			return errors.New("stopped")
		}
		return nil
	})
	const cluster = "eastb"
	res, err := deploy.Link(ctx, env.East.Client, env.East.Config, deploy.LinkOptions{ClusterName: cluster, GatewayAddresses: "198.18.0.22"})
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, env.West.Kubeconfig, yamlOf(t, res.Objects), "apply", "-f", "-")
	westDyn := dynamic.NewForConfigOrDie(env.West.Config)
	t.Cleanup(func() {
		if objs, err := deploy.Unlink(ctx, env.West.Client, westDyn, "", cluster); err == nil {
			kubectl(t, env.West.Kubeconfig, yamlOf(t, objs), "delete", "--ignore-not-found", "-f", "-")
		}
	})

	// East exports api with one ready endpoint.
	ns := kubetest.Namespace(t, env.East, env.West)
	exported := map[string]string{"mirror.linkerd.io/exported": "true"}
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: exported},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}}}
	}
	if _, err := env.East.Client.CoreV1().Services(ns).Create(ctx, svc("api"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready, port, portName := true, int32(8080), "http"
	_, err = env.East.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "api-1", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.30"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// West's gateway: mirror + probe workers + admin, as cmd/mcgate wires them.
	reg := prometheus.NewRegistry()
	workers, err := probe.NewWorkers(probe.WorkersConfig{Log: zerolog.Nop(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "probe workers", workers.Run)
	runMirrorAsGateway(t, env.West, "check-test", workers, reg)
	const westAdmin = "198.18.0.23:4191"
	serveAdmin(t, westAdmin, reg, func() error { return nil })

	cfg := deploy.CheckConfig{Client: env.West.Client, Dynamic: westDyn,
		Remote: func(c string) (kubernetes.Interface, error) {
			if c == cluster {
				return env.East.Client, nil
			}
			return nil, errors.New("unknown cluster")
		},
		GatewayReady: func(ctx context.Context) error { return deploy.AdminReady(ctx, westAdmin) },
	}
	linkAlive := func(want metav1.ConditionStatus) func() (bool, error) {
		return func() (bool, error) {
			u, err := westDyn.Resource(multicluster.LinkGVR).Namespace(deploy.Namespace).Get(ctx, cluster, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			l, err := multicluster.LinkFromUnstructured(u)
			if err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(l.Status.Conditions, multicluster.ConditionGatewayAlive)
			return c != nil && c.Status == want, nil
		}
	}
	mirrorReady := func(name string) func() (bool, error) {
		return func() (bool, error) {
			// The mirror's EndpointSlice is named like the mirror.
			sl, err := env.West.Client.DiscoveryV1().EndpointSlices(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					return true, nil
				}
			}
			return false, nil
		}
	}
	// Other tests' Links in this cluster are not this test's concern.
	onlyOurs := func(m map[string]string) map[string]string {
		for k, v := range m {
			if !strings.Contains(v, cluster) {
				delete(m, k)
			}
		}
		return m
	}

	t.Run("healthy", func(t *testing.T) {
		waitFor(t, "GatewayAlive=True", linkAlive(metav1.ConditionTrue))
		waitFor(t, "api-eastb with ready endpoints", mirrorReady("api-"+cluster))
		results, ok := deploy.Check(ctx, cfg)
		var out bytes.Buffer
		if err := deploy.WriteCheck(&out, results); err != nil {
			t.Fatal(err)
		}
		t.Logf("check:\n%s", out.String())
		if !ok {
			t.Fatalf("check fails on a healthy link:\n%s", out.String())
		}
		if strings.Contains(out.String(), "‼") {
			t.Errorf("warnings on a healthy link with anchors reachable:\n%s", out.String())
		}
		// gateways: from the west gateway's own metrics.
		var rows []deploy.GatewayStatus
		waitFor(t, "a successful probe in the metrics", func() (bool, error) {
			m, err := deploy.ScrapeAdmin(ctx, westAdmin)
			if err != nil {
				return false, err
			}
			if rows, err = deploy.Gateways(ctx, env.West.Client, westDyn, "", m); err != nil {
				return false, err
			}
			for _, r := range rows {
				if r.ClusterName == cluster && r.Alive && r.LatencyP50 >= 0 {
					return true, nil
				}
			}
			return false, nil
		})
		for _, r := range rows {
			if r.ClusterName == cluster && (r.NumberOfServices != 1 || r.LatencyP99 < r.LatencyP50) {
				t.Errorf("gateways row %+v: want 1 service, p50 ≤ p99", r)
			}
		}
		var tbl bytes.Buffer
		if err := deploy.WriteGateways(&tbl, rows); err != nil {
			t.Fatal(err)
		}
		t.Logf("gateways:\n%s", tbl.String())
		if !strings.HasPrefix(tbl.String(), "CLUSTER      ALIVE  NUM_SVC  LATENCY_P50  LATENCY_P95  LATENCY_P99") ||
			!strings.Contains(tbl.String(), cluster+"        True   1 ") {
			t.Errorf("gateways table:\n%s", tbl.String())
		}
		if _, err := json.Marshal(rows); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("mirror without endpoints", func(t *testing.T) {
		if _, err := env.East.Client.CoreV1().Services(ns).Create(ctx, svc("idle"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "mirror idle-eastb", func() (bool, error) {
			_, err := env.West.Client.CoreV1().Services(ns).Get(ctx, "idle-"+cluster, metav1.GetOptions{})
			return err == nil, err
		})
		results, ok := deploy.Check(ctx, cfg)
		f := onlyOurs(failing(results))
		if ok || len(f) != 1 || !strings.Contains(f["all mirror services have endpoints"], ns+"/idle-"+cluster+" has no ready endpoints") {
			t.Fatalf("check with an empty mirror: ok=%v, failing %v", ok, f)
		}
		if err := env.East.Client.CoreV1().Services(ns).Delete(ctx, "idle", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "mirror idle-eastb gone", func() (bool, error) {
			_, err := env.West.Client.CoreV1().Services(ns).Get(ctx, "idle-"+cluster, metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		})
	})

	t.Run("dead gateway", func(t *testing.T) {
		eastReady.Store(false)
		waitFor(t, "GatewayAlive=False", linkAlive(metav1.ConditionFalse))
		results, ok := deploy.Check(ctx, cfg)
		f := onlyOurs(failing(results))
		if ok || !strings.Contains(f["gateways of all Links are alive"], "Link "+cluster+": gateway 198.18.0.22:30454 is not alive") {
			t.Fatalf("check with a dead gateway: ok=%v, failing %v", ok, f)
		}
		m, err := deploy.ScrapeAdmin(ctx, westAdmin)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := deploy.Gateways(ctx, env.West.Client, westDyn, "", m)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.ClusterName == cluster && r.Alive {
				t.Errorf("gateways says %s alive while its probe fails", cluster)
			}
		}
		eastReady.Store(true)
		waitFor(t, "GatewayAlive=True again", linkAlive(metav1.ConditionTrue))
		waitFor(t, "api-eastb ready again", mirrorReady("api-"+cluster))
	})

	t.Run("broken credentials", func(t *testing.T) {
		sec, err := env.West.Client.CoreV1().Secrets(deploy.Namespace).Get(ctx, deploy.CredentialsSecretName(cluster), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		good := sec.Data[multicluster.SecretKey]
		bad := []byte(strings.Replace(string(good), "token: ", "token: x", 1))
		patch := func(kc []byte) {
			b, _ := json.Marshal(map[string]any{"data": map[string]any{multicluster.SecretKey: kc}})
			if _, err := env.West.Client.CoreV1().Secrets(deploy.Namespace).Patch(ctx, sec.Name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		patch(bad)
		results, ok := deploy.Check(ctx, cfg)
		f := onlyOurs(failing(results))
		if d := f["remote cluster access credentials are valid"]; ok || !strings.Contains(d, "Link "+cluster+": the target API server") || !strings.Contains(d, "rejects the token") {
			t.Fatalf("check with a bad token: ok=%v, failing %v", ok, f)
		}
		patch(good)
	})

	t.Run("different anchors", func(t *testing.T) {
		putIdentity(t, env.East.Client, anchorPEM(t, "other root"))
		defer putIdentity(t, env.East.Client, ca)
		results, ok := deploy.Check(ctx, cfg)
		f := failing(results)
		if ok || !strings.Contains(f["clusters share trust anchors"], "cluster "+cluster+": ca.crt of linkerd-multicluster/linkerd-gateway-identity differs") {
			t.Fatalf("check with different anchors: ok=%v, failing %v", ok, f)
		}
	})
}
