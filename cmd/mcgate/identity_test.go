package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcgate/mcgate/identity"
)

// mcgateIdentity runs `mcgate identity args...` in dir.
func mcgateIdentity(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string(nil), args...)
	for i, a := range args {
		if strings.HasSuffix(a, ".crt") || strings.HasSuffix(a, ".key") || a == "id" {
			args[i] = filepath.Join(dir, a)
		}
	}
	if code := run(append([]string{"identity"}, args...), &out, &errOut); code != 0 {
		return out.String(), &cliError{errOut.String()}
	}
	return out.String(), nil
}

type cliError struct{ msg string }

func (e *cliError) Error() string { return e.msg }

// TestIdentityCommands follows the guide: anchor, issuer, leaf, then loads
// the leaf directory as the gateway does.
func TestIdentityCommands(t *testing.T) {
	dir := t.TempDir()
	steps := [][]string{
		{"anchor", "--out-cert", "ca.crt", "--out-key", "ca.key"},
		{"issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "issuer.crt", "--out-key", "issuer.key"},
		{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt",
			"--service-account", "linkerd-gateway", "--namespace", "linkerd-multicluster", "--trust-domain", "cluster.local",
			"--out-dir", "id"},
	}
	for _, s := range steps {
		out, err := mcgateIdentity(t, dir, s...)
		if err != nil {
			t.Fatalf("mcgate identity %s: %v", s[0], err)
		}
		if !strings.HasPrefix(out, "Wrote ") {
			t.Errorf("mcgate identity %s printed %q", s[0], out)
		}
	}
	for name, want := range map[string]os.FileMode{
		"ca.key": 0o600, "issuer.key": 0o600, "id/tls.key": 0o600, "ca.crt": 0o644, "id/tls.crt": 0o644, "id/ca.crt": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	src, err := identity.NewFileSource(identity.FileSourceConfig{Dir: filepath.Join(dir, "id"), Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("the leaf directory does not load: %v", err)
	}
	if got := src.Name().DNS(); got != "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local" {
		t.Errorf("identity %q", got)
	}
	svid, _ := src.GetX509SVID()
	if len(svid.Certificates) != 2 || svid.Certificates[1].Subject.CommonName != "identity.linkerd.cluster.local" {
		t.Errorf("tls.crt is not leaf then issuer")
	}
	anchor, _ := identity.ReadCertsPEM(filepath.Join(dir, "ca.crt"))
	if d := anchor[0].NotAfter.Sub(anchor[0].NotBefore); d < 87600*time.Hour {
		t.Errorf("anchor lifetime %v", d)
	}

	// Existing files are kept unless --force.
	_, err = mcgateIdentity(t, dir, "anchor", "--out-cert", "ca.crt", "--out-key", "ca.key")
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("anchor over existing files: %v", err)
	}
	if _, err := mcgateIdentity(t, dir, steps[2]...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("leaf over an existing directory without --force: %v", err)
	}
	// A short-lived leaf for another account, over the old one.
	_, err = mcgateIdentity(t, dir, "leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt",
		"--service-account", "web", "--namespace", "prod", "--not-after", "1h", "--out-dir", "id", "--force")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := src.Name().String(); got != "spiffe://cluster.local/ns/prod/sa/web" {
		t.Errorf("after --force: identity %q", got)
	}
}

func TestIdentityCommandErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := mcgateIdentity(t, dir, "anchor", "--out-cert", "ca.crt", "--out-key", "ca.key"); err != nil {
		t.Fatal(err)
	}
	if _, err := mcgateIdentity(t, dir, "anchor", "--out-cert", "other.crt", "--out-key", "other.key"); err != nil {
		t.Fatal(err)
	}
	if _, err := mcgateIdentity(t, dir, "issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "issuer.crt", "--out-key", "issuer.key"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"issuer", "--ca", "ca.crt", "--ca-key", "other.key", "--out-cert", "x.crt", "--out-key", "x.key"}, "does not belong"},
		{[]string{"issuer", "--out-cert", "x.crt", "--out-key", "x.key"}, "required flag"},
		{[]string{"anchor", "--not-after", "tomorrow", "--out-cert", "x.crt", "--out-key", "x.key"}, "--not-after"},
		{[]string{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "other.crt", "--out-dir", "id"}, "--anchor"},
		{[]string{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt", "--namespace", "Prod", "--out-dir", "id"}, "namespace"},
	}
	for _, tt := range tests {
		_, err := mcgateIdentity(t, dir, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("mcgate identity %v: %v, want an error containing %q", tt.args, err, tt.wantErr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.crt")); err == nil {
		t.Error("a failed command wrote x.crt")
	}
}

// TestIdentityRefusesNonsense: each certificate must fit its flag (an
// anchor is a self-signed root CA, --ca a CA) and no certificate may
// outlive its signer, and the error names the flag at fault.
func TestIdentityRefusesNonsense(t *testing.T) {
	dir := t.TempDir()
	for _, s := range [][]string{
		{"anchor", "--out-cert", "ca.crt", "--out-key", "ca.key"},
		{"anchor", "--out-cert", "short-ca.crt", "--out-key", "short-ca.key", "--not-after", "48h"},
		{"issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "issuer.crt", "--out-key", "issuer.key"},
		{"issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "short-issuer.crt", "--out-key", "short-issuer.key", "--not-after", "1h"},
		{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt", "--out-dir", "id"},
	} {
		if _, err := mcgateIdentity(t, dir, s...); err != nil {
			t.Fatalf("mcgate identity %v: %v", s, err)
		}
	}
	// An anchor bundle as during a rollover, with an issuer slipped in.
	bundle := filepath.Join(dir, "bundle.crt")
	var pems []byte
	for _, f := range []string{"ca.crt", "issuer.crt"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(bundle, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	leafArgs := func(ca, key, anchor string, extra ...string) []string {
		return append([]string{"leaf", "--ca", ca, "--ca-key", key, "--anchor", anchor, "--out-dir", "out", "--force"}, extra...)
	}
	issuerArgs := func(ca, key string, extra ...string) []string {
		return append([]string{"issuer", "--ca", ca, "--ca-key", key, "--out-cert", "x.crt", "--out-key", "x.key"}, extra...)
	}
	const notRoot = `"identity.linkerd.cluster.local" is not a self-signed root CA: it was issued by "root.linkerd.cluster.local"`
	const leafNotCA = `"linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local" is not a CA certificate`
	for _, c := range []struct {
		name    string
		args    []string
		want    []string
		notWant string
	}{
		{"issuer as leaf's anchor", leafArgs("issuer.crt", "issuer.key", "issuer.crt"),
			[]string{"--anchor " + filepath.Join(dir, "issuer.crt") + ": " + notRoot, "--anchor takes the trust anchor all clusters share"}, ""},
		{"issuer in the anchor bundle", leafArgs("issuer.crt", "issuer.key", "bundle.crt"),
			[]string{"--anchor " + bundle + ": " + notRoot}, ""},
		{"issuer as issuer's anchor", issuerArgs("issuer.crt", "issuer.key"),
			[]string{"--ca " + filepath.Join(dir, "issuer.crt") + ": " + notRoot, "--ca takes the trust anchor"}, ""},
		{"leaf as leaf's issuer", leafArgs("id/tls.crt", "id/tls.key", "ca.crt"),
			[]string{"--ca " + filepath.Join(dir, "id/tls.crt") + ": " + leafNotCA, "--ca takes the cluster's issuer"}, "--anchor"},
		{"leaf as issuer's anchor", issuerArgs("id/tls.crt", "id/tls.key"),
			[]string{"--ca " + filepath.Join(dir, "id/tls.crt") + ": " + leafNotCA}, "--anchor"},
		{"issuer outliving its anchor", issuerArgs("short-ca.crt", "short-ca.key"),
			[]string{"the issuer would outlive its --ca " + filepath.Join(dir, "short-ca.crt") + ", which ends", "--clamp-not-after"}, ""},
		{"issuer outliving its anchor by an RFC 3339 time", issuerArgs("ca.crt", "ca.key", "--not-after", "2999-01-01T00:00:00Z"),
			[]string{"--not-after 2999-01-01T00:00:00Z: the issuer would outlive its --ca"}, ""},
		{"leaf outliving its issuer", leafArgs("short-issuer.crt", "short-issuer.key", "ca.crt"),
			[]string{"the leaf would outlive its --ca " + filepath.Join(dir, "short-issuer.crt") + ", which ends", "--clamp-not-after"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mcgateIdentity(t, dir, c.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if c.notWant != "" && strings.Contains(err.Error(), c.notWant) {
				t.Errorf("error %q blames %s", err, c.notWant)
			}
		})
	}
	for _, f := range []string{"x.crt", "out"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a refused command wrote %s", f)
		}
	}
}

// TestIdentityClampNotAfter: with --clamp-not-after a certificate that
// would outlive its signer ends with it, and the command says so.
func TestIdentityClampNotAfter(t *testing.T) {
	dir := t.TempDir()
	if _, err := mcgateIdentity(t, dir, "anchor", "--out-cert", "ca.crt", "--out-key", "ca.key", "--not-after", "48h"); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]string{
		{"issuer", "--ca", "ca.crt", "--ca-key", "ca.key", "--out-cert", "issuer.crt", "--out-key", "issuer.key", "--clamp-not-after"},
		{"leaf", "--ca", "issuer.crt", "--ca-key", "issuer.key", "--anchor", "ca.crt", "--out-dir", "id", "--not-after", "72h", "--clamp-not-after"},
	} {
		var out, errb bytes.Buffer
		for i, a := range s {
			if strings.HasSuffix(a, ".crt") || strings.HasSuffix(a, ".key") || a == "id" {
				s[i] = filepath.Join(dir, a)
			}
		}
		if code := run(append([]string{"identity"}, s...), &out, &errb); code != 0 {
			t.Fatalf("mcgate identity %v: exit %d: %s", s, code, errb.String())
		}
		if want := "clamped to "; !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), "the end of --ca "+s[2]) {
			t.Errorf("mcgate identity %s: stderr %q", s[0], errb.String())
		}
	}
	var ends []time.Time
	for _, f := range []string{"ca.crt", "issuer.crt", "id/tls.crt"} {
		certs, err := identity.ReadCertsPEM(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, certs[0].NotAfter)
	}
	if !ends[1].Equal(ends[0]) || !ends[2].Equal(ends[0]) {
		t.Errorf("anchor, issuer and leaf end %v: the clamped two should end with the anchor", ends)
	}
}
