// Package linkerdcli shows that what Linkerd's own CLI does against a
// cluster runs on mcgate: the Links and Secrets that `linkerd multicluster
// link-gen` (edge-26.8.3) printed against an mcgate cluster are kept in
// testdata, and each is applied to a real source cluster whose mcgate
// gateway must mirror from it, so CI guards the interop without Linkerd's
// CLI. testdata/README.md says how they were recorded.
package linkerdcli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The addresses the fixtures were recorded with: east's gateway (the
// Links' gatewayAddress) and west's.
var (
	eastIP = kubetest.HostIP(2).String()
	westIP = kubetest.HostIP(3).String()
)

// linkerdConfig creates what Linkerd's CLI reads of Linkerd's control plane
// in a cluster of a mixed fleet: the namespace linkerd and its ConfigMap
// linkerd-config, whose values hold the cluster and trust domains (copied
// into the Link and the linkerd-namespace Secret by link-gen) and the trust
// anchors (compared by `linkerd multicluster check`).
func linkerdConfig(ctx context.Context, c *kubetest.Cluster, anchorsPEM string) error {
	if err := c.EnsureNamespace(ctx, "linkerd"); err != nil {
		return err
	}
	values := "clusterDomain: cluster.local\nidentityTrustDomain: cluster.local\nidentityTrustAnchorsPEM: |\n"
	for _, l := range strings.Split(strings.TrimSpace(anchorsPEM), "\n") {
		values += "  " + l + "\n"
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "linkerd-config", Namespace: "linkerd",
			Labels: map[string]string{"linkerd.io/control-plane-component": "controller"}},
		Data: map[string]string{"values": values},
	}
	_, err := c.Client.CoreV1().ConfigMaps("linkerd").Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.Client.CoreV1().ConfigMaps("linkerd").Update(ctx, cm, metav1.UpdateOptions{})
	}
	return err
}

// fleet is east and west with mcgate installed, Linkerd's control-plane
// config, one trust anchor, and a gateway process per cluster on the
// recorded addresses.
type fleet struct {
	env *kubetest.Env
	dir string
}

// startFleet sets the fleet up for test t, which may start it once (the
// gateways' addresses are fixed): the gateways stop when t ends, and must
// exit cleanly; the clusters are the package's.
func startFleet(t *testing.T) *fleet {
	t.Helper()
	env := kubetest.Start(t)
	dir := t.TempDir()
	gatewaytest.Install(t, env.East.Kubeconfig, env.West.Kubeconfig)
	gatewaytest.Identities(t, dir, "east", "west")
	anchors, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*kubetest.Cluster{env.East, env.West} {
		if err := linkerdConfig(t.Context(), c, string(anchors)); err != nil {
			t.Fatal(err)
		}
	}
	for _, gw := range []struct {
		c  *kubetest.Cluster
		ip string
	}{{env.East, eastIP}, {env.West, westIP}} {
		g := &gatewaytest.Process{T: t, Log: filepath.Join(dir, gw.c.Name+".log"),
			Env: []string{"POD_NAME=linkerd-gateway-" + gw.c.Name},
			Args: []string{"gateway", "--kubeconfig", gw.c.Kubeconfig,
				"--identity-dir", filepath.Join(dir, gw.c.Name+"-gw"), "--cluster-name", gw.c.Name,
				"--listen-addr", gw.ip + ":4143", "--admin-addr", gw.ip + ":4191",
				"--advertise-address", gw.ip, "--egress-host", gw.ip}}
		g.Start()
		g.StopCleanlyAtCleanup(gw.c.Name+" gateway", 30*time.Second)
		wait.Until(t, 60*time.Second, gw.c.Name+" gateway ready", func() bool {
			resp, err := http.Get("http://" + gw.ip + ":4191/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	return &fleet{env: env, dir: dir}
}

// exportService creates Service name in namespace ns with labels and
// annotations, one port 8080 and a ready endpoint at backend.
func exportService(ctx context.Context, t *testing.T, c *kubetest.Cluster, ns, name, backend string, labels, annotations map[string]string) {
	t.Helper()
	_, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "linkerdcli-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{backend},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}
