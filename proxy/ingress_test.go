package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
	"github.com/mcgate/mcgate/proxy"
)

func TestIngressRoutingForms(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	addr := gw.Addr().String()
	gwName := testpki.Name(t, gwSA, gwNS).DNS()

	tests := []struct {
		name    string
		sni     string
		alpn    []string
		preface []byte // written before the payload
	}{
		{"sni", "api.production.svc.cluster.local", nil, nil},
		{"sni fqdn upper case", "API.production.svc.cluster.local.", nil, nil},
		{"sni outbound form", "outbound_.8080_._.api.production.svc.cluster.local", nil, nil},
		{"transport header", gwName, []string{"h2", proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 8080, Name: "api.production.svc.cluster.local"})},
		{"http1 host", gwName, nil, []byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local:8080\r\n\r\n")},
		{"http2 authority", gwName, nil, h2Preamble(t, "api.production.svc.cluster.local")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := be.Accepted.Load()
			c, err := dialTLS(t, addr, client, tt.sni, tt.alpn...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.alpn != nil && c.ConnectionState().NegotiatedProtocol != proxy.TransportHeaderALPN {
				t.Fatalf("ALPN = %q", c.ConnectionState().NegotiatedProtocol)
			}
			msg := string(tt.preface) + "hello through the gateway"
			if tt.alpn != nil {
				// The header is consumed by the gateway; only the payload echoes.
				if _, err := c.Write(tt.preface); err != nil {
					t.Fatal(err)
				}
				msg = "hello through the gateway"
			}
			got, err := echo(c, msg)
			if err != nil || got != msg {
				t.Fatalf("echo = %q, %v; want %q", got, err, msg)
			}
			if n := be.Accepted.Load() - before; n != 1 {
				t.Fatalf("backend saw %d connections, want 1", n)
			}
		})
	}
	if got := counter(t, gw.reg, "gateway_requests_total", map[string]string{"direction": "ingress", "cluster": "local"}); got != float64(len(tests)) {
		t.Errorf("gateway_requests_total = %v, want %d", got, len(tests))
	}
}

// h2Preamble is what an HTTP/2 client with prior knowledge sends first.
func h2Preamble(t *testing.T, authority string) []byte {
	var hb, out bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	return out.Bytes()
}

