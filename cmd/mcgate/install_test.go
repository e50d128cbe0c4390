package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestInstallFlags checks that the CLI flags reach the manifests; the
// manifests themselves are tested against real API servers in deploy.
func TestInstallFlags(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"install", "--gateway-service-type", "NodePort", "--gateway-node-port", "30443",
		"--gateway-probe-node-port", "30444", "--gateway-probe-port", "4192", "--ha", "--identity-secret", "gw-id",
		"--image", "img:1", "--trust-domain", "example.org", "-o", "json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var list struct {
		Kind  string
		Items []map[string]any
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 13 {
		t.Fatalf("kind %s with %d items, want a List of 13", list.Kind, len(list.Items))
	}
	js := out.String()
	for _, want := range []string{`"type": "NodePort"`, `"nodePort": 30443`, `"nodePort": 30444`, `"port": 4192`, `"replicas": 3`,
		`"secretName": "gw-id"`, `"image": "img:1"`, `identity.linkerd.example.org`} {
		if !strings.Contains(js, want) {
			t.Errorf("install output lacks %s", want)
		}
	}
	out.Reset()
	if code := run([]string{"install"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "image: ghcr.io/mcgate/mcgate:latest") {
		t.Errorf("default install: exit %d, image line missing", code)
	}
}

func TestOperatorCommandErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--gateway-service-type", "External"}, "want LoadBalancer, NodePort or ClusterIP"},
		{[]string{"install", "--gateway-node-port", "80"}, "30000-32767"},
		{[]string{"install", "-o", "toml"}, "want yaml or json"},
		{[]string{"allow"}, "--service-account-name is required"},
		{[]string{"link"}, "--cluster-name is required"},
		{[]string{"unlink"}, "--cluster-name is required"},
		{[]string{"link", "--cluster-name", "east", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
		{[]string{"gateways", "-o", "xml"}, "want table or json"},
		{[]string{"check", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
		{[]string{"uninstall", "--kubeconfig", "/nonexistent"}, "kubeconfig"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("mcgate %s: exit %d, stderr %q, want it to contain %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"allow", "--service-account-name", "west-mirror"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "name: west-mirror") {
		t.Errorf("allow: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
