package kubefaults

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// endpoint is where west's clients reach the mirror of name: its slice's
// address and port (west's gateway, an egress listener).
func (f *fixture) endpoint(m mirrors, name string) string {
	f.t.Helper()
	ss := m.slices[f.mirrorName(name)]
	if len(ss) != 1 || len(ss[0].Endpoints) == 0 || len(ss[0].Ports) == 0 || ss[0].Ports[0].Port == nil {
		f.t.Fatalf("mirror of %s has no endpoint: %+v", name, ss)
	}
	return net.JoinHostPort(ss[0].Endpoints[0].Addresses[0], strconv.Itoa(int(*ss[0].Ports[0].Port)))
}

// traffic sends one echo through each of addrs in turn, every 100 ms,
// until stop is called, which returns how many succeeded and the failures.
func traffic(addrs []string) (stop func() (int, []error)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var ok int
	var failed []error
	wg.Go(func() {
		for i := 0; ; i++ {
			a := addrs[i%len(addrs)]
			if err := gatewaytest.EchoOnce(a, fmt.Sprintf("request %d", i)); err != nil {
				failed = append(failed, fmt.Errorf("%s at %s: %w", a, time.Now().Format(time.TimeOnly), err))
			} else {
				ok++
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return func() (int, []error) {
		close(done)
		wg.Wait()
		return ok, failed
	}
}

// lease reads the mirror's Lease in west.
func (f *fixture) lease() (*coordinationv1.Lease, error) {
	return f.env.West.Client.CoordinationV1().Leases(deploy.Namespace).Get(f.t.Context(), multicluster.LeaseName, metav1.GetOptions{})
}

// holder is the pod name part of the Lease's holder identity, "" if
// unknown.
func (f *fixture) holder() string {
	l, err := f.lease()
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return multicluster.HolderName(*l.Spec.HolderIdentity)
}

// TestLocalAPIServerRestarted restarts west's API server (the one the
// mirror writes to) while traffic flows through the mirrors.
func TestLocalAPIServerRestarted(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	before := f.linked(5, "")
	var addrs []string // of the services that stay exported (svc1 goes)
	for _, n := range []string{"svc0", "svc2", "svc3", "svc4"} {
		addrs = append(addrs, f.endpoint(before, n))
	}
	wait.Until(t, 60*time.Second, "traffic through every mirror", func() bool {
		for _, a := range addrs {
			if gatewaytest.EchoOnce(a, "first") != nil {
				return false
			}
		}
		return true
	})

	stopTraffic := traffic(addrs)
	restart := time.Now()
	f.must(f.env.West.RestartAPIServer(ctx))
	t.Logf("west's API server restarted in %v", time.Since(restart).Round(100*time.Millisecond))
	// Changes after the restart are mirrored.
	f.must(f.remove(ctx, "svc1"))
	f.must(f.addPort(ctx, "svc2", 9090))
	f.must(f.export(ctx, "new0"))
	after := f.converged(2 * time.Minute)
	keptUIDs(t, before, after)
	t.Logf("changes after the restart mirrored %v after it began", time.Since(restart).Round(100*time.Millisecond))
	wait.Until(t, time.Minute, "west-0 holds the Lease and leads", func() bool {
		return f.holder() == westID(0) && gatewayMetric(westGatewayHost, "mirror_leader", nil) == 1
	})
	ok, failed := stopTraffic()
	t.Logf("traffic through the mirrors during and after the restart: %d ok, %d failed", ok, len(failed))
	if len(failed) > 0 || ok == 0 {
		t.Errorf("the data plane did not keep serving: %d ok, failures %v", ok, failed)
	}
	// The mirror made after the restart carries traffic too.
	addr := f.endpoint(after, "new0")
	wait.Until(t, 30*time.Second, "traffic through new0's mirror", func() bool {
		return gatewaytest.EchoOnce(addr, "new") == nil
	})
}
