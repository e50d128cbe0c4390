// Package kubeconfig reads kubeconfigs that come from untrusted places (the
// credentials Secret of a Link) into client configs.
package kubeconfig

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// RESTConfig turns the kubeconfig of a Link's credentials Secret into
// a client config, refusing what would let the Secret's author act inside
// the gateway: exec and auth-provider plugins run commands or load code,
// and file references (tokenFile, certificate and key files, CA files) read
// the gateway's own files, such as its service-account token, and send them
// to a server of the author's choosing. A kubeconfig from `mcgate link`
// carries a token and the cluster's CA inline, so it needs none of these.
func RESTConfig(kubeconfig []byte) (*rest.Config, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if err := checkInline(cfg); err != nil {
		return nil, err
	}
	return clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// ErrNotSelfContained is returned for a kubeconfig that reaches outside itself.
var ErrNotSelfContained = errors.New("kubeconfig of a Link must be self-contained")

func checkInline(cfg *clientcmdapi.Config) error {
	for name, a := range cfg.AuthInfos {
		switch {
		case a.Exec != nil:
			return fmt.Errorf("%w: user %q uses an exec plugin", ErrNotSelfContained, name)
		case a.AuthProvider != nil:
			return fmt.Errorf("%w: user %q uses an auth provider", ErrNotSelfContained, name)
		case a.TokenFile != "":
			return fmt.Errorf("%w: user %q reads tokenFile %q", ErrNotSelfContained, name, a.TokenFile)
		case a.ClientCertificate != "" || a.ClientKey != "":
			return fmt.Errorf("%w: user %q reads certificate or key files", ErrNotSelfContained, name)
		case a.Impersonate != "" || len(a.ImpersonateGroups) > 0:
			return fmt.Errorf("%w: user %q impersonates", ErrNotSelfContained, name)
		}
	}
	for name, c := range cfg.Clusters {
		if c.CertificateAuthority != "" {
			return fmt.Errorf("%w: cluster %q reads certificate-authority file %q", ErrNotSelfContained, name, c.CertificateAuthority)
		}
		if c.ProxyURL != "" {
			return fmt.Errorf("%w: cluster %q sets a proxy-url", ErrNotSelfContained, name)
		}
	}
	return nil
}
