package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testpki"
	"github.com/mcgate/mcgate/proxy"
)

const (
	gwSA = "linkerd-gateway"
	gwNS = "linkerd-multicluster"
)

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// backend is a TCP echo server that counts its connections. It echoes until
// the client half-closes, then half-closes too, which lets tests see FIN
// travel both ways.
type backend struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

// routes is a map Router for tests: "ns/svc" → port → endpoints.
type routes map[string]map[int][]string

func (r routes) Route(d proxy.Destination) ([]string, error) {
	ports, ok := r[d.Namespace+"/"+d.Service]
	if !ok {
		return nil, proxy.ErrNotExported
	}
	if d.Port == 0 {
		if len(ports) != 1 {
			return nil, proxy.ErrUnknownPort
		}
		for p := range ports {
			d.Port = p
		}
	}
	eps, ok := ports[d.Port]
	if !ok {
		return nil, proxy.ErrUnknownPort
	}
	if len(eps) == 0 {
		return nil, proxy.ErrNoEndpoints
	}
	return eps, nil
}

// gateway is a running ingress server for one test.
type gateway struct {
	*proxy.IngressServer
	ca     *testpki.CA
	dir    string
	src    *identity.FileSource
	reg    *prometheus.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

type gatewayOpt func(*proxy.IngressConfig)

func startGateway(t *testing.T, ca *testpki.CA, router proxy.Router, allow []string, opts ...gatewayOpt) *gateway {
	t.Helper()
	g := &gateway{ca: ca, dir: ca.IdentityDir(t, gwSA, gwNS), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	g.src = testpki.Source(t, g.dir)
	authz, err := identity.NewAuthorizer(allow)
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.IngressConfig{
		ListenAddr: "127.0.0.1:0", TLS: identity.ServerTLSConfig(g.src), Authorize: authz.Authorize,
		Router: router, HandshakeTimeout: 2 * time.Second, RouteTimeout: 2 * time.Second,
		DrainTimeout: 5 * time.Second, Log: zerolog.New(g.logs), Metrics: proxy.NewMetrics(g.reg),
	}
	for _, o := range opts {
		o(&cfg)
	}
	g.IngressServer, err = proxy.NewIngress(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan error, 1)
	go func() { g.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-g.done; err != nil {
			t.Errorf("ingress Run: %v", err)
		}
	})
	return g
}

// clientConfig returns a client config for identity sa.ns issued by ca,
// expecting the gateway's identity.
func clientConfig(t *testing.T, ca *testpki.CA, sa, ns string, opts identity.CertOptions) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	ca.WriteDir(t, dir, ca.Leaf(t, sa, ns, opts))
	return identity.ClientTLSConfig(testpki.Source(t, dir), testpki.Name(t, gwSA, gwNS))
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config, sni string, alpn ...string) (*tls.Conn, error) {
	t.Helper()
	cfg = cfg.Clone()
	cfg.ServerName = sni
	cfg.NextProtos = alpn
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// echo writes msg and reads the same number of bytes back.
func echo(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// counter returns the value of the series name{labels}, 0 if absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.Label {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// readErr reports the error a refused TLS client sees on its first read:
// TLS 1.3 clients learn of a refusal only after their handshake completed.
func readErr(c *tls.Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil {
		return errors.New("read succeeded")
	}
	return err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// runUntilCleanup runs a component until the test or benchmark ends.
func runUntilCleanup(tb testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
}
