package kubefaults

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
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
	gatewaytest.Poll(c.f.t, time.Minute, fmt.Sprintf("%d churn operations", n), func() bool {
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
		if *lease.Spec.HolderIdentity == westID(i) {
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
	gatewaytest.Poll(t, 2*leaseDuration, westID(survivor)+" leads", func() bool {
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
