package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// startAdmin runs an admin server on a loopback port until the test ends.
func startAdmin(t *testing.T, cfg AdminConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener, cfg.Log = ln, zerolog.Nop()
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminPaths(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Inc()
	var draining atomic.Bool
	ready := func() error {
		if draining.Load() {
			return errors.New("draining")
		}
		return nil
	}
	full := startAdmin(t, AdminConfig{Gatherer: reg, Ready: ready, Pprof: true})
	probeOnly := startAdmin(t, AdminConfig{Gatherer: reg, Ready: ready, Pprof: true, ProbeOnly: true})

	for _, tt := range []struct {
		base, path string
		want       int
		body       string
	}{
		{full, "/ready", 200, "ready"},
		{full, "/live", 200, "live"},
		{full, "/metrics", 200, "test_total 1"},
		{full, "/debug/pprof/", 200, "goroutine"},
		{probeOnly, "/ready", 200, "ready"},
		{probeOnly, "/live", 200, "live"},
		// Whoever reaches the load balancer learns nothing more.
		{probeOnly, "/metrics", 404, ""},
		{probeOnly, "/debug/pprof/", 404, ""},
	} {
		code, body := get(t, tt.base+tt.path)
		if code != tt.want || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s on %s: %d %q, want %d with %q", tt.path, tt.base, code, body, tt.want, tt.body)
		}
	}

	draining.Store(true)
	for _, base := range []string{full, probeOnly} {
		if code, body := get(t, base+"/ready"); code != 503 || !strings.Contains(body, "draining") {
			t.Errorf("GET /ready while draining on %s: %d %q, want 503 saying why", base, code, body)
		}
	}
}
