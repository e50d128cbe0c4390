package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testpki"
	"github.com/mcgate/mcgate/proxy"
)

// Benchmarks of the splice path over real loopback TCP. Each gateway
// benchmark has a baseline in the same run: plain TCP (the kernel's limit)
// and TLS without a proxy (the cipher's), so ratios survive a noisy machine.
//
//	go test -run '^$' -bench . -benchtime 3s ./proxy

// discardBackend accepts connections and reads them to EOF.
func discardBackend(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveDiscard(b, ln)
	return ln.Addr().String()
}

// serveDiscard reads every connection of ln to EOF until the benchmark ends.
func serveDiscard(b *testing.B, ln net.Listener) {
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
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
	ca := testpki.New(b)
	src := testpki.Source(b, ca.IdentityDir(b, gwSA, gwNS))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerTLSConfig(src))
	if err != nil {
		b.Fatal(err)
	}
	serveDiscard(b, ln)
	cfg := benchClient(b, ca)
	cfg.ServerName = "x"
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bulk(b, c)
}

func BenchmarkBulkIngress(b *testing.B) {
	ca := testpki.New(b)
	gw := benchGateway(b, ca, discardBackend(b))
	cfg := benchClient(b, ca)
	cfg.ServerName = "api.production.svc.cluster.local"
	c, err := tls.Dial("tcp", gw.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bulk(b, c)
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

func echoBackendB(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// benchClient is a client with X25519 pinned, as the bench harness pins it
// for every system (Go would pick X25519MLKEM768 between Go peers).
func benchClient(b *testing.B, ca *testpki.CA) *tls.Config {
	dir := b.TempDir()
	ca.WriteDir(b, dir, ca.Leaf(b, "web", "west", identity.CertOptions{}))
	cfg := identity.ClientTLSConfig(testpki.Source(b, dir), testpki.Name(b, gwSA, gwNS))
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
	ca := testpki.New(b)
	src := testpki.Source(b, ca.IdentityDir(b, gwSA, gwNS))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerTLSConfig(src))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	cfg := benchClient(b, ca)
	cfg.ServerName = "x"
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rr(b, c)
}

func BenchmarkRRIngress(b *testing.B) {
	ca := testpki.New(b)
	gw := benchGateway(b, ca, echoBackendB(b))
	cfg := benchClient(b, ca)
	cfg.ServerName = "api.production.svc.cluster.local"
	c, err := tls.Dial("tcp", gw.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rr(b, c)
}
