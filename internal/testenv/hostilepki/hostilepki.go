// Package hostilepki builds the certificate chains that a client without
// any valid certificate can present to make a server's chain verification
// expensive (issue 25): decoy issuers with costly keys, and the costliest
// chain within mcgate's bounds. Import it from _test.go files only.
package hostilepki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// decoyName is the issuer every decoy claims to be.
var decoyName = pkix.Name{CommonName: "identity.linkerd.cluster.local", Organization: []string{"decoy"}}

// RSADecoys is x509's worst case as far as Go allows a TLS peer: the
// client's leaf (its identity and public key), re-issued under decoyName with an RSA signature of 8192
// bits, then n decoy issuers of that name, each with an RSA-8192 key
// (crypto/tls refuses larger ones). Without bounds x509 checks the leaf's
// signature against each decoy, up to its limit of 100 checks.
func RSADecoys(t testing.TB, leaf *x509.Certificate, n int) [][]byte {
	t.Helper()
	// Any 2048-bit key makes a certificate signed "with RSA"; its
	// signature is then replaced by 8192 bits of noise, which x509 can only
	// find wrong by computing with each decoy's key.
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	decoySigner, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{resign(t, issue(t, reissued(leaf), &x509.Certificate{Subject: decoyName}, leaf.PublicKey, signer), 8192/8)}
	for i := range n {
		chain = append(chain, issue(t, decoyCA(i), &x509.Certificate{Subject: pkix.Name{CommonName: "decoy root"}}, FakeRSA(8192), decoySigner))
	}
	return chain
}

// Ed25519Decoys packs about as many decoys as a certificate message holds
// (256 KiB): the leaf signed with Ed25519, n Ed25519 decoys claiming to be
// its issuer.
func Ed25519Decoys(t testing.TB, leaf *x509.Certificate, n int) [][]byte {
	t.Helper()
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{issue(t, reissued(leaf), &x509.Certificate{Subject: decoyName}, leaf.PublicKey, signer)}
	for i := range n {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: decoyName, IsCA: true, BasicConstraintsValid: true}
		chain = append(chain, issue(t, tmpl, tmpl, pub, signer))
	}
	return chain
}

// Bounded is the most expensive chain within the bounds: four
// certificates in order, each issued by the next with an RSA-4096 key,
// the last one claiming the anchor as its issuer. x509 checks three
// RSA-4096 signatures (they are valid) and fails at the anchor.
func Bounded(t testing.TB, leaf, anchor *x509.Certificate) [][]byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	names := []pkix.Name{{CommonName: "i1"}, {CommonName: "i2"}, {CommonName: "i3"}, anchor.Subject}
	chain := [][]byte{issue(t, reissued(leaf), &x509.Certificate{Subject: names[0]}, leaf.PublicKey, key)}
	for i := range 3 {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: names[i], IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		chain = append(chain, issue(t, tmpl, &x509.Certificate{Subject: names[i+1]}, &key.PublicKey, key))
	}
	return chain
}

// reissued is a template of a client's leaf (its identity, dates and
// usages), to be issued by someone else.
func reissued(leaf *x509.Certificate) *x509.Certificate {
	tmpl := *leaf
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.AuthorityKeyId, tmpl.SignatureAlgorithm = nil, x509.UnknownSignatureAlgorithm // the issuer's
	return &tmpl
}

func decoyCA(i int) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: decoyName, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
}

// FakeRSA is an RSA public key nobody holds the private key of: an odd
// modulus is all a certificate needs.
func FakeRSA(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.Add(n, big.NewInt(12345))
	return &rsa.PublicKey{N: n, E: 65537}
}

func issue(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// resign replaces the signature of a certificate with size random bytes.
func resign(t testing.TB, der []byte, size int) []byte {
	t.Helper()
	var c struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, size)
	rand.Read(sig)
	sig[0] = 1 // below the decoys' moduli
	c.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * size}
	out, err := asn1.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(out); err != nil {
		t.Fatal(err)
	}
	return out
}