func TestIngressRefusals(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{
		"production/api":   {8080: {be.Addr()}},
		"production/multi": {80: {be.Addr()}, 81: {be.Addr()}},
		"production/empty": {80: nil},
	}, []string{"spiffe://cluster.local/ns/west/sa/*"}, func(c *proxy.IngressConfig) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.RouteTimeout = 300 * time.Millisecond
	})
	addr := gw.Addr().String()
	good := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	gwName := testpki.Name(t, gwSA, gwNS).DNS()

	t.Run("handshake", func(t *testing.T) {
		other := testpki.New(t) // another anchor
		noCert := good.Clone()
		noCert.GetClientCertificate = nil
		tests := []struct {
			name   string
			cfg    *tls.Config
			reason string
		}{
			{"no client certificate", noCert, "no_client_cert"},
			{"another anchor", foreignClient(t, other, identity.CertOptions{}), "untrusted_cert"},
			{"expired", foreignClient(t, ca, identity.CertOptions{
				NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), "cert_not_valid_now"},
			{"not yet valid", foreignClient(t, ca, identity.CertOptions{
				NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}), "cert_not_valid_now"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := dialTLS(t, addr, tt.cfg, "api.production.svc.cluster.local")
				if err == nil {
					err = readErr(c)
				}
				if err == nil {
					t.Fatal("connection was not refused")
				}
				wait.Until(t, 10*time.Second, "handshake failure "+tt.reason, func() bool {
					return counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": tt.reason}) >= 1
				})
			})
		}
	})

	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := io.Copy(io.Discard, c); n > 0 {
			t.Logf("server answered %d bytes (a TLS alert)", n)
		}
		wait.Until(t, 10*time.Second, "not_tls", func() bool {
			return counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "not_tls"}) >= 1
		})
	})

	t.Run("client hello never finishes", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and one byte
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // returns when the server gives up
		wait.Until(t, 10*time.Second, "timeout", func() bool {
			return counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "timeout"}) >= 1
		})
	})

	refusals := []struct {
		name    string
		cfg     *tls.Config
		sni     string
		alpn    []string
		preface []byte
		reason  string
	}{
		{"forbidden identity", clientConfig(t, ca, "web", "east", identity.CertOptions{}), "api.production.svc.cluster.local", nil, nil, "forbidden_identity"},
		{"unexported sni", good, "db.production.svc.cluster.local", nil, nil, "not_exported"},
		{"unexported sni, exported authority", good, "db.production.svc.cluster.local", nil,
			[]byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n"), "not_exported"},
		{"unknown port", good, "outbound_.9090_._.api.production.svc.cluster.local", nil, nil, "unknown_port"},
		{"ambiguous port", good, "multi.production.svc.cluster.local", nil, nil, "unknown_port"},
		{"no endpoints", good, "empty.production.svc.cluster.local", nil, nil, "no_endpoints"},
		{"unexported authority", good, gwName, nil, []byte("GET / HTTP/1.1\r\nHost: db.production.svc.cluster.local\r\n\r\n"), "not_exported"},
		{"foreign authority", good, gwName, nil, []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), "bad_target_name"},
		{"no target", good, gwName, nil, []byte("\x00\x01binary"), "no_target"},
		{"silent client", good, gwName, nil, nil, "route_timeout"},
		// An SNI that names no service of this cluster is refused, not left
		// to the Host header that follows (issue 25, point 3).
		{"sni: port 0, exported authority", good, "outbound_.0_._.db.production.svc.cluster.local", nil,
			[]byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n"), "bad_target_name"},
		{"sni: other cluster domain, exported authority", good, "outbound_.8080_._.api.production.svc.east.local", nil,
			[]byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n"), "bad_target_name"},
		{"sni: host name, exported authority", good, "www.example.com", nil,
			[]byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local\r\n\r\n"), "bad_target_name"},
		{"sni: unexported service, header names exported", good, "db.production.svc.cluster.local", []string{proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 8080, Name: "api.production.svc.cluster.local"}), "bad_target_name"},
		{"authority: port +8080", good, gwName, nil, []byte("GET / HTTP/1.1\r\nHost: api.production.svc.cluster.local:+8080\r\n\r\n"), "bad_target_name"},
		{"header: 4 GiB", good, gwName, []string{proxy.TransportHeaderALPN}, []byte("transport.l5d.io/v1\r\n\r\n\xff\xff\xff\xff"), "bad_transport_header"},
		{"header: port 0", good, gwName, []string{proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 0, Name: "api.production.svc.cluster.local"}), "bad_transport_header"},
		{"header: port 70000", good, gwName, []string{proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 70000, Name: "api.production.svc.cluster.local"}), "bad_transport_header"},
		{"header: outside svc domain", good, gwName, []string{proxy.TransportHeaderALPN},
			proxy.AppendTransportHeader(nil, proxy.TransportHeader{Port: 8080, Name: "kubernetes.default"}), "bad_target_name"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := be.Accepted.Load()
			c, err := dialTLS(t, addr, tt.cfg, tt.sni, tt.alpn...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.preface != nil {
				c.Write(tt.preface)
			}
			if err := readErr(c); err == nil {
				t.Fatal("connection was not refused")
			}
			wait.Until(t, 10*time.Second, "refusal "+tt.reason, func() bool {
				return counter(t, gw.reg, "gateway_refused_connections_total", map[string]string{"reason": tt.reason}) >= 1
			})
			if n := be.Accepted.Load() - before; n != 0 {
				t.Fatalf("a refused connection reached the backend (%d)", n)
			}
		})
	}
	logs := gw.logs.String()
	for _, want := range []string{`"reason":"forbidden_identity"`, `"peer":"spiffe://cluster.local/ns/east/sa/web"`, `"reason":"not_exported"`, `"sni":"db.production.svc.cluster.local"`} {
		if !contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

// foreignClient returns a client presenting a leaf made by from with opts
// (another anchor, bad dates); it does not check the server, as a hostile
// client would not.
func foreignClient(t *testing.T, from *testpki.CA, opts identity.CertOptions) *tls.Config {
	leaf := from.Leaf(t, "web", "west", opts)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{leaf.Cert.Raw, from.Issuer.Cert.Raw},
			PrivateKey:  leaf.Key,
		}},
	}
}

// TestIngressHalfClose: the client's FIN reaches the backend while the
// backend's answer still flows back, and the backend's FIN (close_notify
// then FIN) reaches the client.
func TestIngressHalfClose(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	c, err := dialTLS(t, gw.Addr().String(), clientConfig(t, ca, "web", "west", identity.CertOptions{}), "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() {
		c.Write(payload)
		c.CloseWrite() // close_notify: the backend's echo loop ends after the payload
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c) // ends only when the backend's FIN arrives
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(payload))
	}
}

