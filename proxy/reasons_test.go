package proxy_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// TestIngressHandshakeReasons: refusals the identity package makes for
// reasons other than trust or time, and handshake messages that do not
// parse, are counted under reasons of their own rather than "other".
func TestIngressHandshakeReasons(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, nil)
	addr := gw.Addr().String()
	twoNames := ca.Leaf(t, "web", "west", identity.CertOptions{
		DNSNames: []string{"other.west.serviceaccount.identity.linkerd.cluster.local"}})
	caUsage := ca.Leaf(t, "web", "west", identity.CertOptions{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign})
	serverOnly := ca.Leaf(t, "web", "west", identity.CertOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	for _, tt := range []struct {
		name   string
		cfg    *tls.Config
		sni    string
		reason string
	}{
		{"leaf names two identities", hostile(twoNames, ca), "api.production.svc.cluster.local", "bad_cert"},
		{"leaf with CA key usage", hostile(caUsage, ca), "api.production.svc.cluster.local", "bad_cert"},
		{"leaf for servers only", hostile(serverOnly, ca), "api.production.svc.cluster.local", "bad_cert"},
		{"chain of five", hostile(ca.Leaf(t, "web", "west", identity.CertOptions{}), ca, ca.Anchor, ca.Issuer, ca.Anchor), "api.production.svc.cluster.local", "bad_chain"},
		{"TLS 1.2 client", tls12(t, ca), "api.production.svc.cluster.local", "bad_version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := dialTLS(t, addr, tt.cfg, tt.sni); err == nil {
				if readErr(c) == nil {
					t.Fatal("connection was not refused")
				}
			}
			wait.Until(t, 10*time.Second, "reason "+tt.reason, func() bool {
				return counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": tt.reason}) >= 1
			})
		})
	}
}

// TestIngressMalformedHello: a ClientHello whose SNI ends in a dot (which
// Go clients never send, and crypto/tls refuses) is counted as
// bad_handshake_message.
func TestIngressMalformedHello(t *testing.T) {
	ca := testpki.New(t)
	gw := startGateway(t, ca, routes{}, nil)
	hello := clientHello(t, "api.production.svc.cluster.localX")
	i := bytes.LastIndex(hello, []byte("localX"))
	hello[i+len("local")] = '.'
	c, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(hello)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	wait.Until(t, 10*time.Second, "bad_handshake_message", func() bool {
		return counter(t, gw.reg, "gateway_handshake_failures_total", map[string]string{"reason": "bad_handshake_message"}) >= 1
	})
}

// clientHello returns the first TLS record a Go client sends for sni.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}).Handshake()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// hostile presents leaf and ca's issuer, then extra certificates if any.
func hostile(leaf *identity.KeyPair, ca *testpki.CA, extra ...*identity.KeyPair) *tls.Config {
	chain := [][]byte{leaf.Cert.Raw, ca.Issuer.Cert.Raw}
	for _, e := range extra {
		chain = append(chain, e.Cert.Raw)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: leaf.Key}},
	}
}

// tls12 is a good client's certificate offered over TLS 1.2 only.
func tls12(t *testing.T, ca *testpki.CA) *tls.Config {
	c := hostile(ca.Leaf(t, "web", "west", identity.CertOptions{}), ca)
	c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	return c
}

// TestRefusedIdentityGetsNoTicket: an identity the allow list refuses
// fails its handshake before the server issues a session ticket, so it
// cannot come back with cheap resumed handshakes; an allowed one gets one.
func TestRefusedIdentityGetsNoTicket(t *testing.T) {
	ca := testpki.New(t)
	be := newBackend(t)
	gw := startGateway(t, ca, routes{"production/api": {8080: {be.Addr()}}}, []string{"spiffe://cluster.local/ns/west/sa/web"})
	for _, tt := range []struct {
		sa      string
		allowed bool
	}{{"web", true}, {"intruder", false}} {
		t.Run(tt.sa, func(t *testing.T) {
			cfg := clientConfig(t, ca, tt.sa, "west", identity.CertOptions{})
			cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			cfg.ClientSessionCache = cache
			c, err := dialTLS(t, gw.Addr().String(), cfg, "api.production.svc.cluster.local")
			if err != nil {
				t.Fatal(err)
			}
			if tt.allowed {
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			} else if readErr(c) == nil {
				t.Fatal("refused identity was served")
			}
			if got := cache.puts.Load() > 0; got != tt.allowed {
				t.Fatalf("session ticket received: %v, want %v", got, tt.allowed)
			}
		})
	}
	if n := counter(t, gw.reg, "gateway_refused_connections_total", map[string]string{"reason": "forbidden_identity"}); n != 1 {
		t.Fatalf("forbidden_identity refusals = %v, want 1", n)
	}
}

// countingCache counts the sessions a client stores.
type countingCache struct {
	tls.ClientSessionCache
	puts atomic.Int64
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.puts.Add(1)
	}
	c.ClientSessionCache.Put(key, cs)
}
