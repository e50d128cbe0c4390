package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Defaults of the certificates that `mcgate identity` creates. Anchor and
// issuer match the `step certificate create` commands of the Linkerd
// multicluster guide (--not-after 87600h and 8760h).
const (
	DefaultAnchorCommonName = "root.linkerd.cluster.local"
	DefaultIssuerCommonName = "identity.linkerd.cluster.local"
	DefaultAnchorLifetime   = 10 * 365 * 24 * time.Hour // 87600h
	DefaultIssuerLifetime   = 365 * 24 * time.Hour      // 8760h

	// DefaultLeafLifetime is NewLeaf's default, as step's: for leaves
	// that something renews, as Linkerd renews its proxies' 24-hour leaves,
	// and for tests.
	DefaultLeafLifetime = 24 * time.Hour

	// DefaultManualLeafLifetime is the default of `mcgate identity leaf`,
	// whose leaf a person makes and nothing renews: 24 hours there would
	// stop the gateway the next day. It is a year less a day (8736h): long
	// enough for a yearly renewal by hand, and a day shorter than the
	// default issuer, so that a leaf made the same day as its issuer fits
	// under it (the command refuses a leaf that outlives its --ca) and ends
	// first, so that the leaf's expiry warnings (DefaultLeafExpiryWarning
	// ahead) cover the issuer's end too. A leaf renewed under an issuer that
	// ends within the year is refused, which says the issuer needs renewing
	// as well, rather than silently shortened.
	DefaultManualLeafLifetime = 364 * 24 * time.Hour // 8736h
)

// backdate moves NotBefore into the past so that a peer whose clock lags a
// little behind the issuer's still accepts a certificate made a moment ago.
const backdate = time.Minute

// CertOptions adjusts a generated certificate; zero fields take the
// defaults of the kind of certificate being made.
type CertOptions struct {
	// CommonName defaults to DefaultAnchorCommonName, DefaultIssuerCommonName,
	// or the DNS spelling of the leaf's Name.
	CommonName string
	// NotBefore defaults to one minute ago.
	NotBefore time.Time
	// NotAfter defaults to now plus the kind's default lifetime.
	NotAfter time.Time
	// KeyUsage replaces the kind's key usage (CertSign|CRLSign for CAs,
	// DigitalSignature for leaves).
	KeyUsage x509.KeyUsage
	// ExtKeyUsage replaces the kind's extended key usage (none for CAs,
	// ServerAuth and ClientAuth for leaves).
	ExtKeyUsage []x509.ExtKeyUsage
	// DNSNames and URIs are added to a leaf's SANs.
	DNSNames []string
	URIs     []*url.URL
	// NoSPIFFEURI leaves the SPIFFE URI SAN out of a leaf, which then names
	// its identity with the Linkerd DNS SAN only, like stock Linkerd leaves.
	NoSPIFFEURI bool
}

// KeyPair is a certificate with its ECDSA P-256 private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewAnchor makes a self-signed root CA (`step certificate create
// --profile root-ca`): path length 1, so it can sign issuers that sign leaves.
func NewAnchor(opts CertOptions) (*KeyPair, error) {
	tmpl := caTemplate(opts, DefaultAnchorCommonName, DefaultAnchorLifetime)
	tmpl.MaxPathLen = 1
	kp, err := issue(tmpl, nil)
	if err != nil {
		return nil, fmt.Errorf("identity: anchor: %w", err)
	}
	return kp, nil
}

// NewIssuer makes an intermediate CA signed by ca (`step certificate create
// --profile intermediate-ca`): path length 0, it signs leaves only.
func NewIssuer(ca *KeyPair, opts CertOptions) (*KeyPair, error) {
	tmpl := caTemplate(opts, DefaultIssuerCommonName, DefaultIssuerLifetime)
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	kp, err := issue(tmpl, ca)
	if err != nil {
		return nil, fmt.Errorf("identity: issuer: %w", err)
	}
	return kp, nil
}

// NewLeaf makes the certificate of identity n, signed by ca, carrying both
// spellings of n: URI SAN spiffe://<td>/ns/<ns>/sa/<sa> and DNS SAN
// <sa>.<ns>.serviceaccount.identity.linkerd.<td>.
func NewLeaf(ca *KeyPair, n Name, opts CertOptions) (*KeyPair, error) {
	if n.IsZero() {
		return nil, errors.New("identity: leaf: no identity given")
	}
	if ca == nil {
		return nil, errors.New("identity: leaf: no issuer given")
	}
	cn := opts.CommonName
	if cn == "" {
		cn = n.DNS()
	}
	tmpl := baseTemplate(opts, cn, DefaultLeafLifetime)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.BasicConstraintsValid = true
	tmpl.DNSNames = append([]string{n.DNS()}, opts.DNSNames...)
	if !opts.NoSPIFFEURI {
		tmpl.URIs = []*url.URL{n.SPIFFEID().URL()}
	}
	tmpl.URIs = append(tmpl.URIs, opts.URIs...)
	overrideUsage(tmpl, opts)
	kp, err := issue(tmpl, ca)
	if err != nil {
		return nil, fmt.Errorf("identity: leaf %s: %w", n, err)
	}
	return kp, nil
}

