// Package testpki makes throw-away trust anchors, issuers and identity
// directories for tests, with the same code as `mcgate identity`.
//
//	ca := testpki.New(t)
//	dir := ca.IdentityDir(t, "linkerd-gateway", "linkerd-multicluster")
//	src := testpki.Source(t, dir)
//	srvCfg := identity.ServerTLSConfig(src)
package testpki

import (
	"crypto/x509"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
)

// TrustDomain is the trust domain of every identity testpki makes.
const TrustDomain = "cluster.local"

// CA is an anchor and an issuer signed by it, as one cluster has.
type CA struct {
	Anchor *identity.KeyPair
	Issuer *identity.KeyPair
}

// New makes a fresh anchor and issuer; it fails t on error.
func New(t testing.TB) *CA {
	t.Helper()
	anchor, err := identity.NewAnchor(identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Anchor: anchor, Issuer: NewIssuer(t, anchor)}
}

// NewIssuer makes another issuer under anchor, as a second cluster sharing
// the anchor has.
func NewIssuer(t testing.TB, anchor *identity.KeyPair) *identity.KeyPair {
	t.Helper()
	issuer, err := identity.NewIssuer(anchor, identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return issuer
}

// Name returns the identity of service account sa in namespace ns of
// TrustDomain.
func Name(t testing.TB, sa, ns string) identity.Name {
	t.Helper()
	n, err := identity.NewName(TrustDomain, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Leaf issues a leaf for sa.ns signed by ca's issuer.
func (ca *CA) Leaf(t testing.TB, sa, ns string, opts identity.CertOptions) *identity.KeyPair {
	t.Helper()
	leaf, err := identity.NewLeaf(ca.Issuer, Name(t, sa, ns), opts)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// WriteDir writes leaf, ca's issuer as its chain, and ca's anchor into dir
// in the --identity-dir layout.
func (ca *CA) WriteDir(t testing.TB, dir string, leaf *identity.KeyPair) {
	t.Helper()
	err := identity.WriteIdentityDir(dir, leaf, []*x509.Certificate{ca.Issuer.Cert}, []*x509.Certificate{ca.Anchor.Cert})
	if err != nil {
		t.Fatal(err)
	}
}

// IdentityDir returns a new directory holding a 24-hour leaf for sa.ns.
func (ca *CA) IdentityDir(t testing.TB, sa, ns string) string {
	t.Helper()
	dir := t.TempDir()
	ca.WriteDir(t, dir, ca.Leaf(t, sa, ns, identity.CertOptions{}))
	return dir
}

// Source loads dir into a FileSource that logs to nowhere.
func Source(t testing.TB, dir string) *identity.FileSource {
	t.Helper()
	src, err := identity.NewFileSource(identity.FileSourceConfig{Dir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return src
}
