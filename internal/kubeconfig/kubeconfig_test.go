package kubeconfig

import (
	"errors"
	"strings"
	"testing"
)

const kcHead = `apiVersion: v1
kind: Config
current-context: east
contexts:
- name: east
  context: {cluster: east, user: east}
`

func TestRESTConfigRefusesUnsafe(t *testing.T) {
	ok := kcHead + `clusters:
- name: east
  cluster: {server: "https://198.18.0.254:6443", certificate-authority-data: ""}
users:
- name: east
  user: {token: abc}
`
	rc, err := RESTConfig([]byte(ok))
	if err != nil || rc.BearerToken != "abc" || rc.Host != "https://198.18.0.254:6443" {
		t.Fatalf("inline kubeconfig: %+v, %v", rc, err)
	}
	cluster := "clusters:\n- name: east\n  cluster: {server: \"https://198.18.0.254:6443\"}\n"
	tests := map[string]string{
		"exec":          cluster + "users:\n- name: east\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, id]}\n",
		"auth-provider": cluster + "users:\n- name: east\n  user:\n    auth-provider: {name: oidc}\n",
		"tokenFile":     cluster + "users:\n- name: east\n  user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}\n",
		"client-key":    cluster + "users:\n- name: east\n  user: {client-certificate: /etc/c.crt, client-key: /etc/c.key}\n",
		"impersonate":   cluster + "users:\n- name: east\n  user: {token: a, as: system:admin}\n",
		"ca file":       "clusters:\n- name: east\n  cluster: {server: \"https://x\", certificate-authority: /etc/ca.crt}\nusers:\n- name: east\n  user: {token: a}\n",
		"proxy":         "clusters:\n- name: east\n  cluster: {server: \"https://x\", proxy-url: \"http://evil\"}\nusers:\n- name: east\n  user: {token: a}\n",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := RESTConfig([]byte(kcHead + body))
			if !errors.Is(err, ErrNotSelfContained) {
				t.Fatalf("err = %v, want ErrNotSelfContained", err)
			}
		})
	}
	if _, err := RESTConfig([]byte("not: [yaml")); err == nil || !strings.Contains(err.Error(), "parse kubeconfig") {
		t.Fatalf("garbage: %v", err)
	}
}

// FuzzRESTConfig: a Secret's kubeconfig never panics the mirror, and
// whatever is accepted is self-contained.
func FuzzRESTConfig(f *testing.F) {
	f.Add([]byte(kcHead + "clusters:\n- name: east\n  cluster: {server: \"https://x\"}\nusers:\n- name: east\n  user: {token: a}\n"))
	f.Add([]byte(kcHead + "users:\n- name: east\n  user:\n    exec: {command: sh}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rc, err := RESTConfig(in)
		if err == nil && (rc.ExecProvider != nil || rc.AuthProvider != nil || rc.BearerTokenFile != "" || rc.CertFile != "" || rc.KeyFile != "" || rc.CAFile != "") {
			t.Fatalf("accepted a kubeconfig that reaches outside itself: %+v", rc)
		}
	})
}
