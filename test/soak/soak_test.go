package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
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
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

const (
	churned       = 100 // services churned in east
	loadWorkers   = 2   // each opens a new connection every 20 ms
	loadStreams   = 4   // long connections for the whole run
	convergeLimit = 2 * time.Minute
	settleLimit   = 30 * time.Second
)

// soakDuration is the length of the churn and load phase: short by default
// so that `go test ./...` runs it, MCGATE_SOAK_DURATION (10m) for `make soak`.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("MCGATE_SOAK_DURATION")
	if v == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("MCGATE_SOAK_DURATION=%q: want a positive duration", v)
	}
	return d
}

func soakSeed(t *testing.T) uint64 {
	v := os.Getenv("MCGATE_SOAK_SEED")
	if v == "" {
		return uint64(time.Now().UnixNano())
	}
	s, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("MCGATE_SOAK_SEED=%q: want an unsigned integer", v)
	}
	return s
}

// TestMirrorSoak links west to east with two gateway processes, churns a
// hundred exported services in east while connections flow west → east
// through a steady exported service, and then checks that the mirror
// converged to exactly east's exported set, that every connection
// succeeded, and that both gateways returned to their baseline goroutines,
// fds and heap once the churned services were gone.
func TestMirrorSoak(t *testing.T) {
	duration, seed := soakDuration(t), soakSeed(t)
	t.Logf("soak %v, churn seed %d (MCGATE_SOAK_SEED replays it)", duration, seed)
	env := kubetest.Start(t)
	ctx := t.Context()
	gws, ns, steady := linkedGateways(t, env)
	east, west := gws[0], gws[1]

	// Warm every path once so that pools and caches exist in the baseline.
	for i := range 5 {
		if err := echoOnce(steady, fmt.Sprintf("warm-up %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	base := [2]resources{east.mustSample(t), west.mustSample(t)}

	loadCtx, stopLoad := context.WithTimeout(ctx, duration)
	defer stopLoad()
	var (
		wg    sync.WaitGroup
		load  *loadResult
		churn = newChurner(env.East.Client, ns, churned, seed)
	)
	wg.Go(func() { load = runLoad(loadCtx, steady, loadWorkers, loadStreams) })
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for loadCtx.Err() == nil {
			churn.round(ctx) // not loadCtx: a round is never cut half-way
			select {
			case <-loadCtx.Done():
			case <-tick.C:
			}
		}
	})
	peak := [2]resources{}
	sampler := time.NewTicker(max(duration/10, 2*time.Second))
	for done := false; !done; {
		select {
		case <-loadCtx.Done():
			done = true
		case <-sampler.C:
			for i, g := range gws {
				r, err := g.sample()
				if err != nil {
					t.Logf("%s gateway: peak sample: %v", g.name, err)
				} else if r.goroutines > peak[i].goroutines {
					peak[i] = r
				}
			}
		}
	}
	sampler.Stop()
	wg.Wait()

	// The mirror catches up with the churn's last state, then with no
	// churned service at all.
	finalMirrors := 0
	wait.ForErr(t, convergeLimit, "west's mirrors to match east's exported services after the churn", func() error {
		mirrors, ports, err := mirrorsMatch(ctx, env.East.Client, env.West.Client, ns)
		if err != nil {
			return err
		}
		finalMirrors = mirrors
		return egressInUse(west, ports)
	})
	if err := churn.deleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	wait.ForErr(t, convergeLimit, "west's mirrors to drop every churned service", func() error {
		mirrors, ports, err := mirrorsMatch(ctx, env.East.Client, env.West.Client, ns)
		if err != nil {
			return err
		}
		if mirrors != 1 || ports != 1 {
			return fmt.Errorf("%d mirrors with %d egress ports, want the steady service's 1 and 1", mirrors, ports)
		}
		return egressInUse(west, ports)
	})
	if err := echoOnce(steady, "after the churn"); err != nil {
		t.Errorf("steady service after the churn: %v", err)
	}

	// Everything must go back to the baseline.
	var after [2]resources
	settled := [2]bool{}
	for i, g := range gws {
		settled[i] = wait.Poll(settleLimit, func() bool {
			r, err := g.sample()
			if err != nil {
				return false
			}
			after[i] = r
			return r.within(base[i])
		})
	}

	streams := load.streamsOK.Load()
	var report strings.Builder
	fmt.Fprintf(&report, "mirror soak %v (seed %d): %s; %d mirrors (steady included) at the end of the churn, then the steady one alone\n",
		duration, seed, churn.summary(), finalMirrors)
	fmt.Fprintf(&report, "west mirror: %s\n", mirrorWork(west))
	fmt.Fprintf(&report, "west→east through both gateways: %d new connections, %d/%d streams (%d messages), %d failed\n",
		load.newOK.Load(), streams, loadStreams, load.streamMsgs.Load(), load.failed.Load())
	for i, g := range gws {
		fmt.Fprintf(&report, "%s gateway baseline:   %v\n%s gateway peak:       %v\n%s gateway after load: %v\n",
			g.name, base[i], g.name, peak[i], g.name, after[i])
	}
	t.Log("\n" + report.String())
	if path := os.Getenv("MCGATE_SOAK_REPORT"); path != "" {
		if err := appendFile(path, report.String()); err != nil {
			t.Error(err)
		}
	}
	if churn.firstErr != nil {
		t.Logf("churn: first failed write (resynced): %v", churn.firstErr)
	}
	if load.failed.Load() > 0 {
		t.Errorf("%d connections to the steady service failed during the churn (first: %v)", load.failed.Load(), load.firstErr.Load())
	}
	for i, g := range gws {
		if !settled[i] {
			t.Errorf("%s gateway did not return to baseline within %v: baseline %v, after %v (slack %d goroutines, %d fds, %d MiB)",
				g.name, settleLimit, base[i], after[i], goroutineSlack, fdSlack, heapSlack>>20)
		}
	}
}

// linkedGateways installs mcgate in both clusters, starts east's and
// west's gateways on 198.18.0.2 and .3 with identities under one anchor,
// exports api (an echo backend on 198.18.0.20:8080) in a namespace of the
// test, links west to east and returns the gateways, the namespace and
// the address in west (west's gateway, api-east's egress port) that
// reaches api through both gateways.
func linkedGateways(t *testing.T, env *kubetest.Env) ([2]*gateway, string, string) {
	ctx := t.Context()
	gatewaytest.Install(t, env.East.Kubeconfig, env.West.Kubeconfig)
	ca := testpki.New(t)
	westCA := &testpki.CA{Anchor: ca.Anchor, Issuer: testpki.NewIssuer(t, ca.Anchor)}
	const sa, saNS = "linkerd-gateway", "linkerd-multicluster"
	eastIP, westIP := kubetest.HostIP(2).String(), kubetest.HostIP(3).String()
	gws := [2]*gateway{
		startGateway(t, env.East, eastIP, ca.IdentityDir(t, sa, saNS)),
		startGateway(t, env.West, westIP, westCA.IdentityDir(t, sa, saNS)),
	}

	ns := kubetest.Namespace(t, env.East, env.West)
	// The echo backend listens on a host address: EndpointSlices refuse
	// loopback, so testproxy's backends on 127.0.0.1 cannot be exported.
	backend := kubetest.HostIP(20)
	ln, err := net.Listen("tcp", backend.String()+":8080")
	if err != nil {
		t.Fatal(err)
	}
	testproxy.ServeBackend(t, ln, testproxy.Echo)
	_, err = env.East.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns, Labels: map[string]string{exportLabel: "true"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.East.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: "api", discoveryv1.LabelManagedBy: "soak"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{backend.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	link := gatewaytest.Run(t, nil, testbin.Mcgate(t), "link", "--kubeconfig", env.East.Kubeconfig, "--cluster-name", linkName,
		"--gateway-addresses", eastIP, "--gateway-port", "4143")
	gatewaytest.Run(t, link, "kubectl", "--kubeconfig", env.West.Kubeconfig, "apply", "-f", "-")

	var steady string
	wait.ForErr(t, 90*time.Second, "api-east mirrored in west with a ready endpoint that answers", func() error {
		slices, err := env.West.Client.DiscoveryV1().EndpointSlices(ns).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=api-" + linkName})
		if err != nil {
			return err
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 0 || len(s.Ports) == 0 || s.Ports[0].Port == nil {
					continue
				}
				if !ptr.Deref(ep.Conditions.Ready, false) {
					return fmt.Errorf("endpoint %s not ready", ep.Addresses[0])
				}
				steady = net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(*s.Ports[0].Port)))
				return echoOnce(steady, "first bytes west→east")
			}
		}
		return fmt.Errorf("no EndpointSlice with an endpoint for api-%s yet", linkName)
	})
	if !strings.HasPrefix(steady, westIP+":") {
		t.Fatalf("mirror endpoint %s is not west's gateway %s", steady, westIP)
	}
	return gws, ns, steady
}

// egressInUse checks the west mirror's own count of allocated egress ports
// against the ports its EndpointSlices use: a port freed in the API but not
// in the allocator is a leak that exhausts the range over weeks.
func egressInUse(west *gateway, want int) error {
	m, err := west.metrics()
	if err != nil {
		return err
	}
	if got := int(m["mirror_egress_ports_in_use"]); got != want {
		return fmt.Errorf("mirror_egress_ports_in_use %d, EndpointSlices use %d", got, want)
	}
	return nil
}

// mirrorWork sums the west mirror's writes and reconciles, for the report.
func mirrorWork(west *gateway) string {
	m, err := west.metrics()
	if err != nil {
		return err.Error()
	}
	var writes float64
	for k, v := range m {
		if strings.HasPrefix(k, "mirror_writes_total{") {
			writes += v
		}
	}
	return fmt.Sprintf("%.0f API writes, %.0f reconciles ok, %.0f failed", writes,
		m[`mirror_reconciles_total{result="ok"}`], m[`mirror_reconciles_total{result="error"}`])
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
