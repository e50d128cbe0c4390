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
