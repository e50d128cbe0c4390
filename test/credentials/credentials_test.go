// Package credentials tests that a Link's credentials Secret, which is data
// from a cluster, can never make an mcgate command run code or read files on
// the machine it runs on. Each command that talks to a cluster holding such
// a Secret (gateway, check, gateways, link, unlink) is run for real against
// real clusters, and the exec plugin in the Secret, which would create a
// file, must never have run.
package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

const mcNamespace = "linkerd-multicluster"

var linkGVR = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha3", Resource: "links"}

// hostileKubeconfig is a kubeconfig for server whose user authenticates
// with an exec plugin: a shell that creates marker, then prints a
// credential so that a client that runs it would carry on.
func hostileKubeconfig(server string, ca []byte, marker string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: target
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: attacker
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: ["-c", "touch %s; echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\"}}'"]
      interactiveMode: Never
contexts:
- name: target
  context: {cluster: target, user: attacker}
current-context: target
`, server, b64(ca), marker)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// secretObject is a Link credentials Secret as `mcgate link` writes it.
func secretObject(name string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: mcNamespace},
		Type:       "mirror.linkerd.io/remote-kubeconfig",
		Data:       map[string][]byte{"kubeconfig": kubeconfig},
	}
}

// plant writes the hostile Secret and a Link of cluster that names it into
// the cluster of client, as anyone with write access to Secrets and Links in
// linkerd-multicluster could.
func plant(t *testing.T, client kubernetes.Interface, dyn dynamic.Interface, cluster string, kubeconfig []byte) {
	t.Helper()
	ctx := t.Context()
	secret := "cluster-credentials-" + cluster
	_, err := client.CoreV1().Secrets(mcNamespace).Create(ctx, secretObject(secret, kubeconfig), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	link := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link",
		"metadata": map[string]any{"name": cluster, "namespace": mcNamespace},
		"spec": map[string]any{
			"targetClusterName": cluster, "targetClusterDomain": "cluster.local",
			"clusterCredentialsSecret": secret, "gatewayAddress": kubetest.HostIP(60).String(),
			"gatewayPort": "4143", "gatewayIdentity": "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local",
			"probeSpec": map[string]any{"path": "/ready", "port": "4191", "period": "3s"},
			"selector":  map[string]any{"matchLabels": map[string]any{"mirror.linkerd.io/exported": "true"}},
		},
	}}
	if _, err := dyn.Resource(linkGVR).Namespace(mcNamespace).Create(ctx, link, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		dyn.Resource(linkGVR).Namespace(mcNamespace).Delete(ctx, cluster, metav1.DeleteOptions{})
		client.CoreV1().Secrets(mcNamespace).Delete(ctx, secret, metav1.DeleteOptions{})
	})
}

// mustNotExist fails t if the exec plugin ran.
func mustNotExist(t *testing.T, marker, after string) {
	t.Helper()
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after %s: the Secret's exec plugin ran (%s exists, stat: %v)", after, marker, err)
	}
}

// run runs the mcgate binary and returns its combined output and whether it
// exited 0.
func run(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(testbin.Mcgate(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ mcgate %s (err %v)\n%s", strings.Join(args, " "), err, out.String())
	return out.String(), err == nil
}

func TestExecPluginInLinkSecretNeverRuns(t *testing.T) {
	env := kubetest.Start(t)
	gatewaytest.Install(t, env.East.Kubeconfig, env.West.Kubeconfig)
	dir := t.TempDir()
	marker := filepath.Join(dir, "plugin-ran")
	evil := hostileKubeconfig(env.East.Config.Host, env.East.Config.CAData, marker)

	// The control: a loader without the checks runs the plugin, so a
	// missing marker below means mcgate refused it, not that it was inert.
	t.Run("control: a plain client-go loader runs the plugin", func(t *testing.T) {
		control := filepath.Join(dir, "control-ran")
		rc, err := clientcmd.RESTConfigFromKubeConfig(hostileKubeconfig(env.East.Config.Host, env.East.Config.CAData, control))
		if err != nil {
			t.Fatal(err)
		}
		c, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		c.Discovery().ServerVersion() // authenticates: runs the plugin; the answer does not matter
		if _, err := os.Stat(control); err != nil {
			t.Fatalf("the control plugin did not run, so the fixture proves nothing: %v", err)
		}
	})

	// West holds a Link to cluster "evil" whose Secret carries the plugin;
	// east (the cluster `mcgate link` runs against) holds one too.
	plant(t, env.West.Client, dynamicFor(t, env.West), "evil", evil)
	plant(t, env.East.Client, dynamicFor(t, env.East), "evil", evil)

	t.Run("check", func(t *testing.T) {
		out, ok := run(t, "check", "--kubeconfig", env.West.Kubeconfig)
		mustNotExist(t, marker, "mcgate check")
		if ok {
			t.Error("check passed with a Link whose credentials run a command")
		}
		for _, want := range []string{"× remote cluster access credentials are valid", "Link evil", "exec plugin"} {
			if !strings.Contains(out, want) {
				t.Errorf("check output lacks %q", want)
			}
		}
	})

	t.Run("gateway", func(t *testing.T) {
		gatewaytest.Identities(t, dir, "west")
		ip := kubetest.HostIP(61).String()
		g := &gatewaytest.Process{T: t, Log: filepath.Join(dir, "west.log"), Args: []string{"gateway",
			"--kubeconfig", env.West.Kubeconfig, "--identity-dir", filepath.Join(dir, "west-gw"), "--cluster-name", "west",
			"--listen-addr", ip + ":4143", "--admin-addr", ip + ":4191", "--advertise-address", ip, "--egress-host", ip}}
		g.Start()
		g.StopAtCleanup("west gateway")
		// The gateway reads the Secret, refuses it and says why on the Link.
		wait.ForErr(t, 60*time.Second, "Link evil's Credentials condition names the exec plugin", func() error {
			return credentialsRefused(t.Context(), dynamicFor(t, env.West), "evil")
		})
		mustNotExist(t, marker, "mcgate gateway read the Secret")
		// It keeps serving: the admin port answers.
		wait.ForErr(t, 30*time.Second, "the gateway's /live answers", func() error {
			resp, err := http.Get("http://" + ip + ":4191/live")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})

		// gateways reads the Links and the gateway's metrics; it has no
		// reason to load the Secret, and must not.
		out, ok := run(t, "gateways", "--kubeconfig", env.West.Kubeconfig, "--admin-addr", ip+":4191")
		mustNotExist(t, marker, "mcgate gateways")
		if !ok || !strings.Contains(out, "evil") {
			t.Errorf("gateways: ok=%v, want a row for cluster evil", ok)
		}
	})

	t.Run("link", func(t *testing.T) {
		// link runs against the target with the operator's kubeconfig; the
		// target's own Link Secrets are not its input.
		out, ok := run(t, "link", "--kubeconfig", env.East.Kubeconfig, "--cluster-name", "east", "--gateway-addresses", kubetest.HostIP(62).String())
		mustNotExist(t, marker, "mcgate link")
		if !ok || !strings.Contains(out, "kind: Link") {
			t.Errorf("link: ok=%v, want a Link in its output", ok)
		}
	})

	t.Run("unlink", func(t *testing.T) {
		out, ok := run(t, "unlink", "--kubeconfig", env.West.Kubeconfig, "--cluster-name", "evil")
		mustNotExist(t, marker, "mcgate unlink")
		if !ok || !strings.Contains(out, "cluster-credentials-evil") {
			t.Errorf("unlink: ok=%v, want the Secret among what it prints", ok)
		}
	})
}

// credentialsRefused is nil once the Link's Credentials condition is False
// with a message that names the exec plugin.
func credentialsRefused(ctx context.Context, dyn dynamic.Interface, name string) error {
	l, err := dyn.Resource(linkGVR).Namespace(mcNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(l.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Credentials" {
			continue
		}
		msg, _ := m["message"].(string)
		if m["status"] == "False" && strings.Contains(msg, "exec plugin") {
			return nil
		}
		return fmt.Errorf("Credentials is %v: %s", m["status"], msg)
	}
	return errors.New("no Credentials condition yet")
}

func dynamicFor(t *testing.T, c *kubetest.Cluster) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
