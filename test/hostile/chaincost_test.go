package hostile

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
)

// maxChainCostRatio bounds the gateway CPU of a hostile handshake as a
// multiple of a good client's full handshake (issue 25: "at most a few
// times, never x509's worst case").
const maxChainCostRatio = 5

// TestChainCost (issue 25, point 1): a client without any valid
// certificate presents the most expensive chains it can build, and the
// gateway's CPU per handshake is compared with a good client's. The
// gateway runs in this process and the clients in a child process, so the
// process's CPU time (getrusage) is the gateway's. Every hostile handshake
// must be refused, and cost at most maxChainCostRatio good ones.
func TestChainCost(t *testing.T) {
	ca := testpki.New(t)
	gw := startGateway(t, ca, routes{})
	good := ca.Leaf(t, "web", "west", identity.CertOptions{})
	kinds := []struct {
		name   string
		chain  [][]byte
		n      int
		reason string // of gateway_handshake_failures_total; "" for the good client
	}{
		{"good client (leaf, issuer)", [][]byte{good.Cert.Raw, ca.Issuer.Cert.Raw}, 200, ""},
		{"100 RSA-8192 decoy issuers", rsaDecoys(t, good, 100), 20, "handshake_too_large"},
		{"20 RSA-8192 decoy issuers", rsaDecoys(t, good, 20), 20, "bad_chain"},
		{"80 Ed25519 decoy issuers", ed25519Decoys(t, good, 80), 20, "bad_chain"},
		{"700 Ed25519 decoy issuers", ed25519Decoys(t, good, 700), 20, "handshake_too_large"},
		{"4 certificates, RSA-4096, in order", boundedChain(t, good, ca), 50, "untrusted_cert"},
	}
	var goodCPU time.Duration
	var report []string
	for i, k := range kinds {
		size := 0
		for _, c := range k.chain {
			size += len(c)
		}
		// Refused in the handshake, or (the good client, whose SNI names no
		// exported service) right after it.
		metricName, reason := handshakeFailures, k.reason
		if reason == "" {
			metricName, reason = refused, "not_exported"
		}
		before := metric(t, gw.reg, metricName, map[string]string{"reason": reason})
		cpu := gatewayCPU(t, func() {
			startChild(t, "handshakes", childJob{Addrs: []string{gw.Addr().String()}, N: k.n,
				SNI: "db.production.svc.cluster.local", Chain: k.chain, Key: pkcs8(t, good.Key)}).wait(t)
		}) / time.Duration(k.n)
		// Every handshake counted before the next kind starts, so that none
		// is counted as the next kind's.
		counted := func() float64 { return metric(t, gw.reg, metricName, map[string]string{"reason": reason}) - before }
		eventually(t, 10*time.Second, k.name+" counted", func() bool { return counted() >= float64(k.n) })
		if got := counted(); got != float64(k.n) {
			t.Errorf("%s: %v of %d handshakes counted as %s{reason=%s}", k.name, got, k.n, metricName, reason)
		}
		if i == 0 {
			goodCPU = cpu
		}
		ratio := float64(cpu) / float64(goodCPU)
		report = append(report, fmt.Sprintf("%-36s %3d certs %7.1f KiB  %8v/handshake  %6.2fx good", k.name, len(k.chain), float64(size)/1024, cpu.Round(time.Microsecond), ratio))
		if ratio > maxChainCostRatio {
			t.Errorf("%s: %v of gateway CPU per handshake, %.1fx a good client's (%v)", k.name, cpu, ratio, goodCPU)
		}
	}
	t.Log("gateway CPU per handshake (getrusage of the gateway's process; clients in a child):\n" + strings.Join(report, "\n"))
}

// gatewayCPU returns the CPU time (user and system) this process spent
// while run ran.
func gatewayCPU(t *testing.T, run func()) time.Duration {
	t.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	run()
	return cpu() - start
}

func pkcs8(t *testing.T, key crypto.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decoyName is the issuer every decoy claims to be.
var decoyName = pkix.Name{CommonName: "identity.linkerd.cluster.local", Organization: []string{"decoy"}}

// rsaDecoys is x509's worst case as far as Go allows a TLS peer: the
// client's leaf, re-issued under decoyName with an RSA signature of 8192
// bits, then n decoy issuers of that name, each with an RSA-8192 key
// (crypto/tls refuses larger ones). Without bounds x509 checks the leaf's
// signature against each decoy, up to its limit of 100 checks.
func rsaDecoys(t *testing.T, good *identity.KeyPair, n int) [][]byte {
	t.Helper()
	// Any 2048-bit key makes a certificate signed "with RSA"; its
	// signature is then replaced by 8192 bits of noise, which x509 can only
	// find wrong by computing with each decoy's key.
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	leaf := resign(t, issue(t, reissued(good), &x509.Certificate{Subject: decoyName}, &good.Key.PublicKey, signer), 8192/8)
	chain := [][]byte{leaf}
	for i := range n {
		chain = append(chain, issue(t, decoyCA(i), &x509.Certificate{Subject: pkix.Name{CommonName: "decoy root"}}, fakeRSA(8192), good.Key))
	}
	return chain
}

// ed25519Decoys packs about as many decoys as a certificate message holds
// (256 KiB): the leaf signed with Ed25519, n Ed25519 decoys claiming to be
// its issuer.
func ed25519Decoys(t *testing.T, good *identity.KeyPair, n int) [][]byte {
	t.Helper()
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{issue(t, reissued(good), &x509.Certificate{Subject: decoyName}, &good.Key.PublicKey, signer)}
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

// boundedChain is the most expensive chain within the bounds: four
// certificates in order, each issued by the next with an RSA-4096 key,
// the last one claiming the anchor as its issuer. x509 checks three
// RSA-4096 signatures (they are valid) and fails at the anchor.
func boundedChain(t *testing.T, good *identity.KeyPair, ca *testpki.CA) [][]byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	names := []pkix.Name{{CommonName: "i1"}, {CommonName: "i2"}, {CommonName: "i3"}, ca.Anchor.Cert.Subject}
	chain := [][]byte{issue(t, reissued(good), &x509.Certificate{Subject: names[0]}, &good.Key.PublicKey, key)}
	for i := range 3 {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: names[i], IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		chain = append(chain, issue(t, tmpl, &x509.Certificate{Subject: names[i+1]}, &key.PublicKey, key))
	}
	return chain
}

// reissued is a template of the good client's leaf (its identity, dates
// and usages), to be issued by someone else.
func reissued(good *identity.KeyPair) *x509.Certificate {
	tmpl := *good.Cert
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.AuthorityKeyId, tmpl.SignatureAlgorithm = nil, x509.UnknownSignatureAlgorithm // the issuer's
	return &tmpl
}

func decoyCA(i int) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: decoyName, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
}

// fakeRSA is an RSA public key nobody holds the private key of: an odd
// modulus is all a certificate needs.
func fakeRSA(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.Add(n, big.NewInt(12345))
	return &rsa.PublicKey{N: n, E: 65537}
}

func issue(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// resign replaces the signature of a certificate with size random bytes.
func resign(t *testing.T, der []byte, size int) []byte {
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
