package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcgate/mcgate/deploy"
)

// closedServerKubeconfig writes a kubeconfig whose API server is a
// 127.0.0.x port nobody listens on (it was just bound and closed).
func closedServerKubeconfig(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	kc := `apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {server: "https://` + addr + `", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: t}
contexts:
- name: gone
  context: {cluster: gone, user: u}
current-context: gone
`
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckUnreachableAPIServer: with the API server down, check says so
// (and stops there) instead of reporting the Link CRD missing; -o json
// says it in Linkerd's shape.
func TestCheckUnreachableAPIServer(t *testing.T) {
	kc := closedServerKubeconfig(t)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--kubeconfig", kc}, &out, &errb); code == 0 {
		t.Fatalf("exit 0 with the API server down:\n%s", out.String())
	}
	if s := out.String(); !strings.Contains(s, "× the Kubernetes API is reachable") || !strings.Contains(s, "the API server is unreachable") ||
		strings.Contains(s, "Link CRD") || !strings.Contains(s, "Status check results are ×") {
		t.Errorf("output:\n%s", s)
	}

	out.Reset()
	if code := run([]string{"check", "--kubeconfig", kc, "-o", "json"}, &out, &errb); code == 0 {
		t.Fatal("exit 0 with -o json")
	}
	var res deploy.CheckOutput
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if res.Success || len(res.Categories) != 1 || len(res.Categories[0].Checks) != 1 ||
		res.Categories[0].Checks[0].Result != "error" || !strings.Contains(res.Categories[0].Checks[0].Error, "unreachable") {
		t.Errorf("json: %+v", res)
	}
}

// TestCheckFlags: -o takes table, short or json only; --wait takes a
// duration.
func TestCheckFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-o", "wide"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "want table, short or json") {
		t.Errorf("-o wide: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"check", "--wait", "soon"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "--wait") {
		t.Errorf("--wait soon: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"check", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--wait duration") || !strings.Contains(out.String(), "-o, --output") {
		t.Errorf("help:\n%s", out.String())
	}
}

// TestCheckAsLinkerdExtension: `linkerd check` runs a linkerd-multicluster
// executable on the PATH with these flags (linkerd2 cli/cmd/check.go
// getExtensionCheckFlags) and parses its stdout as JSON; mcgate accepts
// them all, so linked as linkerd-multicluster it answers `linkerd check`.
func TestCheckAsLinkerdExtension(t *testing.T) {
	kc := closedServerKubeconfig(t)
	var out, errb bytes.Buffer
	run([]string{"check", "--kubeconfig=" + kc, "--linkerd-namespace=linkerd", "--verbose=false", "--proxy=false",
		"--as-group=[]", "--api-addr=", "--wait=0s", "--output=json"}, &out, &errb)
	var res deploy.CheckOutput
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Success || len(res.Categories) != 1 {
		t.Errorf("stdout %q (%v), stderr %q", out.String(), err, errb.String())
	}
}

// TestImpersonation: --as and --as-group reach the client config; the
// "[]" that linkerd check passes for no group is no group.
func TestImpersonation(t *testing.T) {
	k := kubeFlags{kubeconfig: closedServerKubeconfig(t), as: "jane", asGroups: []string{"[]", "ops"}}
	cfg, err := k.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Impersonate.UserName != "jane" || len(cfg.Impersonate.Groups) != 1 || cfg.Impersonate.Groups[0] != "ops" {
		t.Errorf("impersonate %+v", cfg.Impersonate)
	}
	k = kubeFlags{kubeconfig: k.kubeconfig, asGroups: []string{"[]"}}
	if cfg, err = k.config(); err != nil || cfg.Impersonate.UserName != "" || len(cfg.Impersonate.Groups) != 0 {
		t.Errorf("no impersonation: %+v, %v", cfg.Impersonate, err)
	}
}
