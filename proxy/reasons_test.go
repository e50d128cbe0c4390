package proxy_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
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
	} {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := dialTLS(t, addr, tt.cfg, tt.sni); err == nil {
				if readErr(c) == nil {
					t.Fatal("connection was not refused")
				}
			}
			eventually(t, "reason "+tt.reason, func() bool {
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
	eventually(t, "bad_handshake_message", func() bool {
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

func hostile(leaf *identity.KeyPair, ca *testpki.CA) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Cert.Raw, ca.Issuer.Cert.Raw}, PrivateKey: leaf.Key}},
	}
}
