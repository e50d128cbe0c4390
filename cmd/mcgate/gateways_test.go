package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestGatewaysFlags: gateways has Linkerd's --cluster-name and --wait/-w
// (default 30s); with the API server down and no wait it fails at once,
// naming the cause.
func TestGatewaysFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"gateways", "--help"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "--cluster-name string") || !strings.Contains(out.String(), "-w, --wait duration") ||
		!strings.Contains(out.String(), "(default 30s)") {
		t.Errorf("help:\n%s", out.String())
	}
	kc := closedServerKubeconfig(t)
	out.Reset()
	if code := run([]string{"gateways", "--kubeconfig", kc, "--cluster-name", "east", "-w", "0"}, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "connection refused") {
		t.Errorf("API server down: exit %d, stderr %q", code, errb.String())
	}
}
