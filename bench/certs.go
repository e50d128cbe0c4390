package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

const (
	trustDomain = "cluster.local"
	benchNS     = "bench"
	// gwIdentity is the DNS form of the gateway leaf, what egress sides verify.
	gwIdentity = "gw.bench.serviceaccount.identity.linkerd.cluster.local"
)

// identityFiles is cert-manager's layout, as design.md fixes it.
type identityFiles struct {
	Dir, Cert, Key, CA string
	// Bundle is key + leaf + chain in one PEM, the form HAProxy wants.
	Bundle string
}

func newIdentityFiles(dir string) identityFiles {
	return identityFiles{Dir: dir, Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"),
		CA: filepath.Join(dir, "ca.crt"), Bundle: filepath.Join(dir, "bundle.pem")}
}

// pki holds the anchor and the two leaves every system in a run shares.
type pki struct {
	CA, Gateway, Client identityFiles
	Source              string // "mcgate identity" or "crypto/x509"
}

// makePKI writes anchor, issuer and the gateway and client leaves under dir.
// It uses `mcgate identity` when the binary has it, so the bench certificates
// are the ones users get; otherwise it writes equivalent ones itself.
func makePKI(dir, mcgateBin string) (*pki, error) {
	p := &pki{
		CA:      identityFiles{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")},
		Gateway: newIdentityFiles(filepath.Join(dir, "gw")),
		Client:  newIdentityFiles(filepath.Join(dir, "client")),
	}
	if err := cliPKI(dir, mcgateBin, p); err == nil {
		p.Source = "mcgate identity"
	} else {
		if err := x509PKI(dir, p); err != nil {
			return nil, err
		}
		p.Source = "crypto/x509 (mcgate identity unavailable: " + firstLine(err.Error()) + ")"
	}
	for _, id := range []identityFiles{p.Gateway, p.Client} {
		if err := writeBundle(id); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func cliPKI(dir, bin string, p *pki) error {
	if _, err := os.Stat(bin); err != nil {
		return err
	}
	issuerCrt, issuerKey := filepath.Join(dir, "issuer.crt"), filepath.Join(dir, "issuer.key")
	cmds := [][]string{
		{"identity", "anchor", "--out-cert", p.CA.Cert, "--out-key", p.CA.Key},
		{"identity", "issuer", "--ca", p.CA.Cert, "--ca-key", p.CA.Key, "--out-cert", issuerCrt, "--out-key", issuerKey},
		{"identity", "leaf", "--ca", issuerCrt, "--ca-key", issuerKey, "--anchor", p.CA.Cert, "--service-account", "gw",
			"--namespace", benchNS, "--trust-domain", trustDomain, "--out-dir", p.Gateway.Dir},
		{"identity", "leaf", "--ca", issuerCrt, "--ca-key", issuerKey, "--anchor", p.CA.Cert, "--service-account", "client",
			"--namespace", benchNS, "--trust-domain", trustDomain, "--out-dir", p.Client.Dir},
	}
	for _, args := range cmds {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("mcgate %s %s: %w: %s", args[0], args[1], err, out)
		}
	}
	_, err := tls.LoadX509KeyPair(p.Client.Cert, p.Client.Key)
	return err
}

// x509PKI is the stand-in for `mcgate identity`: same key type, names and chain.
func x509PKI(dir string, p *pki) error {
	now := time.Now().Add(-time.Hour)
	anchorKey, anchor, err := newCert(nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "root.linkerd.cluster.local"}, NotBefore: now, NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return err
	}
	issuerKey, issuer, err := newCert(anchor, anchorKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "identity.linkerd.cluster.local"}, NotBefore: now, NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	if err != nil {
		return err
	}
	if err := writePEM(p.CA.Cert, "CERTIFICATE", anchor.Raw); err != nil {
		return err
	}
	for _, l := range []struct {
		sa string
		id identityFiles
	}{{"gw", p.Gateway}, {"client", p.Client}} {
		spiffe, _ := url.Parse(fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, benchNS, l.sa))
		key, leaf, err := newCert(issuer, issuerKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: l.sa}, NotBefore: now, NotAfter: now.AddDate(0, 0, 2),
			DNSNames:    []string{fmt.Sprintf("%s.%s.serviceaccount.identity.linkerd.%s", l.sa, benchNS, trustDomain)},
			URIs:        []*url.URL{spiffe},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(l.id.Dir, 0o755); err != nil {
			return err
		}
		if err := writePEM(l.id.Cert, "CERTIFICATE", leaf.Raw, issuer.Raw); err != nil {
			return err
		}
		if err := writePEM(l.id.Key, "EC PRIVATE KEY", der); err != nil {
			return err
		}
		if err := writePEM(l.id.CA, "CERTIFICATE", anchor.Raw); err != nil {
			return err
		}
	}
	return nil
}

func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func writePEM(path, typ string, ders ...[]byte) error {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	return os.WriteFile(path, out, 0o600)
}

// writeBundle concatenates key and chain: HAProxy reads both from one file.
func writeBundle(id identityFiles) error {
	key, err := os.ReadFile(id.Key)
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(id.Cert)
	if err != nil {
		return err
	}
	return os.WriteFile(id.Bundle, append(crt, key...), 0o600)
}

// tlsConfigs builds the client config every scenario uses (X25519 pinned, the
// gateway identity verified the way Linkerd does: SNI names the service, the
// certificate names the gateway) and the server config of in-process servers.
func tlsConfigs(p *pki) (client, server *tls.Config, err error) {
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.Client.CA)
	if err != nil {
		return nil, nil, err
	}
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("no certificate in %s", p.Client.CA)
	}
	cc, err := tls.LoadX509KeyPair(p.Client.Cert, p.Client.Key)
	if err != nil {
		return nil, nil, err
	}
	sc, err := tls.LoadX509KeyPair(p.Gateway.Cert, p.Gateway.Key)
	if err != nil {
		return nil, nil, err
	}
	client = &tls.Config{
		Certificates:       []tls.Certificate{cc},
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		InsecureSkipVerify: true, // replaced by VerifyConnection: SNI is not the certificate's name
		VerifyConnection:   verifyOnce(roots, gwIdentity, x509.ExtKeyUsageServerAuth),
	}
	server = &tls.Config{
		Certificates:     []tls.Certificate{sc},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        roots,
	}
	return client, server, nil
}

// verifyOnce verifies each distinct server chain once and remembers the
// result, as mcgate's own identity package does for its peers. The load
// generator shares a core with the backends and does the client half of every
// handshake; without this it spends a chain verification (an ECDSA verify and
// chain building) per connection that the proxy under test does not, and
// becomes the bottleneck before the fastest proxies do. Every handshake still
// checks the server's CertificateVerify signature, so the peer proves it holds
// the key each time.
func verifyOnce(roots *x509.CertPool, dnsName string, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	var verified sync.Map // sha256 of the chain's DER → struct{}
	return func(cs tls.ConnectionState) error {
		h := sha256.New()
		for _, c := range cs.PeerCertificates {
			h.Write(c.Raw)
		}
		key := [sha256.Size]byte(h.Sum(nil))
		if _, ok := verified.Load(key); ok {
			return nil
		}
		if err := verifyChain(cs.PeerCertificates, roots, dnsName, usage); err != nil {
			return err
		}
		verified.Store(key, struct{}{})
		return nil
	}
}

func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, dnsName string, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return fmt.Errorf("no peer certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: dnsName,
		KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
