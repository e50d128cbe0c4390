package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
	// anchorsID names this anchor set (a hash of the anchors' DER bytes), so
	// TLS sessions can remember which trust they were made under.
	anchorsID [8]byte
	roots     *x509.CertPool
	// own is the chain above our own leaf (our issuer). It helps build the
	// chain of a peer of our own cluster that sent its leaf alone, as
	// `openssl s_client -cert tls.crt` does without -cert_chain. It adds no
	// trust: a chain must still end at an anchor.
	own []*x509.Certificate

	// verified remembers chains that verified against these anchors (and
	// our own issuers, which complete a peer's leaf sent alone), so that
	// resumed handshakes and repeated clients skip the signature checks of
	// chain building (a quarter of the CPU of a resumed handshake). It
	// lives and dies with this trust, which every load of the identity
	// files makes anew: a rotation of ca.crt, or of our own tls.crt,
	// forgets it. The TLS handshake still checks the peer's possession of
	// the key (CertificateVerify) on every full handshake.
	verified verifiedCache
	// bundle serves every trust domain: the anchor is shared by all clusters
	// and does not say which trust domains it vouches for, just as Linkerd
	// accepts any identity that chains to its anchors. Authorizer patterns are
	// what narrow it down.
	bundle *x509bundle.Bundle
}

func newTrust(anchors, own []*x509.Certificate) *trust {
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	sum := chainKey(anchors)
	return &trust{
		anchors:   anchors,
		anchorsID: [8]byte(sum[:8]),
		roots:     roots,
		own:       own,
		bundle:    x509bundle.FromX509Authorities(spiffeid.TrustDomain{}, anchors),
	}
}

// verifiedChain is what a successful verification proved: the identity, and
// the window in which every certificate of the chain is valid.
type verifiedChain struct {
	name                Name
	notBefore, notAfter time.Time
}

func chainKey(certs []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, c := range certs {
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (t *trust) remember(key [sha256.Size]byte, name Name, chain []*x509.Certificate) {
	v := verifiedChain{name: name}
	for i, c := range chain {
		if i == 0 || c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	t.verified.put(key, v)
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
//
// usage is the extended key usage the peer's role needs: ClientAuth when we
// are the server, ServerAuth when we are the client. Linkerd leaves carry
// both; a leaf issued for one role only cannot be used in the other.
func (t *trust) verify(certs []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (Name, error) {
	if len(certs) == 0 {
		return Name{}, errors.New("identity: peer sent no certificate")
	}
	// Before anything else, hashing for the cache included: the chain is
	// not authenticated yet.
	if err := checkPresented(certs); err != nil {
		return Name{}, err
	}
	// Checked before the cache: the same chain may verify for one role and
	// not for the other.
	if err := checkExtKeyUsage(certs[0], usage); err != nil {
		return Name{}, err
	}
	key := chainKey(certs)
	if name, ok := t.verified.get(key, now); ok {
		return name, nil
	}
	name, chain, err := t.verifyChain(certs, now)
	if err != nil {
		return Name{}, err
	}
	t.remember(key, name, chain)
	return name, nil
}

// checkExtKeyUsage refuses a leaf whose extended key usage excludes usage. A
// leaf without the extension may be used for anything (RFC 5280, 4.2.1.12).
// Issuers' usages are not nested here: x509svid.Verify does not check them
// and Linkerd's issuers carry none.
func checkExtKeyUsage(leaf *x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == usage || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return fmt.Errorf("identity: peer certificate %q lacks the %s extended key usage", leaf.Subject.CommonName, extKeyUsageName(usage))
}

func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	}
	return fmt.Sprintf("%d", u)
}

// issuersOf returns the intermediates x509 may build the chain of certs
// (checked by checkPresented) from: the presented ones, less copies of our
// anchors (a root sent along would be tried twice, as root and as
// intermediate); and our own issuer chain only for a peer that sent its leaf
// alone, so that a peer sending its chain never has two candidates for one
// link (every Linkerd issuer is called identity.linkerd.cluster.local).
func (t *trust) issuersOf(certs []*x509.Certificate) []*x509.Certificate {
	if len(certs) == 1 {
		return t.own
	}
	var out []*x509.Certificate
	for _, c := range certs[1:] {
		if !slices.ContainsFunc(t.anchors, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

// verifyChain does the work of verify and returns the chain it built.
func (t *trust) verifyChain(certs []*x509.Certificate, now time.Time) (Name, []*x509.Certificate, error) {
	leaf := certs[0]
	name, err := leafName(leaf)
	if err != nil {
		return Name{}, nil, err
	}
	if err := t.checkFromAnchor(certs); err != nil {
		return Name{}, nil, err
	}
	issuers := t.issuersOf(certs)
	if hasSPIFFEURI(leaf) {
		_, chains, err := x509svid.Verify(append([]*x509.Certificate{leaf}, issuers...), t, x509svid.WithTime(now))
		if err != nil {
			return Name{}, nil, fmt.Errorf("identity: %s: %w", name, err)
		}
		return name, chains[0], nil
	}
	// x509svid.Verify insists on a SPIFFE URI SAN, which stock Linkerd leaves
	// (DNS SAN only) do not have. Make the same checks with crypto/x509.
	switch {
	case leaf.IsCA:
		return Name{}, nil, fmt.Errorf("identity: %s: leaf certificate with CA flag set to true", name.DNS())
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return Name{}, nil, fmt.Errorf("identity: %s: leaf certificate with KeyCertSign or CRLSign key usage", name.DNS())
	}
	inter := x509.NewCertPool()
	for _, c := range issuers {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	})
	if err != nil {
		return Name{}, nil, fmt.Errorf("identity: %s: could not verify leaf certificate: %w", name.DNS(), err)
	}
	return name, chains[0], nil
}