// TestIngressDrain: after the context ends, an open connection keeps
// working, new connections are refused, and Run returns once it closes.
func TestIngressDrain(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	addr := gw.Addr().String()
	c, err := dialTLS(t, addr, client, "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo(c, "before"); err != nil {
		t.Fatal(err)
	}
	gw.cancel()
	wait.Until(t, 10*time.Second, "draining", gw.Draining)
	if _, err := dialTLS(t, addr, client, "api.production.svc.cluster.local"); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	if got, err := echo(c, "during drain"); err != nil || got != "during drain" {
		t.Fatalf("open connection broke during drain: %q, %v", got, err)
	}
	select {
	case err := <-gw.done:
		t.Fatalf("Run returned (%v) with a connection open", err)
	default:
	}
	c.Close()
	select {
	case err := <-gw.done:
		gw.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the last connection closed")
	}
}

// TestIngressDrainTimeout: connections still open at the drain timeout are
// closed and Run returns.
func TestIngressDrainTimeout(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil,
		func(c *proxy.IngressConfig) { c.DrainTimeout = 100 * time.Millisecond })
	c, err := dialTLS(t, gw.Addr().String(), clientConfig(t, ca, "web", "west", identity.CertOptions{}), "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo(c, "x"); err != nil {
		t.Fatal(err)
	}
	gw.cancel()
	err = <-gw.done
	gw.done <- err
	if err != nil {
		t.Fatal(err)
	}
	if err := readErr(c); err == nil {
		t.Fatal("connection survived the drain timeout")
	}
}

// TestIngressRotation: new identity files apply to the next handshake and
// an open connection keeps working across the rotation.
func TestIngressRotation(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	client.ClientSessionCache = nil // a resumed session would not show the new leaf
	addr := gw.Addr().String()
	c, err := dialTLS(t, addr, client, "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := c.ConnectionState().PeerCertificates[0].SerialNumber
	if _, err := echo(c, "before"); err != nil {
		t.Fatal(err)
	}
	ca.WriteDir(t, gw.dir, ca.Leaf(t, gwSA, gwNS, identity.CertOptions{}))
	if err := gw.src.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := echo(c, "after"); err != nil || got != "after" {
		t.Fatalf("open connection broke on rotation: %q, %v", got, err)
	}
	c2, err := dialTLS(t, addr, client, "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if c2.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("new connection got the old leaf")
	}
	if _, err := echo(c2, "new"); err != nil {
		t.Fatal(err)
	}
}

// TestIngressConnectionLimit: past MaxConns, connections are refused and
// counted, and the ones already open are unaffected.
func TestIngressConnectionLimit(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil,
		func(c *proxy.IngressConfig) { c.MaxConns = 2 })
	client := clientConfig(t, ca, "web", "west", identity.CertOptions{})
	var open []*tls.Conn
	for i := range 2 {
		c, err := dialTLS(t, gw.Addr().String(), client, "api.production.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := echo(c, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	c, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Fatal("third connection got data")
	}
	wait.Until(t, 10*time.Second, "connection_limit", func() bool {
		return counter(t, gw.reg, "gateway_refused_connections_total", map[string]string{"reason": "connection_limit"}) == 1
	})
	for _, c := range open {
		if _, err := echo(c, "still"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIngressDrainTimeoutStuckWriter: at the drain deadline a connection
// whose gateway is blocked writing to a backend that never reads is cut,
// and Run returns: no write holds the drain up.
func TestIngressDrainTimeoutStuckWriter(t *testing.T) {
	ca := testpki.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.(*net.TCPConn).SetReadBuffer(4 << 10) // fills after a few KiB: never read
		held <- c
	}()
	gw := startGateway(t, ca, routes{"production/api": {8080: {ln.Addr().String()}}}, nil,
		func(c *proxy.IngressConfig) { c.DrainTimeout = 200 * time.Millisecond })
	c, err := dialTLS(t, gw.Addr().String(), clientConfig(t, ca, "web", "west", identity.CertOptions{}), "api.production.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for range 512 { // 32 MiB at most, far more than the buffers on the way hold
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	backend := <-held
	defer backend.Close()
	toUpstream := map[string]string{"direction": "ingress", "flow": "to_upstream"}
	wait.Until(t, 10*time.Second, "the gateway writing to the backend", func() bool {
		return counter(t, gw.reg, "gateway_bytes_total", toUpstream) >= 64<<10
	})
	gw.cancel()
	select {
	case err := <-gw.done:
		gw.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain deadline: a blocked write holds the connection")
	}
	if err := readErr(c); err == nil {
		t.Fatal("connection survived the drain timeout")
	}
}
