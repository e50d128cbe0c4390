package linkerdcli

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mcgate/mcgate/deploy"
	"github.com/mcgate/mcgate/internal/testenv/gatewaytest"
	"github.com/mcgate/mcgate/internal/testenv/kubetest"
	"github.com/mcgate/mcgate/internal/testenv/testbin"
	"github.com/mcgate/mcgate/internal/testenv/wait"
)

// TestTokenSecrets: the token Secrets of `mcgate install` (for the
// remote-access ServiceAccount) and of `mcgate allow` (for another one) get
// their token from the cluster's token controller, and that token has the
// remote-access rights and no more: what Linkerd's link-gen puts into the
// Link's kubeconfig.
func TestTokenSecrets(t *testing.T) {
	env := kubetest.Start(t)
	east := env.East
	gatewaytest.Install(t, east.Kubeconfig)
	allow := gatewaytest.Run(t, nil, testbin.Mcgate(t), "allow", "--service-account-name", "token-test")
	gatewaytest.Run(t, allow, "kubectl", "--kubeconfig", east.Kubeconfig, "apply", "-f", "-")
	if err := linkerdConfig(t.Context(), east, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{deploy.RemoteAccessName, "token-test"} {
		t.Run(sa, func(t *testing.T) {
			ctx := t.Context()
			c, err := kubernetes.NewForConfig(east.TokenConfig(saToken(t, east, sa)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("list Services with the token: %v", err)
			}
			if _, err := c.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
				t.Errorf("list EndpointSlices with the token: %v", err)
			}
			// linkerd multicluster check compares trust anchors through it.
			if _, err := c.CoreV1().ConfigMaps("linkerd").Get(ctx, "linkerd-config", metav1.GetOptions{}); err != nil {
				t.Errorf("get linkerd-config with the token: %v", err)
			}
			_, err = c.CoreV1().Secrets(deploy.Namespace).List(ctx, metav1.ListOptions{})
			if !apierrors.IsForbidden(err) {
				t.Errorf("list Secrets with the token: %v, want forbidden", err)
			}
			_, err = c.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "written-by-a-link"}}, metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) {
				t.Errorf("create a ConfigMap with the token: %v, want forbidden", err)
			}
		})
	}
}

// saToken waits for the token controller to fill the token Secret of
// ServiceAccount sa in linkerd-multicluster and returns the token. Like
// link-gen, it finds the Secret by type and annotation, not by name.
func saToken(t *testing.T, c *kubetest.Cluster, sa string) string {
	t.Helper()
	var token string
	wait.ForErr(t, 30*time.Second, "the token controller to fill the token Secret of "+sa, func() error {
		secrets, err := c.Client.CoreV1().Secrets(deploy.Namespace).List(t.Context(), metav1.ListOptions{
			FieldSelector: "type=" + string(corev1.SecretTypeServiceAccountToken)})
		if err != nil {
			return err
		}
		for _, s := range secrets.Items {
			if s.Annotations[corev1.ServiceAccountNameKey] == sa && len(s.Data[corev1.ServiceAccountTokenKey]) > 0 {
				token = string(s.Data[corev1.ServiceAccountTokenKey])
				return nil
			}
		}
		return fmt.Errorf("no filled token Secret among %d", len(secrets.Items))
	})
	return token
}
