package main

import (
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/mcgate/mcgate/deploy"
)

func newInstallCmd() *cobra.Command {
	var (
		o           deploy.Options
		serviceType string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests of the gateway (mcgate install | kubectl apply -f -)",
		Long: `Print everything the gateway needs in a cluster: namespace linkerd-multicluster,
the Link CRD, the gateway's ServiceAccount and RBAC, the remote-access ServiceAccount
linkerd-service-mirror-remote-access-default that other clusters' links use, and the
linkerd-gateway Deployment, PodDisruptionBudget and Service.

The gateway's identity is the Secret --identity-secret (tls.crt, tls.key, ca.crt), e.g.
  mcgate identity leaf --ca issuer.crt --ca-key issuer.key --anchor ca.crt --out-dir id/
  kubectl -n linkerd-multicluster create secret generic linkerd-gateway-identity --from-file=id/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.ServiceType = corev1.ServiceType(serviceType)
			if o.Image == "" {
				o.Image = defaultImage()
			}
			objs, err := deploy.Render(o)
			if err != nil {
				return err
			}
			return deploy.Write(cmd.OutOrStdout(), objs, output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&serviceType, "gateway-service-type", "LoadBalancer", "type of the linkerd-gateway Service: LoadBalancer, NodePort or ClusterIP")
	f.Int32Var(&o.NodePort, "gateway-node-port", 0, "node port of mc-gateway (4143) (NodePort/LoadBalancer; default: the cluster picks)")
	f.Int32Var(&o.ProbeNodePort, "gateway-probe-node-port", 0, "node port of mc-probe (default: the cluster picks); links to a NodePort gateway probe it there")
	f.Int32Var(&o.ProbePort, "gateway-probe-port", 4191, "Service port of mc-probe (the gateway's /ready)")
	f.BoolVar(&o.HA, "ha", false, "three replicas on different nodes")
	f.StringVar(&o.IdentitySecret, "identity-secret", deploy.IdentitySecretName, "Secret with the gateway's tls.crt, tls.key and ca.crt")
	f.StringVar(&o.Image, "image", "", "mcgate image (default ghcr.io/mcgate/mcgate:<version>)")
	f.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "trust domain of the gateway identity advertised on the Service")
	f.StringVarP(&output, "output", "o", "yaml", "yaml or json")
	return cmd
}

// defaultImage is this binary's own release image; a dev build points at
// latest.
func defaultImage() string {
	tag := strings.TrimPrefix(version, "v")
	if version == "dev" || version == "" {
		tag = "latest"
	} else {
		tag = "v" + tag
	}
	return "ghcr.io/mcgate/mcgate:" + tag
}
