// Package testproxy holds what tests of the data plane share: a log sink
// safe to read while a server writes, TCP backends that count their
// connections, a map Router, a metric reader and a polling wait. Import it
// from _test.go files only.
package testproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/probe"
	"github.com/mcgate/mcgate/proxy"
)

// SyncBuffer is a log sink that tests read while a server writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Backend is a TCP server (on 127.0.0.1 unless given a listener) that
// counts its connections. It closes its listener and every open connection
// when the test ends, and waits for its goroutines.
type Backend struct {
	ln       net.Listener
	Accepted atomic.Int64
	wg       sync.WaitGroup
}

// Echo echoes until the client half-closes, then half-closes too and waits
// for the client to close: FIN travels both ways, as tests of half-close need.
func Echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// NewEchoBackend starts a Backend serving Echo.
func NewEchoBackend(t testing.TB) *Backend { return NewBackend(t, Echo) }

// NewBackend serves each connection with serve (which must return once the
// connection is closed) and closes it afterwards.
func NewBackend(t testing.TB, serve func(net.Conn)) *Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ServeBackend(t, ln, serve)
}

// ServeBackend is NewBackend on a listener of the caller's (e.g. on an
// address that may go into an EndpointSlice, which refuses loopback).
func ServeBackend(t testing.TB, ln net.Listener, serve func(net.Conn)) *Backend {
	b := &Backend{ln: ln}
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.Accepted.Add(1)
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() { mu.Lock(); delete(open, c); mu.Unlock(); c.Close() }()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// Addr is the backend's address.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Routes is a map Router: "ns/svc" → port → endpoints.
type Routes map[string]map[int][]string

// Route implements proxy.Router.
func (r Routes) Route(d proxy.Destination) ([]string, error) {
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

// Metric returns the value of name{labels} in g, summed over the series
// that match (a histogram counts its samples), 0 if absent.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if !matches(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
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

// The identity of every test gateway.
const (
	GatewaySA = "linkerd-gateway"
	GatewayNS = "linkerd-multicluster"
)

// Gateway is an ingress server built for a test, not yet running: a
// 24-hour leaf from ca in Dir, 2 s handshake and route timeouts, logs in
// Logs and metrics in Reg.
type Gateway struct {
	*proxy.IngressServer
	Dir  string
	Src  *identity.FileSource
	Reg  *prometheus.Registry
	Logs *SyncBuffer
}

// NewGateway builds a Gateway on 127.0.0.1:0 that admits the identities of
// allow (nil: any under ca's anchor); opts adjust its config.
func NewGateway(t testing.TB, ca *testpki.CA, router proxy.Router, allow []string, opts ...func(*proxy.IngressConfig)) *Gateway {
	t.Helper()
	g := &Gateway{Dir: ca.IdentityDir(t, GatewaySA, GatewayNS), Reg: prometheus.NewRegistry(), Logs: &SyncBuffer{}}
	g.Src = testpki.Source(t, g.Dir)
	authz, err := identity.NewAuthorizer(allow)
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.IngressConfig{
		ListenAddr: "127.0.0.1:0", TLS: identity.ServerTLSConfig(g.Src), Authorize: authz.Authorize,
		Router: router, ServerIdentity: func() string { return g.Src.Name().DNS() },
		HandshakeTimeout: 2 * time.Second, RouteTimeout: 2 * time.Second,
		DrainTimeout: 5 * time.Second, Log: zerolog.New(g.Logs), Metrics: proxy.NewMetrics(g.Reg),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if g.IngressServer, err = proxy.NewIngress(cfg); err != nil {
		t.Fatal(err)
	}
	return g
}

// ServeAdmin runs a probe.Admin (the gateway's admin server) on ln until
// the test ends, failing the test if Run returns an error, and returns its
// base URL.
func ServeAdmin(t testing.TB, ln net.Listener, cfg probe.AdminConfig) string {
	t.Helper()
	cfg.Listener, cfg.Log = ln, zerolog.Nop()
	a, err := probe.NewAdmin(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin %s: %v", ln.Addr(), err)
		}
	})
	return "http://" + ln.Addr().String()
}
