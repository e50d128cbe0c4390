package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/proxy"
)

// Benchmarks of the splice path over real loopback TCP. Each gateway
// benchmark has a baseline in the same run: plain TCP (the kernel's limit)
// and TLS without a proxy (the cipher's), so ratios survive a noisy machine.
//
//	go test -run '^$' -bench . -benchtime 3s ./proxy

// discardBackend accepts connections and reads them to EOF.
func discardBackend(b *testing.B) string {
	return serveTCP(b, func(c net.Conn) { io.Copy(io.Discard, c) })
}

// echoBackendB accepts connections and echoes them until EOF.
func echoBackendB(b *testing.B) string {
	return serveTCP(b, func(c net.Conn) { io.Copy(c, c) })
}

func serveTCP(b *testing.B, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serve(b, ln, handle)
	return ln.Addr().String()
}

// serve hands every connection of ln to handle, and closes it after,
// until the benchmark ends.
func serve(b *testing.B, ln net.Listener, handle func(net.Conn)) {
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
}

// directTLS is a client's mTLS connection to a server that ends it itself
// and hands it to handle: the no-proxy baseline.
func directTLS(b *testing.B, handle func(net.Conn)) net.Conn {
	ca := testpki.New(b)
	src := testpki.Source(b, ca.IdentityDir(b, gwSA, gwNS))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerTLSConfig(src))
	if err != nil {
		b.Fatal(err)
	}
	serve(b, ln, handle)
	return dialBench(b, ca, ln.Addr().String(), "x")
}

// throughIngress is a client's mTLS connection through a gateway to
// backend.
func throughIngress(b *testing.B, backend string) net.Conn {
	ca := testpki.New(b)
	gw := benchGateway(b, ca, backend)
	return dialBench(b, ca, gw.Addr().String(), "api.production.svc.cluster.local")
}

// dialBench dials addr as the bench client.
func dialBench(b *testing.B, ca *testpki.CA, addr, serverName string) net.Conn {
	c, err := dialTLS(b, addr, benchClient(b, ca), serverName)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// bulk writes b.N chunks of 64 KiB to c and waits for nothing: the
// benchmark measures how fast the path accepts bytes end to end, since
// TCP's windows bound what can be in flight.
func bulk(b *testing.B, c net.Conn) {
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkLoopbackTCP(b *testing.B) {
	c, err := net.Dial("tcp", discardBackend(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bulk(b, c)
}

func BenchmarkBulkDirectTLS(b *testing.B) {
	bulk(b, directTLS(b, func(c net.Conn) { io.Copy(io.Discard, c) }))
}

func BenchmarkBulkIngress(b *testing.B) {
	bulk(b, throughIngress(b, discardBackend(b)))
}

// BenchmarkBulkTunnel: plain TCP → egress → mTLS → ingress → backend, the
// cross-cluster path.
func BenchmarkBulkTunnel(b *testing.B) {
	ca := testpki.New(b)
	gw := benchGateway(b, ca, discardBackend(b))
	e := benchEgress(b, ca, gw.Addr().String())
	c, err := net.Dial("tcp", e)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bulk(b, c)
}

// BenchmarkConnectIngress: one op is a new mTLS connection through the
// gateway, a 64-byte echo and a close: connections/s.
func BenchmarkConnectIngress(b *testing.B) {
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			ca := testpki.New(b)
			gw := benchGateway(b, ca, echoBackendB(b))
			cfg := benchClient(b, ca)
			cfg.ServerName = "api.production.svc.cluster.local"
			if !resume {
				cfg.ClientSessionCache = nil
			}
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			for b.Loop() {
				c, err := tls.Dial("tcp", gw.Addr().String(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// benchClient is a client with X25519 pinned, as the bench harness pins it
// for every system (Go would pick X25519MLKEM768 between Go peers).
func benchClient(b *testing.B, ca *testpki.CA) *tls.Config {
	cfg := clientConfig(b, ca, "web", "west", identity.CertOptions{})
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	return cfg
}

func benchGateway(b *testing.B, ca *testpki.CA, backend string) *proxy.IngressServer {
	src := testpki.Source(b, ca.IdentityDir(b, gwSA, gwNS))
	authz, _ := identity.NewAuthorizer(nil)
	gw, err := proxy.NewIngress(proxy.IngressConfig{
		ListenAddr: "127.0.0.1:0", TLS: identity.ServerTLSConfig(src), Authorize: authz.Authorize,
		Router: routes{"production/api": {8080: {backend}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	runUntilCleanup(b, gw.Run)
	return gw
}

func benchEgress(b *testing.B, ca *testpki.CA, gateway string) string {
	src := testpki.Source(b, ca.IdentityDir(b, gwSA, gwNS))
	cfg := identity.ClientTLSConfig(src, testpki.Name(b, gwSA, gwNS))
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	e := proxy.NewEgress(proxy.EgressConfig{})
	if err := e.Update([]proxy.EgressRoute{{Listen: "127.0.0.1:0", GatewayAddresses: []string{gateway},
		Target: "api.production.svc.cluster.local:8080", TLS: cfg}}); err != nil {
		b.Fatal(err)
	}
	runUntilCleanup(b, e.Run)
	return e.Addrs()["127.0.0.1:0"].String()
}

// rr sends b.N 1 KiB requests on c, reading each 1 KiB echo before the
// next: one op is one round trip. With -benchmem the allocations per op
// of a gateway benchmark, less those of BenchmarkRRDirectTLS (client and
// backend alone), are the gateway's per request.
func rr(b *testing.B, c net.Conn) {
	msg := make([]byte, 1024)
	buf := make([]byte, 1024)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRRDirectTLS(b *testing.B) {
	rr(b, directTLS(b, func(c net.Conn) { io.Copy(c, c) }))
}

func BenchmarkRRIngress(b *testing.B) {
	rr(b, throughIngress(b, echoBackendB(b)))
}
