package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

// pair is an egress set (west) tunnelling to an ingress gateway (east).
type pair struct {
	east   *gateway
	egress *proxy.EgressSet
	reg    *prometheus.Registry
	listen string
	// stop ends the egress set's Run (drain included) and returns its error.
	stop func() error
}

// pairOpt adjusts the configs of both gateways of a pair.
type pairOpt = func(*proxy.IngressConfig, *proxy.EgressConfig)

func startPair(t *testing.T, backendAddr string, mutate func(*proxy.EgressRoute), opts ...pairOpt) *pair {
	t.Helper()
	ca := testpki.New(t)
	cfg := proxy.EgressConfig{DialTimeout: 5 * time.Second, Log: zerolog.Nop()}
	east := startGateway(t, ca, routes{"production/api": {8080: {backendAddr}}}, nil, func(c *proxy.IngressConfig) {
		for _, o := range opts {
			o(c, &cfg)
		}
	})
	west := testpki.NewIssuer(t, ca.Anchor) // west has its own issuer under the shared anchor
	westCA := &testpki.CA{Anchor: ca.Anchor, Issuer: west}
	dir := westCA.IdentityDir(t, gwSA, gwNS)
	src := testpki.Source(t, dir)
	reg := prometheus.NewRegistry()
	cfg.Metrics = proxy.NewMetrics(reg)
	e := proxy.NewEgress(cfg)
	route := proxy.EgressRoute{
		Listen: "127.0.0.1:0", Cluster: "east", GatewayAddresses: []string{east.Addr().String()},
		Target: "api.production.svc.cluster.local:8080",
		TLS:    identity.ClientTLSConfig(src, testpki.Name(t, gwSA, gwNS)),
	}
	if mutate != nil {
		mutate(&route)
	}
	if err := e.Update([]proxy.EgressRoute{route}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("egress Run: %v", err)
		}
	})
	return &pair{east: east, egress: e, reg: reg, listen: e.Addrs()["127.0.0.1:0"].String(), stop: stop}
}

func (p *pair) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestEgressToIngress(t *testing.T) {
	for _, mode := range []string{"sni", "transport-header"} {
		t.Run(mode, func(t *testing.T) {
			be := newBackend(t)
			p := startPair(t, be.Addr(), func(r *proxy.EgressRoute) {
				if mode == "transport-header" {
					r.TransportHeader = true
					r.ServerName = testpki.Name(t, gwSA, gwNS).DNS()
				}
			})
			for i := range 3 {
				c := p.dial(t)
				if got, err := echo(c, "across clusters"); err != nil || got != "across clusters" {
					t.Fatalf("connection %d: echo = %q, %v", i, got, err)
				}
				c.Close()
			}
			if got := counter(t, p.reg, "gateway_requests_total", map[string]string{"cluster": "east", "direction": "egress"}); got != 3 {
				t.Errorf("egress gateway_requests_total{cluster=east} = %v, want 3", got)
			}
			// The first connection's session ticket lets the next ones resume.
			wait.Until(t, 10*time.Second, "a resumed handshake", func() bool {
				return counter(t, p.reg, "gateway_handshake_duration_seconds", map[string]string{"direction": "egress", "resumed": "true"}) >= 1
			})
		})
	}
}

// TestEgressHalfCloseClientFirst: the app's FIN crosses both gateways; the
// backend's reply and then its FIN come back.
func TestEgressHalfCloseClientFirst(t *testing.T) {
	be := newBackend(t)
	p := startPair(t, be.Addr(), nil)
	c := p.dial(t)
	payload := bytes.Repeat([]byte("x"), 3<<20)
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(payload))
	}
}

