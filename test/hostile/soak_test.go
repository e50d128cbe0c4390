package hostile

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// soakDuration is the length of the soak's load phase: short by default so
// that `go test ./...` runs it, MCGATE_SOAK_DURATION (e.g. 10m) for `make soak`.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("MCGATE_SOAK_DURATION")
	if v == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("MCGATE_SOAK_DURATION=%q: want a positive duration", v)
	}
	return d
}

// Leak tolerances once the load has stopped: the gateway must be back to
// its baseline but for runtime noise (timers, a GC worker, the pool).
const (
	goroutineSlack = 10
	fdSlack        = 10
	heapSlack      = 16 << 20
)

// TestSoak runs mixed load through an egress tunnel and an ingress gateway
// (new connections, long streams, idle connections) and checks that every
// connection succeeds and that goroutines, fds and heap return to their
// baseline once the load stops.
func TestSoak(t *testing.T) {
	duration := soakDuration(t)
	ca := testpki.New(t)
	be := newBackend(t)
	east := startGateway(t, ca, routes{"production/api": {apiPort: {be.Addr()}}})
	west := startTunnel(t, ca, east.Addr().String())
	good := clientConfig(t, ca)
	// Warm up every path once so that pools and caches exist in the baseline.
	if err := plainRoundTrip(west.listen); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(east.Addr().String(), good); err != nil {
		t.Fatal(err)
	}
	base := sample()

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		wg               sync.WaitGroup
		newConns, failed atomic.Int64
		// A pointer, not an atomic.Value: errors of different concrete
		// types would make Value.CompareAndSwap panic.
		firstErr  atomic.Pointer[error]
		idleConns atomic.Int64
	)
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	// New connections: through the tunnel, and straight to the ingress.
	for i := range 3 {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for ctx.Err() == nil {
				var err error
				if i == 0 {
					err = roundTrip(east.Addr().String(), good)
				} else {
					err = plainRoundTrip(west.listen)
				}
				if err != nil {
					fail(err)
				}
				newConns.Add(1)
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
			}
		})
	}
	// Long streams, each for the whole run.
	for range 10 {
		s := openStream(t, west.listen)
		wg.Go(func() {
			<-ctx.Done()
			if err := s.end(); err != nil {
				fail(fmt.Errorf("stream: %w", err))
			}
		})
	}
	// Idle connections, opened, used once, left idle, closed at the end.
	for range 100 {
		wg.Go(func() {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", east.Addr().String(), good)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			idleConns.Add(1)
			<-ctx.Done()
		})
	}
	peak := resources{}
	sampler := time.NewTicker(max(duration/10, time.Second))
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-sampler.C:
			if r := sample(); r.goroutines > peak.goroutines {
				peak = r
			}
		}
	}
	sampler.Stop()
	wg.Wait()

	// The load has stopped: everything must go back to the baseline.
	wait.Until(t, 10*time.Second, "no open ingress connection", func() bool { return east.OpenConns() == 0 })
	var after resources
	settled := func() bool {
		after = sample()
		return after.goroutines <= base.goroutines+goroutineSlack && after.fds <= base.fds+fdSlack &&
			after.heap <= base.heap+heapSlack
	}
	wait.Poll(15*time.Second, settled)
	report := fmt.Sprintf("soak %v: %d new connections, 10 streams, %d idle connections, %d failed\n"+
		"baseline:   %v\npeak:       %v\nafter load: %v\n",
		duration, newConns.Load(), idleConns.Load(), failed.Load(), base, peak, after)
	t.Log("\n" + report)
	if path := os.Getenv("MCGATE_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
	if failed.Load() > 0 {
		t.Errorf("%d connections failed under soak load (first: %v)", failed.Load(), *firstErr.Load())
	}
	if !settled() {
		t.Errorf("resources did not return to baseline within 15 s: baseline %v, after %v (slack %d goroutines, %d fds, %d MiB)",
			base, after, goroutineSlack, fdSlack, heapSlack>>20)
	}
}
