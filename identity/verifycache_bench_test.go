package identity

import (
	"crypto/x509"
	"testing"
	"time"
)

// BenchmarkTrustVerify is the server's chain check of one full handshake
// (a leaf and its issuer), served by the cache or verified in full.
func BenchmarkTrustVerify(b *testing.B) {
	tc := newTestChain(b, CertOptions{})
	tr := newTrust([]*x509.Certificate{tc.anchor.Cert}, nil)
	chain := []*x509.Certificate{tc.leaf.Cert, tc.issuer.Cert}
	now := time.Now()
	for _, miss := range []bool{false, true} {
		name := "cache hit"
		if miss {
			name = "cache miss"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if miss {
					tr.verified.forget()
				}
				if _, err := tr.verify(chain, x509.ExtKeyUsageClientAuth, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