// TestEgressHalfCloseServerFirst: the backend speaks and half-closes first;
// the app sees the greeting and EOF, and can still send its answer, which
// the backend receives in full before its own EOF.
func TestEgressHalfCloseServerFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		io.WriteString(c, "greeting")
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		received <- b
	}()
	p := startPair(t, ln.Addr().String(), nil)
	c := p.dial(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "greeting" {
		t.Fatalf("read %q, %v", got, err)
	}
	io.WriteString(c, "answer after the server's FIN")
	c.CloseWrite()
	select {
	case b := <-received:
		if string(b) != "answer after the server's FIN" {
			t.Fatalf("backend received %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend never saw the answer and EOF")
	}
}

// TestEgressWrongGatewayIdentity: a gateway that is not the one configured
// is refused before any byte of the app reaches it.
func TestEgressWrongGatewayIdentity(t *testing.T) {
	be := newBackend(t)
	ca := testpki.New(t)
	east := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	src := testpki.Source(t, ca.IdentityDir(t, gwSA, gwNS))
	reg := prometheus.NewRegistry()
	e := proxy.NewEgress(proxy.EgressConfig{Log: zerolog.Nop(), Metrics: proxy.NewMetrics(reg)})
	err := e.Update([]proxy.EgressRoute{{
		Listen: "127.0.0.1:0", Cluster: "east", GatewayAddresses: []string{east.Addr().String()},
		Target: "api.production.svc.cluster.local:8080",
		TLS:    identity.ClientTLSConfig(src, testpki.Name(t, "impostor", gwNS)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	before := be.Accepted.Load()
	c, err := net.Dial("tcp", e.Addrs()["127.0.0.1:0"].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("got %d bytes through an unverified gateway", n)
	}
	wait.Until(t, 10*time.Second, "gateway_unavailable", func() bool {
		return counter(t, reg, "gateway_refused_connections_total", map[string]string{"direction": "egress", "reason": "gateway_unavailable"}) == 1
	})
	if be.Accepted.Load() != before {
		t.Fatal("backend reached through an unverified gateway")
	}
}

// TestEgressUpdate: listeners come and go with Update; a removed listener
// frees its port and an open connection on it keeps working.
func TestEgressUpdate(t *testing.T) {
	be := newBackend(t)
	p := startPair(t, be.Addr(), nil)
	c := p.dial(t)
	if _, err := echo(c, "open"); err != nil {
		t.Fatal(err)
	}
	if err := p.egress.Update(nil); err != nil {
		t.Fatal(err)
	}
	if len(p.egress.Addrs()) != 0 {
		t.Fatal("listener still registered")
	}
	if _, err := net.Dial("tcp", p.listen); err == nil {
		t.Fatal("removed listener still accepts")
	}
	if got, err := echo(c, "still open"); err != nil || got != "still open" {
		t.Fatalf("open connection broke when its listener went: %q, %v", got, err)
	}
}

// TestEgressRefusesRoutesThatFailOpen: a listener starts only if its
// target is a service name with a port, and, without the transport header,
// only with the SNI naming that target: any other SNI (the gateway's
// identity, say) would let the app's Host header choose the service.
func TestEgressRefusesRoutesThatFailOpen(t *testing.T) {
	ca := testpki.New(t)
	src := testpki.Source(t, ca.IdentityDir(t, gwSA, gwNS))
	gwName := testpki.Name(t, gwSA, gwNS)
	cfg := identity.ClientTLSConfig(src, gwName)
	e := proxy.NewEgress(proxy.EgressConfig{Log: zerolog.Nop(), Metrics: proxy.NewMetrics(prometheus.NewRegistry())})
	for _, tt := range []struct {
		name       string
		target     string
		header     bool
		serverName string
		wantErr    string
	}{
		{"sni", "api.production.svc.east.local:8080", false, "", ""},
		{"transport header", "api.production.svc.east.local:8080", true, gwName.DNS(), ""},
		{"no port", "api.production.svc.east.local", false, "", "want <svc>.<ns>.svc.<domain>:<port>"},
		{"port 0", "api.production.svc.east.local:0", false, "", "port out of range"},
		{"port +8080", "api.production.svc.east.local:+8080", true, gwName.DNS(), "port out of range"},
		{"no service name", "example.com:443", true, gwName.DNS(), "want <svc>.<ns>.svc.<domain>:<port>"},
		{"gateway identity as SNI", "api.production.svc.east.local:8080", false, gwName.DNS(), "ServerName is for transport header mode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Update([]proxy.EgressRoute{{Listen: "127.0.0.1:0", GatewayAddresses: []string{"127.0.0.1:1"},
				Target: tt.target, TransportHeader: tt.header, ServerName: tt.serverName, TLS: cfg}})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if err := e.Update(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
