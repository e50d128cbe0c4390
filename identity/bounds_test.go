package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/hostilepki"
)

// TestCheckPresented: the shapes of chain the trust model uses pass, and
// every other one is refused before a signature is checked. The
// certificates' signatures are not valid: checkPresented must not need them.
func TestCheckPresented(t *testing.T) {
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := &signer.PublicKey
	p384 := ecKey(t, elliptic.P384())
	p521 := ecKey(t, elliptic.P521())
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(subject, issuer string, pub any) *x509.Certificate {
		t.Helper()
		return fakeCert(t, subject, issuer, pub, signer)
	}
	leaf := cert("web", "issuer", p256)
	issuer := cert("issuer", "root", p256)
	root := cert("root", "root", p256)
	tests := []struct {
		name    string
		chain   []*x509.Certificate
		wantErr string
	}{
		{"leaf alone", []*x509.Certificate{leaf}, ""},
		{"leaf and issuer", []*x509.Certificate{leaf, issuer}, ""},
		{"leaf, issuer and root", []*x509.Certificate{leaf, issuer, root}, ""},
		{"four in order", []*x509.Certificate{cert("web", "i1", p256), cert("i1", "i2", p256), cert("i2", "root", p256), root}, ""},
		{"P-384, Ed25519, RSA 2048 and 4096", []*x509.Certificate{cert("web", "i1", p384), cert("i1", "i2", edPub), cert("i2", "i3", hostilepki.FakeRSA(2048)), cert("i3", "root", hostilepki.FakeRSA(4096))}, ""},
		{"five certificates", []*x509.Certificate{cert("web", "i1", p256), cert("i1", "i2", p256), cert("i2", "i3", p256), cert("i3", "root", p256), root}, "5 certificates, at most 4"},
		{"out of order", []*x509.Certificate{leaf, root, issuer}, "not issued by the next one"},
		{"unrelated extra", []*x509.Certificate{leaf, issuer, cert("other", "other", p256)}, "not issued by the next one"},
		{"decoy with the issuer's subject", []*x509.Certificate{cert("web", "x", p256), cert("x", "x", p256), cert("x", "root", p256)}, "two certificates with subject"},
		{"P-521 leaf", []*x509.Certificate{cert("web", "issuer", p521), issuer}, "P-521"},
		{"P-521 issuer", []*x509.Certificate{leaf, cert("issuer", "root", p521)}, "P-521"},
		{"RSA 8192", []*x509.Certificate{leaf, cert("issuer", "root", hostilepki.FakeRSA(8192))}, "RSA key of 8192 bits"},
		{"RSA 1024", []*x509.Certificate{leaf, cert("issuer", "root", hostilepki.FakeRSA(1024))}, "RSA key of 1024 bits"},
		{"RSA large exponent", []*x509.Certificate{leaf, cert("issuer", "root", &rsa.PublicKey{N: hostilepki.FakeRSA(2048).N, E: 1<<31 - 1})}, "exponent 2147483647"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPresented(tt.chain)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), errChainPrefix):
				t.Fatalf("error %q lacks the prefix the proxy counts by", err)
			}
		})
	}
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PublicKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

// fakeCert is a certificate of pub with the given subject and issuer
// names, signed by signer whoever it names as issuer.
func fakeCert(t *testing.T, subject, issuer string, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	parent := &x509.Certificate{Subject: pkix.Name{CommonName: issuer}}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: subject},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if subject == issuer {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
