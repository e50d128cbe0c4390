package probe_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcgate/mcgate/internal/testenv/testproxy"
	"github.com/mcgate/mcgate/probe"
)

// startAdmin runs an admin server on a loopback port until the test ends.
func startAdmin(t *testing.T, cfg probe.AdminConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return testproxy.ServeAdmin(t, ln, cfg)
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
	full := startAdmin(t, probe.AdminConfig{Gatherer: reg, Ready: ready, Pprof: true})
	probeOnly := startAdmin(t, probe.AdminConfig{Gatherer: reg, Ready: ready, Pprof: true, ProbeOnly: true})

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
