package probe_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// TestAdminBounds: keep-alive connections are closed once idle, at most
// MaxConns are served at once (the next waits, holding no descriptor of
// the server), and an oversized header block is refused.
func TestAdminBounds(t *testing.T) {
	const limit = 3
	idle := 200 * time.Millisecond
	base := startAdmin(t, probe.AdminConfig{Ready: func() error { return nil }, ProbeOnly: true, MaxConns: limit, IdleTimeout: idle})
	addr := strings.TrimPrefix(base, "http://")
	request := "GET /live HTTP/1.1\r\nHost: x\r\n\r\n"
	var held []net.Conn
	for range limit {
		c := dialAdmin(t, addr)
		if status := roundTrip(t, c, request); status != "HTTP/1.1 200 OK" {
			t.Fatalf("status %q", status)
		}
		held = append(held, c)
	}
	// The connection past the limit is not served while the others are open…
	extra := dialAdmin(t, addr)
	if _, err := io.WriteString(extra, request); err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(idle / 2))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection past the limit served at once: %d bytes, %v", n, err)
	}
	// …and is once the idle ones have been closed by the server.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("idle connection not closed by the server: %d bytes, %v", n, err)
		}
	}
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if status, err := bufio.NewReader(extra).ReadString('\n'); err != nil || strings.TrimSpace(status) != "HTTP/1.1 200 OK" {
		t.Fatalf("connection past the limit after the idle ones closed: %q, %v", status, err)
	}
	huge := "GET /live HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	if status := roundTrip(t, dialAdmin(t, addr), huge); status != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Fatalf("64 KiB header: status %q", status)
	}
}

func dialAdmin(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends req on c and returns the status line of the response,
// reading the rest of it.
func roundTrip(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return "HTTP/1.1 " + resp.Status
}
