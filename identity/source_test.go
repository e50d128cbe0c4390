package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcgate/mcgate/identity"
	"github.com/mcgate/mcgate/internal/testenv/testpki"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestFileSourceLoads(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})
	dir := identityDir(t, ca, leaf)
	src := newSource(t, dir, nil)
	if got, want := src.Name(), testpki.Name(t, gatewaySA, gatewayNS); got != want {
		t.Errorf("Name() = %v, want %v", got, want)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/linkerd-multicluster/sa/linkerd-gateway" ||
		len(svid.Certificates) != 2 || !svid.Certificates[0].Equal(leaf.Cert) || !svid.Certificates[1].Equal(ca.Issuer.Cert) {
		t.Errorf("GetX509SVID = %+v", svid)
	}
	td := spiffeid.RequireTrustDomainFromString("east.example")
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil || b.TrustDomain() != td || len(b.X509Authorities()) != 1 || !b.HasX509Authority(ca.Anchor.Cert) {
		t.Errorf("GetX509BundleForTrustDomain = %v, %v", b, err)
	}

	// cert-manager may write the key as PKCS #8.
	der, err := x509.MarshalPKCS8PrivateKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, identity.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err := src.Reload(); err != nil {
		t.Fatalf("PKCS #8 key: %v", err)
	}
}

func TestFileSourceRefuses(t *testing.T) {
	ca, other := testpki.New(t), testpki.New(t)
	leaf := ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{})
	now := time.Now()
	keyPEM := func(der []byte, typ string) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	otherKey, _ := ca.Leaf(t, "web", "prod", identity.CertOptions{}).KeyPEM()

	tests := []struct {
		name    string
		change  func(dir string)
		wantErr []string
	}{
		{"missing key", func(dir string) { os.Remove(filepath.Join(dir, identity.KeyFile)) }, []string{"tls.key", "no such file"}},
		{"RSA key", func(dir string) { writeFile(t, dir, identity.KeyFile, keyPEM(rsaDER, "PRIVATE KEY")) }, []string{"tls.key", "rsa", "ECDSA P-256"}},
		{"RSA PKCS #1 key", func(dir string) {
			writeFile(t, dir, identity.KeyFile, keyPEM(x509.MarshalPKCS1PrivateKey(rsaKey), "RSA PRIVATE KEY"))
		}, []string{"tls.key", "RSA PRIVATE KEY", "ECDSA P-256"}},
		{"P-384 key", func(dir string) { writeFile(t, dir, identity.KeyFile, keyPEM(p384DER, "EC PRIVATE KEY")) }, []string{"tls.key", "P-384", "ECDSA P-256"}},
		{"key of another certificate", func(dir string) { writeFile(t, dir, identity.KeyFile, otherKey) }, []string{"tls.key does not belong"}},
		{"not PEM", func(dir string) { writeFile(t, dir, identity.CertFile, []byte("hello")) }, []string{"tls.crt", "not PEM"}},
		{"key in the certificate file", func(dir string) { writeFile(t, dir, identity.CertFile, otherKey) }, []string{"tls.crt", "EC PRIVATE KEY"}},
		{"empty anchors", func(dir string) { writeFile(t, dir, identity.AnchorFile, nil) }, []string{"ca.crt", "no certificate"}},
		{"another anchor", func(dir string) { writeFile(t, dir, identity.AnchorFile, other.Anchor.CertPEM()) }, []string{"unknown authority"}},
		{"expired leaf", func(dir string) {
			writeDir(t, dir, ca, ca.Leaf(t, gatewaySA, gatewayNS, identity.CertOptions{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}))
		}, []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := identityDir(t, ca, leaf)
			tt.change(dir)
			_, err := identity.NewFileSource(identity.FileSourceConfig{Dir: dir, Log: zerolog.Nop()})
			if err == nil {
				t.Fatal("NewFileSource accepted bad files")
			}
			for _, w := range append(tt.wantErr, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestFileSourceRun follows a Kubernetes Secret volume: files are links
// into "..data", which the kubelet swaps to a new directory.
func TestFileSourceRun(t *testing.T) {
	ca := testpki.New(t)
	dir := t.TempDir()
	gen := 0
	// project writes a new generation directory as write does and swaps
	// ..data to it, as the kubelet does.
	project := func(write func(dir string)) {
		t.Helper()
		gen++
		data := fmt.Sprintf("..gen%d", gen)
		write(filepath.Join(dir, data))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(data, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	leafOf := func(sa string) func(string) {
		return func(d string) { writeDir(t, d, ca, ca.Leaf(t, sa, "prod", identity.CertOptions{})) }
	}
	project(leafOf(gatewaySA))
	for _, f := range []string{identity.CertFile, identity.KeyFile, identity.AnchorFile} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	src, err := identity.NewFileSource(identity.FileSourceConfig{
		Dir: dir, Log: zerolog.Nop(), PollInterval: 5 * time.Millisecond, Metrics: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- src.Run(t.Context()) }()
	t.Cleanup(func() { // t.Context is cancelled before cleanups run
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// A new leaf for another service account is picked up.
	updated := src.Updated()
	project(leafOf("web"))
	waitFor(t, updated)
	if got := src.Name(); got != testpki.Name(t, "web", "prod") {
		t.Fatalf("after the swap Name() = %v", got)
	}
	if got := metricValue(t, reg, "identity_reloads_total", "success"); got != 2 {
		t.Errorf("successful loads = %v, want 2", got)
	}
	svid, _ := src.GetX509SVID()
	if got := metricValue(t, reg, "identity_leaf_expiry_timestamp_seconds", ""); got != float64(svid.Certificates[0].NotAfter.Unix()) {
		t.Errorf("expiry gauge = %v, want %v", got, svid.Certificates[0].NotAfter.Unix())
	}

	// A bad set (a leaf from another anchor) is counted once and the
	// current identity stays.
	other := testpki.New(t)
	project(func(d string) {
		bad := other.Leaf(t, "bad", "prod", identity.CertOptions{})
		writeDir(t, d, other, bad, ca.Anchor.Cert)
	})
	wait.Until(t, 10*time.Second, "one failed reload counted", func() bool {
		return metricValue(t, reg, "identity_reloads_total", "failure") == 1
	})
	if got := src.Name(); got != testpki.Name(t, "web", "prod") {
		t.Fatalf("after a bad swap Name() = %v", got)
	}

	// The next good set replaces it.
	updated = src.Updated()
	project(leafOf("db"))
	waitFor(t, updated)
	if got := src.Name(); got != testpki.Name(t, "db", "prod") {
		t.Fatalf("after the good swap Name() = %v", got)
	}
	if got := metricValue(t, reg, "identity_reloads_total", "failure"); got != 1 {
		t.Errorf("failed loads = %v, want 1 (each bad set counted once)", got)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the source did not load the new files")
	}
}

// metricValue reads a counter or gauge from reg; label is the value of its
// only label, or "" for a metric without labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
