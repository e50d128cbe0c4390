package deploy_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcgate/mcgate/internal/testenv/kubetest"
)

// TestCLI runs the mcgate binary the way the guide's user does, piping
// into kubectl: install on both clusters, link east into west, check,
// unlink, uninstall. The functions behind each command are tested in
// detail above; this covers flags, kubeconfig loading and exit codes.
func TestCLI(t *testing.T) {
	env := kubetest.Start(t)
	bin := filepath.Join(t.TempDir(), "mcgate")
	// The module cache holds every dependency, so this builds inside the
	// test's network namespace without the module proxy.
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/mcgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mcgate := func(wantOK bool, args ...string) []byte {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("mcgate %s: err %v (want ok=%v)\n%s%s", strings.Join(args, " "), err, wantOK, stdout.String(), stderr.String())
		}
		if args[0] != "install" { // the manifests are long; the rest is what a user reads
			t.Logf("$ mcgate %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
		}
		return stdout.Bytes()
	}
	east, west := env.East.Kubeconfig, env.West.Kubeconfig
	kubectl(t, east, mcgate(true, "install", "--gateway-service-type", "NodePort", "--gateway-node-port", "30463", "--gateway-probe-node-port", "30464"), "apply", "-f", "-")
	kubectl(t, west, mcgate(true, "install", "-o", "json"), "apply", "-f", "-")

	link := mcgate(true, "link", "--kubeconfig", east, "--context", "east", "--cluster-name", "eastc", "--gateway-addresses", "198.18.0.40")
	for _, want := range []string{"kind: Link", "gatewayPort: \"30463\"", "port: \"30464\"", "name: cluster-credentials-eastc", "type: mirror.linkerd.io/remote-kubeconfig"} {
		if !bytes.Contains(link, []byte(want)) {
			t.Errorf("link output lacks %q", want)
		}
	}
	kubectl(t, west, link, "apply", "-f", "-")
	mcgate(false, "link", "--kubeconfig", east, "--cluster-name", "eastc") // NodePort without --gateway-addresses

	// No gateway runs in west here: check names what is wrong and fails.
	out := mcgate(false, "check", "--kubeconfig", west)
	for _, want := range []string{"√ Link CRD exists", "√ remote cluster access credentials are valid", "× gateways of all Links are alive", "× the local gateway is ready"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check output lacks %q", want)
		}
	}
	mcgate(false, "uninstall", "--kubeconfig", west) // a Link exists
	kubectl(t, west, mcgate(true, "unlink", "--kubeconfig", west, "--cluster-name", "eastc"), "delete", "-f", "-")
	kubectl(t, west, mcgate(true, "uninstall", "--kubeconfig", west), "delete", "--dry-run=server", "-f", "-")
	kubectl(t, east, mcgate(true, "allow", "--service-account-name", "west-reader"), "apply", "--dry-run=server", "-f", "-")
}
