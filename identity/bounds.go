package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// A peer's chain is checked against these bounds before any signature is:
// whatever it presents reaches crypto/x509's chain building unauthenticated,
// and x509 would otherwise try every presented certificate whose subject
// fits as an issuer, with keys of any size, up to 100 signature checks per
// handshake. Within the bounds the pool x509 searches holds one candidate
// per link, so a chain costs at most one signature check per certificate
// (plus one per anchor of the same subject), each with a key of bounded cost.
const (
	// maxPresentedCerts is the leaf and up to three issuers above it:
	// Linkerd's leaf, issuer and (optionally) root; SPIRE's nested
	// intermediates. It is also the depth limit of a verified chain
	// (maxPresentedCerts certificates plus the anchor).
	maxPresentedCerts = 4
	minRSABits        = 2048
	maxRSABits        = 4096
	rsaExponent       = 65537
)

// errChainPrefix starts every refusal of checkPresented; the proxy counts
// them under a reason of their own (bad_chain).
const errChainPrefix = "identity: chain refused before verification: "

// checkPresented refuses a presented chain (leaf first) that the trust model
// has no use for, before any signature is checked:
//   - more than maxPresentedCerts certificates;
//   - a key other than ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to
//     4096 bits with exponent 65537;
//   - certificates out of order: each must name the next one's subject as
//     its issuer (TLS 1.3 says a chain SHOULD be sent so; mcgate, Linkerd and
//     openssl send it so), so that the only path x509 can build is the
//     presented one;
//   - two certificates with the same subject, which would give x509 a
//     second candidate to try at some link.
func checkPresented(certs []*x509.Certificate) error {
	if len(certs) > maxPresentedCerts {
		return fmt.Errorf("%s%d certificates, at most %d", errChainPrefix, len(certs), maxPresentedCerts)
	}
	for i, c := range certs {
		if err := checkKey(c); err != nil {
			return fmt.Errorf("%scertificate %d (%q): %w", errChainPrefix, i, c.Subject.CommonName, err)
		}
		if i+1 < len(certs) && !bytes.Equal(c.RawIssuer, certs[i+1].RawSubject) {
			return fmt.Errorf("%scertificate %d (%q) is not issued by the next one (%q): send the chain in order",
				errChainPrefix, i, c.Subject.CommonName, certs[i+1].Subject.CommonName)
		}
		for _, d := range certs[:i] {
			if bytes.Equal(d.RawSubject, c.RawSubject) {
				return fmt.Errorf("%stwo certificates with subject %q", errChainPrefix, c.Subject.CommonName)
			}
		}
	}
	return nil
}

// checkKey accepts the key types and sizes the trust model uses (Linkerd
// and cert-manager issue ECDSA P-256; RSA and Ed25519 issuers exist), whose
// signature checks all cost about the same, and refuses the rest (RSA keys
// of 8192 bits cost some 30 times a P-256 check, P-521 a few times).
func checkKey(c *x509.Certificate) error {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA key on %s: want P-256 or P-384", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits || k.E != rsaExponent {
			return fmt.Errorf("RSA key of %d bits, exponent %d: want %d to %d bits, exponent %d", n, k.E, minRSABits, maxRSABits, rsaExponent)
		}
		return nil
	}
	return fmt.Errorf("%T key: want ECDSA, Ed25519 or RSA", c.PublicKey)
}

// checkFromAnchor checks the presented chain's signatures from the anchor
// down, before x509 builds it from the leaf up: each signature is then
// checked with a key that an anchor already vouches for, so a chain that
// does not reach an anchor fails at its first forged link after one check
// with a key of the operator's choosing, whatever keys the client put in
// it. x509 checks the signatures again (with validity, constraints and
// usages), but only for chains that passed, and a peer's next handshakes
// with the same chain hit the cache of verify.
func (t *trust) checkFromAnchor(certs []*x509.Certificate) error {
	chain := certs
	for i, c := range certs {
		if slices.ContainsFunc(t.anchors, c.Equal) {
			chain = certs[:i] // a copy of an anchor ends the chain
			break
		}
	}
	if len(chain) == 0 {
		return errors.New("identity: peer presented an anchor as its certificate")
	}
	if len(certs) == 1 {
		chain = append(chain[:1:1], t.own...) // a leaf alone, of our own cluster
	}
	top := chain[len(chain)-1]
	if !slices.ContainsFunc(t.anchors, func(a *x509.Certificate) bool {
		return bytes.Equal(a.RawSubject, top.RawIssuer) && top.CheckSignatureFrom(a) == nil
	}) {
		return fmt.Errorf("identity: %q: %w", top.Subject.CommonName, x509.UnknownAuthorityError{Cert: top})
	}
	for i := len(chain) - 2; i >= 0; i-- {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("identity: %q: %w (%w)", chain[i].Subject.CommonName, x509.UnknownAuthorityError{Cert: chain[i]}, err)
		}
	}
	return nil
}