func caTemplate(opts CertOptions, defaultCN string, lifetime time.Duration) *x509.Certificate {
	cn := opts.CommonName
	if cn == "" {
		cn = defaultCN
	}
	tmpl := baseTemplate(opts, cn, lifetime)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	overrideUsage(tmpl, opts)
	return tmpl
}

func baseTemplate(opts CertOptions, cn string, lifetime time.Duration) *x509.Certificate {
	now := time.Now()
	nb, na := opts.NotBefore, opts.NotAfter
	if nb.IsZero() {
		nb = now.Add(-backdate)
	}
	if na.IsZero() {
		na = now.Add(lifetime)
	}
	return &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: nb,
		NotAfter:  na,
	}
}

func overrideUsage(tmpl *x509.Certificate, opts CertOptions) {
	if opts.KeyUsage != 0 {
		tmpl.KeyUsage = opts.KeyUsage
	}
	if opts.ExtKeyUsage != nil {
		tmpl.ExtKeyUsage = opts.ExtKeyUsage
	}
}

// issue creates a key and signs tmpl with parent's key, or self-signs when
// parent is nil.
func issue(tmpl *x509.Certificate, parent *KeyPair) (*KeyPair, error) {
	if !tmpl.NotAfter.After(tmpl.NotBefore) {
		return nil, fmt.Errorf("not after (%s) must be later than not before (%s)",
			tmpl.NotAfter.Format(time.RFC3339), tmpl.NotBefore.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// 128 random bits, as step uses; Go requires a positive serial.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// CheckCA returns why c cannot sign certificates, or nil: a CA certificate
// says CA:TRUE in valid basic constraints and, when it restricts its key
// usage, allows certificate signing. Verifiers refuse chains through any
// other certificate, so signing with one makes certificates no peer accepts.
func CheckCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%s is not a CA certificate (its basic constraints do not say CA:TRUE)", certName(c))
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s is a CA certificate whose key usage does not allow signing certificates", certName(c))
	}
	return nil
}

// CheckAnchor returns why c cannot be a trust anchor, or nil: an anchor is a
// self-signed root CA. An issuer given as the anchor verifies its own
// cluster's leaves but no other cluster's, which share only the anchor.
func CheckAnchor(c *x509.Certificate) error {
	if err := CheckCA(c); err != nil {
		return err
	}
	if !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil {
		return fmt.Errorf("%s is not a self-signed root CA: it was issued by %q", certName(c), c.Issuer.CommonName)
	}
	return nil
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName == "" {
		return fmt.Sprintf("the certificate with subject %q", c.Subject.String())
	}
	return fmt.Sprintf("%q", c.Subject.CommonName)
}

// CertPEM returns the certificate as a PEM block.
func (k *KeyPair) CertPEM() []byte { return EncodeCertsPEM(k.Cert) }

// KeyPEM returns the private key as a SEC 1 "EC PRIVATE KEY" PEM block, the
// encoding step writes.
func (k *KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("identity: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// EncodeCertsPEM returns certs as consecutive PEM blocks.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// LoadKeyPair reads a CA certificate (the first one in certFile) and its
// ECDSA P-256 key, e.g. the files `mcgate identity anchor` wrote.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	certs, err := ReadCertsPEM(certFile)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	key, err := parseKeyPEM(kb)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("identity: %s does not belong to the first certificate of %s", keyFile, certFile)
	}
	return &KeyPair{Cert: certs[0], Key: key}, nil
}

// ReadCertsPEM reads every certificate of a PEM file, e.g. an anchor bundle.
func ReadCertsPEM(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	certs, err := parseCertsPEM(b)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return certs, nil
}

// WriteKeyPair writes k's certificate (mode 0644) and key (mode 0600).
func WriteKeyPair(k *KeyPair, certFile, keyFile string) error {
	keyPEM, err := k.KeyPEM()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certFile, k.CertPEM(), 0o644)
}

// WriteIdentityDir writes the layout FileSource reads: tls.crt (leaf, then
// chain), tls.key and ca.crt (anchors). Each file is replaced atomically,
// the three together are not; a FileSource that reads them half-way through
// refuses the mismatched set and loads the whole one at its next poll.
func WriteIdentityDir(dir string, leaf *KeyPair, chain, anchors []*x509.Certificate) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	keyPEM, err := leaf.KeyPEM()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{AnchorFile, EncodeCertsPEM(anchors...), 0o644},
		{KeyFile, keyPEM, 0o600},
		{CertFile, EncodeCertsPEM(append([]*x509.Certificate{leaf.Cert}, chain...)...), 0o644},
	}
	for _, f := range files {
		if err := WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic replaces path with data through a temporary file in the
// same directory, so readers see the old or the new content, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}
