package kubefaults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/mirror/multicluster"
)

// churn creates, updates, unexports and deletes exported services in east,
// one operation every 100 ms, keeping about as many exported as it started
// with, until stopped (at the latest when the test ends).
type churn struct {
	f       *fixture
	ops     atomic.Int64
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{} // closed when the goroutine returns
	err     error         // why it stopped early; read after done
}

func startChurn(f *fixture, live []string) *churn {
	c := &churn{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	rnd := rand.New(rand.NewPCG(7, 7))
	pick := func() (string, int) {
		i := rnd.IntN(len(live))
		return live[i], i
	}
	go func() {
		defer close(c.done)
		ctx := f.t.Context()
		for k := 0; ; k++ {
			var err error
			switch k % 6 {
			case 0, 3:
				n := fmt.Sprintf("c%d", k)
				if err = f.export(ctx, n); err == nil {
					live = append(live, n)
				}
			case 1, 4:
				n, _ := pick()
				err = f.addPort(ctx, n, int32(10000+k))
			case 2:
				n, i := pick()
				if err = f.remove(ctx, n); err == nil {
					live = append(live[:i], live[i+1:]...)
				}
			case 5:
				n, i := pick()
				if err = f.unexport(ctx, n); err == nil {
					live = append(live[:i], live[i+1:]...)
				}
			}
			if err != nil {
				c.err = fmt.Errorf("churn operation %d: %w", k, err)
				return
			}
			c.ops.Add(1)
			select {
			case <-c.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	f.t.Cleanup(c.halt)
	return c
}

func (c *churn) halt() {
	c.stopped.Do(func() { close(c.stop) })
	<-c.done
}

// Stop ends the churn and returns how many operations it made.
func (c *churn) Stop() int64 {
	c.f.t.Helper()
	c.halt()
	if c.err != nil {
		c.f.t.Fatal(c.err)
	}
	return c.ops.Load()
}

// waitOps waits until the churn has made n operations (or failed).
func (c *churn) waitOps(n int64) {
	c.f.t.Helper()
	wait.Until(c.f.t, time.Minute, fmt.Sprintf("%d churn operations", n), func() bool {
		select {
		case <-c.done:
			c.Stop() // fails the test with the reason
			return true
		default:
			return c.ops.Load() >= n
		}
	})
}

// TestLeaderKilledUnderChurn runs two west replicas, churns 100 exported
// services in east, and kills the leading replica (SIGKILL: no Lease
// release) in the middle: the other takes over within the lease time and
// the mirrors end up exactly one Service and one EndpointSlice per exported
// service.
func TestLeaderKilledUnderChurn(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.eastGateway()
	replicas := []*gatewaytest.Process{f.westGateway(0), f.westGateway(1)}
	live := make([]string, 100)
	var wg sync.WaitGroup
	errs := make([]error, len(live))
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(live); i += 4 {
				live[i] = fmt.Sprintf("svc%d", i)
				errs[i] = f.export(ctx, live[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		f.must(err)
	}
	f.link("")
	start := time.Now()
	f.converged(3 * time.Minute)
	t.Logf("100 services mirrored in %v", time.Since(start).Round(100*time.Millisecond))

	c := startChurn(f, live)
	c.waitOps(30)
	lease, err := f.lease()
	f.must(err)
	leader, survivor := -1, -1
	for i := range replicas {
		if multicluster.HolderName(*lease.Spec.HolderIdentity) == westID(i) {
			leader, survivor = i, 1-i
		}
	}
	if leader < 0 {
		t.Fatalf("Lease held by %v, not a replica", *lease.Spec.HolderIdentity)
	}
	leaseDuration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	replicas[leader].Kill()
	killed, opsAtKill := time.Now(), c.ops.Load()
	lastRenew := lease.Spec.RenewTime.Time
	wait.Until(t, 2*leaseDuration, westID(survivor)+" leads", func() bool {
		return f.holder() == westID(survivor) && gatewayMetric(westGatewayHost+survivor, "mirror_leader", nil) == 1
	})
	takeover := time.Since(killed)
	opsAtTakeover := c.ops.Load()
	after, err := f.lease()
	f.must(err)
	t.Logf("%s killed after %d churn operations; %s leads %v later, after %d more (its Lease acquireTime is %v after the last renewTime before the kill; lease duration %v)",
		westID(leader), opsAtKill, westID(survivor), takeover.Round(100*time.Millisecond), opsAtTakeover-opsAtKill,
		after.Spec.AcquireTime.Sub(lastRenew).Round(100*time.Millisecond), leaseDuration)
	// The survivor takes the Lease once leaseDuration has passed since it
	// last saw it renewed; it reads it every RetryPeriod (2s, jittered up
	// to 4.4s), so that is at most leaseDuration + 2×4.4s after the kill,
	// plus slack for a busy machine.
	if limit := leaseDuration + 2*4400*time.Millisecond + 5*time.Second; takeover > limit {
		t.Errorf("takeover took %v, more than %v", takeover, limit)
	}
	c.waitOps(opsAtTakeover + 30)
	ops := c.Stop()
	settle := time.Now()
	final := f.converged(3 * time.Minute)
	slices := 0
	for _, ss := range final.slices {
		slices += len(ss)
	}
	t.Logf("%d churn operations in all; converged %v after the churn stopped: %d mirror Services, %d EndpointSlices",
		ops, time.Since(settle).Round(100*time.Millisecond), len(final.services), slices)
}

// leaderWatch samples the mirror_leader and mirror_writes_total of gateway
// replicas every 100 ms, on a goroutine of its own, until stopped.
type leaderWatch struct {
	hosts []int
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	samples int
	both    int       // samples in which two replicas reported mirror_leader 1
	led     []bool    // the replica has reported mirror_leader 1
	stray   []float64 // writes a replica reported before it ever led
	current int       // the replica alone leading in the last sample, or -1
}

func watchLeaders(t *testing.T, hosts []int) *leaderWatch {
	w := &leaderWatch{hosts: hosts, stop: make(chan struct{}), done: make(chan struct{}),
		led: make([]bool, len(hosts)), stray: make([]float64, len(hosts)), current: -1}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

// sample scrapes each replica once: its leader gauge and write counter
// come from the same scrape, and a replica sets the gauge before its
// controller starts, which writes only after it has listed the linked
// cluster.
func (w *leaderWatch) sample() {
	leading := []int{}
	writes := make([]float64, len(w.hosts))
	for i, h := range w.hosts {
		mfs := gatewayScrape(h)
		if mfs == nil {
			continue // killed, or not up yet
		}
		if sum(mfs, "mirror_leader", nil) == 1 {
			leading = append(leading, i)
		}
		writes[i] = sum(mfs, "mirror_writes_total", nil)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	for _, i := range leading {
		w.led[i] = true
	}
	for i := range w.hosts {
		if !w.led[i] {
			w.stray[i] = max(w.stray[i], writes[i])
		}
	}
	w.current = -1
	switch len(leading) {
	case 1:
		w.current = leading[0]
	case 2:
		w.both++
	}
}

func (w *leaderWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// leader is the replica that alone reported mirror_leader 1 in the last
// sample, or -1.
func (w *leaderWatch) leader() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// twoLeaders is the number of samples in which both replicas led.
func (w *leaderWatch) twoLeaders() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.both
}

// TestSameHostnameOneLeader runs two west replicas on one host without
// POD_NAME, so that both name themselves after the host in the Lease (issue
// 23: each then believed the Lease was its own). Their holder identities
// differ all the same; at no time do both report mirror_leader 1; the
// follower writes nothing while it follows; killed (SIGKILL: no Lease
// release), the leader is succeeded by the follower within the lease time.
func TestSameHostnameOneLeader(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.eastGateway()
	hosts := []int{westGatewayHost, westGatewayHost + 1}
	w := watchLeaders(t, hosts)
	replicas := []*gatewaytest.Process{
		f.gatewayWithEnv(f.env.West, hosts[0], "west-a", "POD_NAME="),
		f.gatewayWithEnv(f.env.West, hosts[1], "west-b", "POD_NAME="),
	}
	for i := range 10 {
		f.must(f.export(ctx, fmt.Sprintf("svc%d", i)))
	}
	f.link("")
	f.converged(3 * time.Minute)
	wait.Until(t, time.Minute, "one replica leads", func() bool {
		if w.twoLeaders() > 0 {
			t.Fatalf("both replicas report mirror_leader 1")
		}
		return w.leader() >= 0
	})
	leader := w.leader()
	follower := 1 - leader

	hostname, err := os.Hostname()
	f.must(err)
	lease, err := f.lease()
	f.must(err)
	if id := *lease.Spec.HolderIdentity; multicluster.HolderName(id) != hostname || !strings.HasPrefix(id, hostname+"_") {
		t.Fatalf("Lease held by %q: want the host name %q and a random part", id, hostname)
	}
	// The leader mirrors a service exported now; the follower does not.
	f.must(f.export(ctx, "late"))
	f.converged(time.Minute)
	if n := gatewayMetric(hosts[leader], "mirror_writes_total", nil); n <= 0 {
		t.Fatalf("the leader reports %v writes", n)
	}

	leaseDuration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	replicas[leader].Kill()
	killed := time.Now()
	wait.Until(t, 2*leaseDuration, "the follower leads", func() bool {
		return gatewayMetric(hosts[follower], "mirror_leader", nil) == 1
	})
	takeover := time.Since(killed)
	// As in TestLeaderKilledUnderChurn: the follower takes the Lease once
	// leaseDuration has passed since it last saw it renewed, reading it
	// every RetryPeriod (2s, jittered up to 4.4s).
	if limit := leaseDuration + 2*4400*time.Millisecond + 5*time.Second; takeover > limit {
		t.Errorf("takeover took %v, more than %v", takeover, limit)
	}
	f.must(f.export(ctx, "after"))
	f.converged(time.Minute)
	w.halt()
	t.Logf("replica %d led, killed; replica %d led %v later; %d samples of both replicas",
		leader, follower, takeover.Round(100*time.Millisecond), w.samples)
	if n := w.twoLeaders(); n > 0 {
		t.Errorf("in %d of %d samples both replicas reported mirror_leader 1", n, w.samples)
	}
	if w.stray[follower] > 0 {
		t.Errorf("the follower wrote %v times before it led", w.stray[follower])
	}
	if n := gatewayMetric(hosts[follower], "mirror_writes_total", nil); n <= 0 {
		t.Errorf("the new leader reports %v writes", n)
	}
}
