package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// leafName returns the identity a leaf certificate carries: its SPIFFE URI SAN,
// or else its Linkerd DNS SAN (stock Linkerd leaves have only that one). A
// leaf whose two SANs name different identities is refused rather than
// guessed at: logs and authorization must agree on who the peer is.
func leafName(leaf *x509.Certificate) (Name, error) {
	var dnsName Name
	for _, d := range leaf.DNSNames {
		if !strings.Contains(strings.ToLower(d), linkerdDNSInfix) {
			continue // an ordinary host name, not an identity
		}
		n, err := nameFromDNS(d)
		if err != nil {
			return Name{}, fmt.Errorf("identity: certificate DNS SAN %q: %w", d, err)
		}
		if !dnsName.IsZero() && n != dnsName {
			return Name{}, fmt.Errorf("identity: certificate names two identities, %s and %s", dnsName.DNS(), n.DNS())
		}
		dnsName = n
	}
	if hasSPIFFEURI(leaf) {
		id, err := x509svid.IDFromCert(leaf)
		if err != nil {
			return Name{}, fmt.Errorf("identity: certificate URI SAN: %w", err)
		}
		n, err := NameFromSPIFFEID(id)
		if err != nil {
			return Name{}, err
		}
		if !dnsName.IsZero() && n != dnsName {
			return Name{}, fmt.Errorf("identity: certificate names two identities, %s and %s", n, dnsName.DNS())
		}
		return n, nil
	}
	if dnsName.IsZero() {
		return Name{}, errors.New("identity: certificate has neither a SPIFFE URI SAN nor a *" + linkerdDNSInfix + "<td> DNS SAN")
	}
	return dnsName, nil
}

func hasSPIFFEURI(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// trust is one loaded anchor bundle, ready for verification.
type trust struct {
	anchors []*x509.Certificate
	roots   *x509.CertPool
	// bundle serves every trust domain: the anchor is shared by all clusters
	// and does not say which trust domains it vouches for, just as Linkerd
	// accepts any identity that chains to its anchors. Authorizer patterns are
	// what narrow it down.
	bundle *x509bundle.Bundle
}

func newTrust(anchors []*x509.Certificate) *trust {
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	return &trust{
		anchors: anchors,
		roots:   roots,
		bundle:  x509bundle.FromX509Authorities(spiffeid.TrustDomain{}, anchors),
	}
}

// GetX509BundleForTrustDomain lets x509svid.Verify use the anchors for the
// trust domain of whatever SPIFFE ID it is verifying (see trust.bundle).
func (t *trust) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return t.bundle, nil
}

// verify checks that certs (leaf first, then intermediates) chain to the
// anchors at time now and returns the leaf's identity. It runs on every
// handshake, resumed ones included, so that expiry and anchor rotation apply
// to sessions created before them.
func (t *trust) verify(certs []*x509.Certificate, now time.Time) (Name, error) {
	if len(certs) == 0 {
		return Name{}, errors.New("identity: peer sent no certificate")
	}
	leaf := certs[0]
	name, err := leafName(leaf)
	if err != nil {
		return Name{}, err
	}
	if hasSPIFFEURI(leaf) {
		if _, _, err := x509svid.Verify(certs, t, x509svid.WithTime(now)); err != nil {
			return Name{}, fmt.Errorf("identity: %s: %w", name, err)
		}
		return name, nil
	}
	// x509svid.Verify insists on a SPIFFE URI SAN, which stock Linkerd leaves
	// (DNS SAN only) do not have. Make the same checks with crypto/x509.
	switch {
	case leaf.IsCA:
		return Name{}, fmt.Errorf("identity: %s: leaf certificate with CA flag set to true", name.DNS())
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return Name{}, fmt.Errorf("identity: %s: leaf certificate with KeyCertSign or CRLSign key usage", name.DNS())
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	})
	if err != nil {
		return Name{}, fmt.Errorf("identity: %s: could not verify leaf certificate: %w", name.DNS(), err)
	}
	return name, nil
}
