package probe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// fakeGateway answers probes in memory, so synctest can drive time.
type fakeGateway struct {
	mu     sync.Mutex
	status int  // 0: connection refused
	hang   bool // block until the request is cancelled
	calls  map[string]int
}

func (g *fakeGateway) set(status int, hang bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status, g.hang = status, hang
}

func (g *fakeGateway) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	st, hang := g.status, g.hang
	if g.calls == nil {
		g.calls = map[string]int{}
	}
	g.calls[r.URL.Host+r.URL.Path]++
	g.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	if st == 0 {
		return nil, errors.New("connection refused")
	}
	return &http.Response{StatusCode: st, Body: http.NoBody, Request: r}, nil
}

func newTestWorkers(t *testing.T, rt http.RoundTripper) (*Workers, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := NewWorkers(WorkersConfig{Log: zerolog.Nop(), Registerer: reg, Client: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

func target(cluster string) Target {
	return Target{Cluster: cluster, Addresses: []string{"198.18.0.2:4191"}, Path: "/ready",
		Period: time.Second, Timeout: 500 * time.Millisecond, FailureThreshold: 3}
}

func runWorkers(t *testing.T, w *Workers) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func drained(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestDeadFromStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gw := &fakeGateway{} // refuses from the start
		w, _ := newTestWorkers(t, gw)
		w.Set([]Target{target("east")})
		stop := runWorkers(t, w)
		defer stop()
		synctest.Wait()
		if !w.Alive("east") {
			t.Fatal("dead before failureThreshold failures")
		}
		// Failures at t=0, ~1s, ~2s (+≤10% jitter each): dead after the third.
		time.Sleep(2*time.Second + 250*time.Millisecond)
		synctest.Wait()
		if w.Alive("east") {
			t.Fatal("gateway down from the start is still alive after 3 failures")
		}
		if !drained(w.Changed()) {
			t.Fatal("no change notification")
		}
		if v := value(t, w.m.alive.WithLabelValues("east")); v != 0 {
			t.Fatalf("gateway_alive = %v", v)
		}
	})
}

func TestAliveDeadAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gw := &fakeGateway{status: 200}
		w, reg := newTestWorkers(t, gw)
		w.Set([]Target{target("east")})
		stop := runWorkers(t, w)
		defer stop()
		synctest.Wait()
		if !w.Alive("east") || drained(w.Changed()) {
			t.Fatal("alive gateway: want alive and no change")
		}
		gw.set(503, false)
		// Probe k runs in [k, 1.1k] s (jitter adds up to 10% a period).
		time.Sleep(2250 * time.Millisecond) // probes 1 and 2 failed: 2 < threshold
		synctest.Wait()
		if !w.Alive("east") {
			t.Fatal("dead after 2 failures with threshold 3")
		}
		time.Sleep(1100 * time.Millisecond) // t=3.35s: probe 3 failed, probe 4 not yet run
		synctest.Wait()
		if w.Alive("east") || !drained(w.Changed()) {
			t.Fatal("want dead with a notification after 3 failures")
		}
		gw.set(200, false)
		time.Sleep(1100 * time.Millisecond) // t=4.45s: probe 4 succeeded
		synctest.Wait()
		if !w.Alive("east") || !drained(w.Changed()) {
			t.Fatal("want alive again with a notification after one success")
		}
		if n := series(t, reg, "gateway_probe_latency_ms", "service_mirror_probe_success_total", "gateway_probes"); n != 4 {
			t.Fatalf("series = %d", n)
		}
		if v := value(t, w.m.success.WithLabelValues("east")); v != 2 {
			t.Fatalf("successes = %v, want 2", v)
		}
		if v := value(t, w.m.failures.WithLabelValues("east")); v != 3 {
			t.Fatalf("failures = %v, want 3", v)
		}
	})
}

func TestTimeoutIsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gw := &fakeGateway{status: 200, hang: true}
		w, _ := newTestWorkers(t, gw)
		tg := target("east")
		tg.FailureThreshold = 1
		w.Set([]Target{tg})
		stop := runWorkers(t, w)
		defer stop()
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		if !w.Alive("east") {
			t.Fatal("dead before the timeout")
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if w.Alive("east") {
			t.Fatal("hanging probe not counted as failed after the timeout")
		}
	})
}

func TestSetReplacesAndRemoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gw := &fakeGateway{}
		w, reg := newTestWorkers(t, gw)
		tg := target("east")
		tg.FailureThreshold = 1
		w.Set([]Target{tg, target("north")})
		stop := runWorkers(t, w)
		defer stop()
		synctest.Wait()
		if w.Alive("east") {
			t.Fatal("east should be dead after one failure")
		}
		// A changed target restarts the worker but keeps the verdict, so
		// endpoints do not flap to ready on every Link edit.
		tg.Addresses = []string{"198.18.0.3:4191", "198.18.0.4:4191"}
		w.Set([]Target{tg, target("north")})
		if w.Alive("east") {
			t.Fatal("verdict lost on target change")
		}
		gw.set(200, false)
		// The restarted worker may have probed (and failed) before the
		// gateway recovered; within one period (+10% jitter) of fake time
		// it probes again.
		time.Sleep(tg.Period + tg.Period/5)
		synctest.Wait()
		if !w.Alive("east") {
			t.Fatal("restarted worker did not probe the new address")
		}
		w.Set([]Target{tg})
		if n := series(t, reg, "gateway_alive"); n != 1 {
			t.Fatalf("gateway_alive series after removing north = %d", n)
		}
		if !w.Alive("north") {
			t.Fatal("unprobed cluster must count as alive")
		}
	})
}

func TestMultipleAddressesAnyAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var first atomic.Int32
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasPrefix(r.URL.Host, "198.18.0.3") {
				first.Add(1)
				return nil, errors.New("refused")
			}
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
		})
		w, _ := newTestWorkers(t, rt)
		tg := target("east")
		tg.FailureThreshold = 1
		tg.Addresses = []string{"198.18.0.3:4191", "198.18.0.4:4191"}
		w.Set([]Target{tg})
		stop := runWorkers(t, w)
		defer stop()
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if !w.Alive("east") {
			t.Fatal("one answering address must be enough")
		}
		// The worker sticks to the address that answered.
		if n := first.Load(); n != 1 {
			t.Fatalf("dead address tried %d times, want once", n)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRealHTTP probes a real HTTP server on loopback with the default client.
func TestRealHTTP(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !ready.Load() {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w, err := NewWorkers(WorkersConfig{Log: zerolog.Nop(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Cluster: "east", Addresses: []string{strings.TrimPrefix(srv.URL, "http://")}, Path: "/ready",
		Period: 20 * time.Millisecond, Timeout: time.Second, FailureThreshold: 2}
	w.Set([]Target{tg})
	stop := runWorkers(t, w)
	defer stop()
	wait.Until(t, 10*time.Second, "a successful probe of east", func() bool { return value(t, w.m.success.WithLabelValues("east")) >= 1 })
	ready.Store(false)
	wait.Until(t, 10*time.Second, "east not alive", func() bool { return !w.Alive("east") })
	ready.Store(true)
	wait.Until(t, 10*time.Second, "east alive again", func() bool { return w.Alive("east") })
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	case d.Counter != nil:
		return d.Counter.GetValue()
	}
	t.Fatalf("not a gauge or counter: %v", &d)
	return 0
}

// series counts the series of the named metric families.
func series(t *testing.T, g prometheus.Gatherer, names ...string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, name := range names {
			if mf.GetName() == name {
				n += len(mf.GetMetric())
			}
		}
	}
	return n
}
