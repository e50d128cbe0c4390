package identity_test

import (
	"crypto/elliptic"
	"crypto/x509"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

func TestGeneratedProfiles(t *testing.T) {
	start := time.Now()
	anchor, err := identity.NewAnchor(identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.NewIssuer(anchor, identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := testpki.Name(t, gatewaySA, gatewayNS)
	leaf, err := identity.NewLeaf(issuer, n, identity.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		kp        *identity.KeyPair
		parent    *x509.Certificate
		cn        string
		lifetime  time.Duration
		ca        bool
		pathLen   int
		usage     x509.KeyUsage
		extUsages []x509.ExtKeyUsage
	}{
		{"anchor", anchor, anchor.Cert, "root.linkerd.cluster.local", 87600 * time.Hour, true, 1, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil},
		{"issuer", issuer, anchor.Cert, "identity.linkerd.cluster.local", 8760 * time.Hour, true, 0, x509.KeyUsageCertSign | x509.KeyUsageCRLSign, nil},
		{"leaf", leaf, issuer.Cert, n.DNS(), 24 * time.Hour, false, -1, x509.KeyUsageDigitalSignature,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	}
	for _, c := range checks {
		cert := c.kp.Cert
		if err := cert.CheckSignatureFrom(c.parent); err != nil {
			t.Errorf("%s: not signed by its parent: %v", c.name, err)
		}
		if cert.Subject.CommonName != c.cn {
			t.Errorf("%s: CN %q, want %q", c.name, cert.Subject.CommonName, c.cn)
		}
		if got := cert.NotAfter.Sub(start); got < c.lifetime-time.Minute || got > c.lifetime+time.Minute {
			t.Errorf("%s: lifetime %v, want %v", c.name, got, c.lifetime)
		}
		if d := start.Sub(cert.NotBefore); d < 0 || d > 2*time.Minute {
			t.Errorf("%s: NotBefore %v is not a little before now", c.name, cert.NotBefore)
		}
		if cert.IsCA != c.ca || !cert.BasicConstraintsValid {
			t.Errorf("%s: IsCA %v, want %v", c.name, cert.IsCA, c.ca)
		}
		if c.ca && (cert.MaxPathLen != c.pathLen || (c.pathLen == 0) != cert.MaxPathLenZero) {
			t.Errorf("%s: path length %d (zero %v), want %d", c.name, cert.MaxPathLen, cert.MaxPathLenZero, c.pathLen)
		}
		if cert.KeyUsage != c.usage || !slices.Equal(cert.ExtKeyUsage, c.extUsages) {
			t.Errorf("%s: key usage %v %v, want %v %v", c.name, cert.KeyUsage, cert.ExtKeyUsage, c.usage, c.extUsages)
		}
		if c.kp.Key.Curve != elliptic.P256() || cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("%s: not ECDSA P-256 with SHA-256", c.name)
		}
		if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() < 64 {
			t.Errorf("%s: serial %v", c.name, cert.SerialNumber)
		}
	}
	if !slices.Equal(leaf.Cert.DNSNames, []string{n.DNS()}) || len(leaf.Cert.URIs) != 1 || leaf.Cert.URIs[0].String() != n.String() {
		t.Errorf("leaf SANs %v %v", leaf.Cert.DNSNames, leaf.Cert.URIs)
	}
}

func TestGenerateOptions(t *testing.T) {
	ca := testpki.New(t)
	nb, na := time.Now().Add(time.Hour).Truncate(time.Second), time.Now().Add(3*time.Hour).Truncate(time.Second)
	u, _ := url.Parse("https://example.com/x")
	leaf := ca.Leaf(t, "web", "prod", identity.CertOptions{
		CommonName: "web", NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: []string{"web.prod.svc.cluster.local"}, URIs: []*url.URL{u},
	})
	c := leaf.Cert
	if c.Subject.CommonName != "web" || !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) ||
		c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment ||
		!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) ||
		len(c.DNSNames) != 2 || len(c.URIs) != 2 {
		t.Errorf("options not applied: %+v", c)
	}
	if _, err := identity.NewLeaf(ca.Issuer, testpki.Name(t, "web", "prod"), identity.CertOptions{NotBefore: na, NotAfter: nb}); err == nil {
		t.Error("NewLeaf accepted NotAfter before NotBefore")
	}
	if _, err := identity.NewLeaf(ca.Issuer, identity.Name{}, identity.CertOptions{}); err == nil {
		t.Error("NewLeaf accepted the zero Name")
	}
}

func TestKeyPairFiles(t *testing.T) {
	ca := testpki.New(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "issuer.crt"), filepath.Join(dir, "issuer.key")
	if err := identity.WriteKeyPair(ca.Issuer, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	kp, err := identity.LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !kp.Cert.Equal(ca.Issuer.Cert) || !kp.Key.Equal(ca.Issuer.Key) {
		t.Fatal("LoadKeyPair read something else")
	}
	if _, err := identity.LoadKeyPair(certFile, filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadKeyPair without a key file succeeded")
	}
	if err := identity.WriteKeyPair(ca.Anchor, certFile+"2", certFile+"2.key"); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadKeyPair(certFile, certFile+"2.key"); err == nil {
		t.Error("LoadKeyPair accepted a key of another certificate")
	}
}

func TestCheckCAAndAnchor(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Leaf(t, "web", "prod", identity.CertOptions{})
	noSign, err := identity.NewAnchor(identity.CertOptions{CommonName: "no-sign", KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name               string
		cert               *x509.Certificate
		wantCA, wantAnchor string // "" for no error
	}{
		{"anchor", ca.Anchor.Cert, "", ""},
		{"issuer", ca.Issuer.Cert, "", `"identity.linkerd.cluster.local" is not a self-signed root CA: it was issued by "root.linkerd.cluster.local"`},
		{"leaf", leaf.Cert, `"web.prod.serviceaccount.identity.linkerd.cluster.local" is not a CA certificate`,
			`"web.prod.serviceaccount.identity.linkerd.cluster.local" is not a CA certificate`},
		{"ca without keyCertSign", noSign.Cert, `"no-sign" is a CA certificate whose key usage does not allow signing certificates`,
			`"no-sign" is a CA certificate whose key usage does not allow signing certificates`},
	} {
		for _, check := range []struct {
			fn   func(*x509.Certificate) error
			want string
		}{{identity.CheckCA, c.wantCA}, {identity.CheckAnchor, c.wantAnchor}} {
			err := check.fn(c.cert)
			if (err == nil) != (check.want == "") || (err != nil && !strings.Contains(err.Error(), check.want)) {
				t.Errorf("%s: %v, want %q", c.name, err, check.want)
			}
		}
	}
}
