package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mcgate/mcgate/identity"
)

// TestIdentityDefaultLifetimes follows the README's step 1 with every
// --not-after left to its default: the leaf lasts a year less a day and
// ends before the issuer it was made under, which ends before the anchor.
func TestIdentityDefaultLifetimes(t *testing.T) {
	dir := t.TempDir()
	for _, s := range [][]string{
		{"anchor", "--out-cert", "ca.crt", "--out-key", "ca.key"},
		{"issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "issuer.crt", "--out-key", "issuer.key"},
		{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt", "--out-dir", "id"},
	} {
		if _, err := mcgateIdentity(t, dir, s...); err != nil {
			t.Fatalf("mcgate identity %s: %v", s[0], err)
		}
	}
	for _, c := range []struct {
		file     string
		lifetime time.Duration
	}{
		{"ca.crt", 87600 * time.Hour},
		{"issuer.crt", 8760 * time.Hour},
		{"id/tls.crt", 8736 * time.Hour},
	} {
		certs, err := identity.ReadCertsPEM(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		// NotBefore is backdated by a minute.
		if got := certs[0].NotAfter.Sub(certs[0].NotBefore) - time.Minute; got < c.lifetime-time.Minute || got > c.lifetime+time.Minute {
			t.Errorf("%s lasts %v, want %v", c.file, got, c.lifetime)
		}
	}
	chain, err := identity.ReadCertsPEM(filepath.Join(dir, "id", identity.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[1].NotAfter.Sub(chain[0].NotAfter) < 23*time.Hour {
		t.Errorf("the default leaf should end a day before its issuer: leaf %v, chain %d certificates", chain[0].NotAfter, len(chain))
	}
}

// TestGatewayLeafExpiryWarningFlag: the gateway warns 30 days ahead by
// default, the window `mcgate check` and the alert rules use.
func TestGatewayLeafExpiryWarningFlag(t *testing.T) {
	f := newGatewayCmd().Flags().Lookup("leaf-expiry-warning")
	if f == nil {
		t.Fatal("mcgate gateway has no --leaf-expiry-warning")
	}
	if got, want := f.DefValue, (30 * 24 * time.Hour).String(); got != want || identity.DefaultLeafExpiryWarning != 30*24*time.Hour {
		t.Errorf("--leaf-expiry-warning defaults to %s, want %s", got, want)
	}
}
