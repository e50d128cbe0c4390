package identity

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/mcgate/mcgate/internal/testenv/hostilepki"
)

// BenchmarkVerifyChain measures the chain work of one handshake, the cache
// left out: a good client's chain, the costliest chain within the bounds,
// and decoy chains with the bounds and as x509 takes them without (every
// presented certificate a candidate issuer, up to 100 signature checks).
func BenchmarkVerifyChain(b *testing.B) {
	tc := newTestChain(b, CertOptions{})
	anchor, issuer, leaf := tc.anchor, tc.issuer, tc.leaf
	trust := newTrust([]*x509.Certificate{anchor.Cert}, nil)
	parse := func(ders [][]byte) []*x509.Certificate {
		certs := make([]*x509.Certificate, len(ders))
		for i, d := range ders {
			var err error
			if certs[i], err = x509.ParseCertificate(d); err != nil {
				b.Fatal(err)
			}
		}
		return certs
	}
	rsaDecoys := parse(hostilepki.RSADecoys(b, leaf.Cert, 20))
	edDecoys := parse(hostilepki.Ed25519Decoys(b, leaf.Cert, 80))
	for _, bc := range []struct {
		name      string
		chain     []*x509.Certificate
		unbounded bool
	}{
		{"good", []*x509.Certificate{leaf.Cert, issuer.Cert}, false},
		{"good, unbounded", []*x509.Certificate{leaf.Cert, issuer.Cert}, true},
		{"4 in order, RSA-4096", parse(hostilepki.Bounded(b, leaf.Cert, anchor.Cert)), false},
		{"20 RSA-8192 decoys", rsaDecoys, false},
		{"20 RSA-8192 decoys, unbounded", rsaDecoys, true},
		{"80 Ed25519 decoys", edDecoys, false},
		{"80 Ed25519 decoys, unbounded", edDecoys, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Now()
			for b.Loop() {
				if bc.unbounded {
					unbounded(trust, bc.chain, now)
				} else if checkPresented(bc.chain) == nil {
					trust.verifyChain(bc.chain, now)
				}
			}
		})
	}
}

// unbounded is chain verification as it was before the bounds: every
// presented certificate goes into x509's pool of intermediates.
func unbounded(t *trust, certs []*x509.Certificate, now time.Time) error {
	pool := x509.NewCertPool()
	for _, c := range certs[1:] {
		pool.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}
