// Package e2e runs the real mcgate binary on two real clusters: install,
// identities, two gateways with the mirror, link, export, and bytes from a
// west client through both gateways to an east backend.
package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func mcgateBin(t *testing.T) string { return testbin.Mcgate(t) }

// TestWestToEastThroughBothGateways is the multicluster guide end to end.
func TestWestToEastThroughBothGateways(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	mc := mcgateBin(t)
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }

	gatewaytest.Install(t, env.East.Kubeconfig, env.West.Kubeconfig)
	gatewaytest.Identities(t, dir, "east", "west")

	eastIP, westIP := kubetest.HostIP(2).String(), kubetest.HostIP(3).String()
	gw := func(c *kubetest.Cluster, ip string) *gatewaytest.Process {
		g := &gatewaytest.Process{T: t, Log: p(c.Name + ".log"), Args: []string{"gateway", "--kubeconfig", c.Kubeconfig,
			"--identity-dir", p(c.Name + "-gw"), "--cluster-name", c.Name,
			"--listen-addr", ip + ":4143", "--admin-addr", ip + ":4191",
			"--advertise-address", ip, "--egress-host", ip, "--log-level", "debug"}}
		g.Start()
		g.StopAtCleanup(c.Name + " gateway")
		return g
	}
	east := gw(env.East, eastIP)
	gw(env.West, westIP)
	for _, ip := range []string{eastIP, westIP} {
		wait.Until(t, 60*time.Second, ip+" ready", func() bool {
			resp, err := http.Get("http://" + ip + ":4191/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	// Export api in east; a second, unexported service stays unreachable.
	ns := kubetest.Namespace(t, env.East, env.West)
	backendAddr := kubetest.HostIP(20).String() + ":8080"
	ln, err := net.Listen("tcp", backendAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepts := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts <- struct{}{}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	for _, name := range []string{"api", "secret"} {
		labels := map[string]string{}
		if name == "api" {
			labels["mirror.linkerd.io/exported"] = "true"
		}
		_, err := env.East.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = env.East.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns,
				Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "e2e"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{kubetest.HostIP(20).String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}

	link := gatewaytest.Run(t, nil, mc, "link", "--kubeconfig", env.East.Kubeconfig, "--cluster-name", "east",
		"--gateway-addresses", eastIP, "--gateway-port", "4143")
	gatewaytest.Run(t, link, "kubectl", "--kubeconfig", env.West.Kubeconfig, "apply", "-f", "-")

	// mirrorEndpoint returns api-east's slice endpoint and its readiness.
	mirrorEndpoint := func() (string, bool, bool) {
		slices, err := env.West.Client.DiscoveryV1().EndpointSlices(ns).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=api-east"})
		if err != nil {
			return "", false, false
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) > 0 && len(s.Ports) > 0 && s.Ports[0].Port != nil {
					return net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*s.Ports[0].Port))), ptr.Deref(ep.Conditions.Ready, false), true
				}
			}
		}
		return "", false, false
	}
	var addr string
	wait.Until(t, 60*time.Second, "api-east mirrored with a ready endpoint that answers", func() bool {
		a, ready, ok := mirrorEndpoint()
		addr = a
		return ok && ready && gatewaytest.EchoOnce(a, "first bytes west→east") == nil
	})
	if !strings.HasPrefix(addr, westIP+":") {
		t.Fatalf("mirror endpoint %s is not west's gateway %s", addr, westIP)
	}
	for i := range 5 {
		if err := gatewaytest.EchoOnce(addr, fmt.Sprintf("request %d", i)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}

	// Deny by default: the unexported service is refused at east's gateway
	// and never reaches its backend.
	for len(accepts) > 0 {
		<-accepts
	}
	cert, err := tls.LoadX509KeyPair(p("west-gw/tls.crt"), p("west-gw/tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", eastIP+":4143", &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		ServerName: "secret." + ns + ".svc.cluster.local", MinVersion: tls.VersionTLS13})
	if err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Fatal("unexported service answered")
		}
		c.Close()
	}
	if len(accepts) != 0 {
		t.Fatal("a connection for the unexported service reached the backend")
	}

	// East's gateway dies: the probe marks the mirror's endpoint not ready;
	// it comes back and the endpoint is ready and usable again.
	east.Kill()
	wait.Until(t, 90*time.Second, "endpoint not ready after east's gateway died", func() bool {
		_, ready, ok := mirrorEndpoint()
		return ok && !ready
	})
	east.Start()
	wait.Until(t, 90*time.Second, "endpoint ready and answering after east's gateway restarted", func() bool {
		a, ready, ok := mirrorEndpoint()
		return ok && ready && gatewaytest.EchoOnce(a, "after restart") == nil
	})

}
